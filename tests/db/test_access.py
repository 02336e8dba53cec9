"""Who may export what: staff scoping in SQL, the role cache, the audit trail, the limits."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest

from learner_export.auth import issue_token
from tests.conftest import JWT_SECRET, Database, LiveServer, joined_backends, query


@pytest.fixture
def profile(sql: Callable[..., Any]) -> Iterator[Callable[..., str]]:
    made: list[str] = []

    def make(role: str, clients: list[str] | None = None) -> str:
        pid = str(uuid.uuid4())
        made.append(pid)
        sql("INSERT INTO public.profiles (id, role) VALUES ($1, $2)", pid, role)
        for client in clients or []:
            sql(
                "INSERT INTO public.staff_client_assignments (staff_id, client_id) VALUES ($1, $2)",
                pid,
                client,
            )
        return pid

    yield make
    for pid in made:
        sql("DELETE FROM public.profiles WHERE id = $1", pid)


def export_as(server: LiveServer, pid: str, **params: Any) -> httpx.Response:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        return client.get(
            "/v1/exports/learners",
            params={"format": "jsonl", **params},
            headers={
                "Authorization": f"Bearer {issue_token(JWT_SECRET, pid)}",
                "Accept-Encoding": "identity",
            },
        )


def clients(sql: Callable[..., Any]) -> list[str]:
    return [r["id"] for r in sql("SELECT id FROM public.clients ORDER BY id")]


def learners_of(sql: Callable[..., Any], client_ids: list[str]) -> list[str]:
    return [
        r["id"]
        for r in sql(
            "SELECT id FROM public.learners WHERE client_id = ANY($1::uuid[])"
            " ORDER BY created_at, id",
            client_ids,
        )
    ]


def test_staff_export_is_limited_to_assigned_clients(
    live: LiveServer, sql: Any, profile: Callable[..., str]
) -> None:
    assigned = clients(sql)[:2]
    staff = profile("Staff", assigned)
    response = export_as(live, staff, columns="learner_id,client_id")
    assert response.status_code == 200
    rows = [orjson.loads(line) for line in response.content.splitlines()]
    assert [r["learner_id"] for r in rows] == learners_of(sql, assigned)
    assert set(response.headers["x-export-client-scope"].split(",")) == set(assigned)

    one = export_as(live, staff, client_id=assigned[1], columns="client_id")
    assert one.status_code == 200
    assert {orjson.loads(line)["client_id"] for line in one.content.splitlines()} == {assigned[1]}


def test_staff_asking_for_another_client_gets_403_and_no_rows(
    live: LiveServer, sql: Any, profile: Callable[..., str]
) -> None:
    mine, other = clients(sql)[:2]
    staff = profile("Staff", [mine])
    response = export_as(live, staff, client_id=[mine, other])
    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"
    assert other in response.json()["detail"]
    assert b"learner_id" not in response.content


def test_staff_without_assignment_gets_403(live: LiveServer, profile: Callable[..., str]) -> None:
    response = export_as(live, profile("Staff"))
    assert response.status_code == 403
    assert "no clients" in response.json()["detail"]


def test_admin_scope_header_says_all(live: LiveServer, seeded: str) -> None:
    response = export_as(live, seeded, limit="1")
    assert response.headers["x-export-client-scope"] == "all"


def test_scope_is_enforced_by_the_database_itself(
    database_url: str, sql: Any, profile: Callable[..., str]
) -> None:
    student = profile("Student")
    staff = profile("Staff", clients(sql)[:1])
    for caller, params, message in (
        (student, "NULL", "role Student may not export"),
        (staff, f"ARRAY['{clients(sql)[1]}']::uuid[]", "not assigned"),
        (str(uuid.uuid4()), "NULL", "no profile"),
    ):
        with pytest.raises(Exception, match=message):
            query(
                database_url,
                f"SELECT count(*) FROM learner_export.get_learner_export_batch($1::uuid, {params})",
                caller,
            )
    rows = query(
        database_url,
        "SELECT learner_id FROM learner_export.get_learner_export_batch("
        "$1::uuid, p_page_size => 100000)",
        staff,
    )
    assert [r["learner_id"] for r in rows] == learners_of(sql, clients(sql)[:1])


def test_role_change_takes_effect_at_once(
    start_server: Callable[..., LiveServer], sql: Any, profile: Callable[..., str]
) -> None:
    """Who may export is the database's answer at every export (learner_export.export_scope);
    the role cache only labels the audit row."""
    server = start_server(role_cache_ttl_seconds=60.0)
    pid = profile("Student")
    assert export_as(server, pid, limit="1").status_code == 403
    sql("UPDATE public.profiles SET role = 'Admin' WHERE id = $1", pid)
    assert export_as(server, pid, limit="1").status_code == 200
    sql("UPDATE public.profiles SET role = 'Student' WHERE id = $1", pid)
    assert export_as(server, pid, limit="1").status_code == 403


def audit_row(sql: Any, export_id: str) -> dict[str, Any]:
    rows = sql("SELECT * FROM learner_export.export_audit WHERE id = $1", export_id)
    assert rows, export_id
    return dict(rows[0])


def wait_for_outcome(sql: Any, export_id: str, outcome: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    row = audit_row(sql, export_id)
    while row["outcome"] != outcome and time.monotonic() < deadline:
        time.sleep(0.05)
        row = audit_row(sql, export_id)
    return row


def test_audit_records_a_completed_export(live: LiveServer, sql: Any, seeded: str) -> None:
    response = export_as(live, seeded, limit="42", active="true")
    export_id = response.headers["x-export-id"]
    row = wait_for_outcome(sql, export_id, "completed")
    assert row["caller_id"] == seeded and row["caller_role"] == "Admin"
    assert row["format"] == "jsonl" and row["rows_sent"] == 42
    assert row["bytes_sent"] == len(response.content)
    assert orjson.loads(row["filters"])["active"] is True
    assert row["request_id"] == response.headers["x-request-id"]
    assert row["ended_at"] is not None and row["duration_ms"] >= 0


def test_audit_records_a_denied_export(
    live: LiveServer, sql: Any, profile: Callable[..., str]
) -> None:
    student = profile("Student")
    response = export_as(live, student)
    assert response.status_code == 403
    rows = sql("SELECT * FROM learner_export.export_audit WHERE caller_id = $1", student)
    assert [r["outcome"] for r in rows] == ["denied"]
    assert "Student" in rows[0]["detail"]


@pytest.fixture(scope="module")
def big(start_server: Callable[..., LiveServer], big_database: Database) -> LiveServer:
    return start_server(big_database, max_concurrent=3, max_concurrent_per_user=2)


def test_audit_records_a_disconnect_and_a_failure(big: LiveServer, big_database: Database) -> None:
    def sql(statement: str, *args: Any) -> list[Any]:
        return query(big_database.url, statement, *args)

    with big.client() as client, client.stream("GET", "/v1/exports/learners") as response:
        left = response.headers["x-export-id"]
        next(response.iter_raw())
    assert wait_for_outcome(sql, left, "client_disconnected")["outcome"] == "client_disconnected"

    with big.client() as client, client.stream("GET", "/v1/exports/learners") as response:
        failed = response.headers["x-export-id"]
        chunks = response.iter_raw()
        next(chunks)
        # The bulk pass reads the rest of the export in two key ranges, a connection each.
        pid = joined_backends(big_database.url, 2)[0]["pid"]
        query(big_database.url, "SELECT pg_terminate_backend($1)", pid)
        with pytest.raises(httpx.RemoteProtocolError):
            for _ in chunks:
                pass
    row = wait_for_outcome(sql, failed, "failed")
    assert row["outcome"] == "failed"
    assert 0 < row["rows_sent"] < 60_000


def test_too_many_exports_get_429_at_once(big: LiveServer, big_database: Database) -> None:
    admin_token = big.token
    streams = []
    with httpx.Client(
        base_url=big.url,
        timeout=60,
        headers={"Authorization": f"Bearer {admin_token}", "Accept-Encoding": "identity"},
    ) as client:
        try:
            for _ in range(2):
                stream = client.stream("GET", "/v1/exports/learners", params={"format": "jsonl"})
                response = stream.__enter__()
                streams.append((stream, response, response.iter_raw()))
                next(streams[-1][2])
            started = time.monotonic()
            third = client.get("/v1/exports/learners", params={"limit": "1"})
            assert third.status_code == 429
            assert time.monotonic() - started < 2  # at once, not after waiting for the pool
            assert int(third.headers["retry-after"]) > 0
            assert third.json()["error"] == "too_many_exports"
        finally:
            for stream, _, _ in streams:
                stream.__exit__(None, None, None)
    deadline = time.monotonic() + 10
    while big.pool_in_use() and time.monotonic() < deadline:
        time.sleep(0.05)
    with httpx.Client(base_url=big.url, timeout=60) as client:
        again = client.get(
            "/v1/exports/learners",
            params={"limit": "1"},
            headers={"Authorization": f"Bearer {admin_token}"},
        )
    assert again.status_code == 200


@pytest.mark.parametrize(
    "value",
    [
        "' OR 1=1 --",
        "'); DROP TABLE learners; --",
        "\\x00",
        "%00",
        "😀" * 1000,
        "a" * 4097,
        "$1",
        "1e309",
        "NaN",
    ],
)
@pytest.mark.parametrize(
    "name",
    [
        "format",
        "client_id",
        "created_from",
        "created_to",
        "active",
        "columns",
        "limit",
        "bom",
        "escape_formulas",
        "after",
        "cursor",
    ],
)
def test_hostile_values_in_every_parameter_get_400(
    live: LiveServer, sql: Any, name: str, value: str
) -> None:
    before = sql("SELECT count(*) AS n FROM public.learners")[0]["n"]
    with live.client() as client:
        response = client.get("/v1/exports/learners", params={name: value})
    assert response.status_code == 400, (name, value, response.text[:200])
    assert response.json()["error"] == "invalid_parameter"
    assert sql("SELECT count(*) AS n FROM public.learners")[0]["n"] == before
