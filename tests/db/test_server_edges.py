"""The smaller server points of issue 21 (docs/limits.md, docs/audit.md): HEAD's own outcome,
HEAD and limit=0 counted past an allowance, an append-only audit trail, count errors as 503,
a redirect that ignores Host, refusals with NUL bytes recorded, strict booleans in link
bodies, a file name per second, and resume cursors exact under zones with offset seconds."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest

from learner_export.audit import Outcome
from learner_export.cursor import decode_cursor
from learner_export.formats.cells import cursor
from tests.conftest import Database, LiveServer, query, run, wait_for

Sql = Callable[..., list[Any]]


def audit_rows(sql: Sql, request_id: str) -> list[Any]:
    return list(
        sql(
            "SELECT outcome, detail, repeats, filters::text AS filters"
            " FROM learner_export.export_audit WHERE request_id = $1",
            request_id,
        )
    )


def test_head_is_recorded_as_head(live: LiveServer, sql: Sql) -> None:
    request_id = "head-" + uuid.uuid4().hex
    with live.client() as client:
        response = client.head("/v1/exports/learners", headers={"X-Request-Id": request_id})
    assert response.status_code == 200
    assert [r["outcome"] for r in audit_rows(sql, request_id)] == [Outcome.HEAD.value]


def test_head_and_limit_0_past_the_allowance_are_one_counted_row(
    start_server: Callable[..., LiveServer], sql: Sql
) -> None:
    server = start_server(refusals_per_minute=3)
    prefix = "many-" + uuid.uuid4().hex[:8]
    with server.client() as client:
        for i in range(8):
            client.head("/v1/exports/learners", headers={"X-Request-Id": f"{prefix}-h{i}"})
        for i in range(4):
            zero = client.get(
                "/v1/exports/learners",
                params={"limit": "0"},
                headers={"X-Request-Id": f"{prefix}-z{i}"},
            )
            assert zero.status_code == 200
    server.app.state.allowance.clock = lambda: time.monotonic() + 61
    pattern = prefix + "-%"

    def rows() -> list[Any]:
        return list(
            sql(
                "SELECT outcome, repeats FROM learner_export.export_audit"
                " WHERE request_id LIKE $1 ORDER BY started_at",
                pattern,
            )
        )

    # 3 rows of their own, then 5 HEAD in one row and 4 limit=0 exports in another.
    assert wait_for(lambda: len(rows()) == 5)
    counted = sorted((r["outcome"], r["repeats"]) for r in rows())
    assert counted == [("completed", 4), ("head", 1), ("head", 1), ("head", 1), ("head", 5)]


def test_the_service_cannot_rewrite_the_audit_trail(database: Database, live: LiveServer) -> None:
    with live.client() as client:
        done = client.get("/v1/exports/learners", params={"limit": "1"})
    export_id = done.headers["x-export-id"]
    assert wait_for(
        lambda: (
            query(
                database.url,
                "SELECT outcome FROM learner_export.export_audit WHERE id = $1::uuid",
                export_id,
            )[0]["outcome"]
            == "completed"
        )
    )

    async def as_service() -> tuple[list[str], bool]:
        conn = await asyncpg.connect(database.service_url)
        refused = []
        try:
            for statement in (
                "UPDATE learner_export.export_audit SET outcome = 'failed' WHERE id = $1",
                "DELETE FROM learner_export.export_audit WHERE id = $1",
            ):
                try:
                    await conn.execute(statement, uuid.UUID(export_id))
                except asyncpg.InsufficientPrivilegeError:
                    refused.append(statement.split()[0])
            # Its own way of finishing a row does nothing to a row that has ended.
            again = await conn.fetchval(
                "SELECT learner_export.finish_export($1, 'failed', 0, 0, 0, NULL, 'rewritten')",
                uuid.UUID(export_id),
            )
        finally:
            await conn.close()
        return refused, again

    refused, again = run(as_service())
    row = query(
        database.url,
        "SELECT outcome, detail FROM learner_export.export_audit WHERE id = $1::uuid",
        export_id,
    )[0]
    assert refused == ["UPDATE", "DELETE"]
    assert again is False
    assert (row["outcome"], row["detail"]) == ("completed", None)


def test_a_database_error_while_counting_is_a_503(
    live: LiveServer, database: Database, sql: Sql
) -> None:
    definition = query(
        database.url,
        "SELECT pg_get_functiondef('learner_export.count_learner_export'::regproc) AS d",
    )[0]["d"]
    broken = definition.replace("LANGUAGE sql", "LANGUAGE plpgsql", 1)
    body = "BEGIN RAISE EXCEPTION 'cancelled' USING ERRCODE = 'query_canceled'; END"
    start = broken.index("AS $") + 3
    quote = broken[start : broken.index("$", start + 1) + 1]
    head = broken[: broken.index("AS $")]
    query(database.url, f"{head} AS {quote}{body}{quote}")
    request_id = "count-" + uuid.uuid4().hex
    try:
        with live.client() as client:
            response = client.get(
                "/v1/exports/learners",
                headers={"Prefer": "count=exact", "X-Request-Id": request_id},
            )
    finally:
        query(database.url, definition)
    assert response.status_code == 503
    assert response.json()["error"] == "database_unavailable"
    assert response.headers["retry-after"] == "5"
    assert [r["outcome"] for r in audit_rows(sql, request_id)] == ["failed"]


def test_the_trailing_slash_redirect_ignores_host(live: LiveServer) -> None:
    with live.client(follow_redirects=False) as client:
        response = client.get(
            "/v1/exports/learners/download/",
            params={"link": "abc"},
            headers={"Host": "evil.example"},
        )
    assert response.status_code == 307
    assert response.headers["location"] == "/v1/exports/learners/download?link=abc"


def test_a_refusal_with_a_nul_byte_is_recorded(live: LiveServer, sql: Sql) -> None:
    request_id = "nul-" + uuid.uuid4().hex
    with live.client() as client:
        response = client.get(
            "/v1/exports/learners",
            params={"format": "csv\x00x"},
            headers={"X-Request-Id": request_id},
        )
    assert response.status_code == 400
    (row,) = audit_rows(sql, request_id)
    assert row["outcome"] == "denied" and "400 invalid_parameter" in row["detail"]
    assert "csv\ufffdx" in row["filters"]


@pytest.mark.parametrize("given", ["yes", "on", "1", 1, "true"])
def test_link_bodies_take_only_json_booleans(live: LiveServer, given: object) -> None:
    with live.client() as client:
        response = client.post("/v1/exports/learners/links", json={"active": given})
    assert response.status_code == 400
    assert response.json()["detail"][0]["parameter"] == "active"


def test_link_bodies_take_json_true(live: LiveServer) -> None:
    with live.client() as client:
        response = client.post("/v1/exports/learners/links", json={"active": True})
    assert response.status_code == 200


def test_two_downloads_in_one_minute_have_two_names(live: LiveServer) -> None:
    with live.client() as client:
        first = client.get("/v1/exports/learners", params={"limit": "1"})
        time.sleep(1.05)
        second = client.get("/v1/exports/learners", params={"limit": "1"})
    assert first.headers["content-disposition"] != second.headers["content-disposition"]


@pytest.mark.parametrize(
    ("zone", "instant"),
    [
        ("Africa/Monrovia", "1960-05-01 12:00:00.123456+00"),  # -00:44:30 until 1972
        ("Europe/Amsterdam", "1937-03-01 08:30:15.5+00"),  # +00:19:32 in 1937
        ("UTC", "2024-01-01 00:00:00+00"),
    ],
)
def test_the_cursor_is_exact_in_zones_with_offset_seconds(
    database_url: str, zone: str, instant: str
) -> None:
    async def cursor_of() -> tuple[str, Any, str]:
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute(f"SET TimeZone = '{zone}'")
            learner = str(uuid.uuid4())
            row = await conn.fetchrow(
                f"SELECT {cursor(zone)} AS c, r._key_at AS created_at FROM"
                " (SELECT $1::text::timestamptz AS _key_at, $2::text::uuid AS _key_id) AS r",
                instant,
                learner,
            )
        finally:
            await conn.close()
        assert row is not None
        return row["c"], row["created_at"], learner

    token, created_at, learner = run(cursor_of())
    assert decode_cursor(token) == (created_at, learner)
