"""The audit trail records refusals, in rows of bounded size, at a bounded rate per caller, and
no HTTP request can pass for the CLI."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from learner_export.audit import (
    MAX_FILTERS_BYTES,
)
from learner_export.auth import issue_token
from tests.conftest import JWT_SECRET, LiveServer, wait_for

IDS = [str(uuid.UUID(int=i)) for i in range(1000)]


def profile(sql: Callable[..., Any], role: str) -> str:
    caller = str(uuid.uuid4())
    sql("INSERT INTO public.profiles (id, role) VALUES ($1, $2)", caller, role)
    return caller


def rows_of(sql: Callable[..., Any], caller: str) -> list[Any]:
    return list(
        sql(
            "SELECT outcome, detail, via_link, request_id, filters::text AS filters, repeats,"
            " pg_column_size(t.*) AS size FROM learner_export.export_audit t"
            " WHERE caller_id = $1",
            caller,
        )
    )


def test_a_refused_user_cannot_flood_the_audit_table_and_is_never_barred(
    start_server: Callable[..., LiveServer], sql: Callable[..., Any]
) -> None:
    server = start_server(refusals_per_minute=10)
    student = profile(sql, "Student")
    query = [("client_id", i) for i in IDS]
    headers = {"Authorization": "Bearer " + issue_token(JWT_SECRET, student)}
    try:
        with httpx.Client(base_url=server.url, timeout=30, headers=headers) as client:
            statuses = [
                client.get("/v1/exports/learners", params=query).status_code for _ in range(40)
            ]
        # The minute ends (as the allowance sees it): the repeated row is written.
        server.app.state.allowance.clock = lambda: time.monotonic() + 61
        assert wait_for(lambda: len(rows_of(sql, student)) == 11)
        rows = rows_of(sql, student)
    finally:
        sql("DELETE FROM public.profiles WHERE id = $1", student)
    # Every request gets its true answer: no 429 for having been refused before.
    assert statuses == [403] * 40
    # The bound docs/audit.md states: N rows of their own, then one row counting the rest.
    assert sorted(r["repeats"] for r in rows) == [1] * 10 + [30]
    assert all(r["outcome"] == "denied" for r in rows)
    assert all(len(r["filters"].encode()) <= MAX_FILTERS_BYTES for r in rows)
    assert sum(r["size"] for r in rows) < 11 * 3072


def test_typos_do_not_lock_an_admin_out(
    start_server: Callable[..., LiveServer], sql: Callable[..., Any]
) -> None:
    server = start_server(refusals_per_minute=10)
    with server.client() as client:
        typos = [
            client.get("/v1/exports/learners", params={"created_from": "2024-13-01"}).status_code
            for _ in range(15)
        ]
        valid = client.get("/v1/exports/learners", params={"limit": "3"})
    assert typos == [400] * 15
    assert valid.status_code == 200
    assert len(valid.text.splitlines()) == 4


def test_post_auth_400_is_recorded(live: LiveServer, sql: Callable[..., Any]) -> None:
    request_id = "bad-" + uuid.uuid4().hex
    with live.client() as client:
        response = client.get(
            "/v1/exports/learners",
            params={"limit": "18446744073709551616"},
            headers={"X-Request-Id": request_id},
        )
    assert response.status_code == 400
    rows = sql(
        "SELECT outcome, detail, filters::text AS filters"
        " FROM learner_export.export_audit WHERE request_id = $1",
        request_id,
    )
    assert len(rows) == 1
    assert rows[0]["outcome"] == "denied"
    assert "400 invalid_parameter" in rows[0]["detail"]
    assert "18446744073709551616" in rows[0]["filters"]


def test_refused_link_mint_is_recorded(live: LiveServer, sql: Callable[..., Any]) -> None:
    student = profile(sql, "Student")
    try:
        with httpx.Client(base_url=live.url, timeout=30) as client:
            response = client.post(
                "/v1/exports/learners/links",
                json={"format": "csv"},
                headers={"Authorization": "Bearer " + issue_token(JWT_SECRET, student)},
            )
        rows = rows_of(sql, student)
    finally:
        sql("DELETE FROM public.profiles WHERE id = $1", student)
    assert response.status_code == 403
    assert len(rows) == 1
    assert rows[0]["via_link"] and rows[0]["detail"].startswith("link refused: 403")


@pytest.mark.parametrize("given", ["cli-0123456789abcdef", "CLI-x"])
def test_a_request_cannot_pose_as_the_cli(
    live: LiveServer, sql: Callable[..., Any], given: str
) -> None:
    with live.client() as client:
        response = client.get(
            "/v1/exports/learners", params={"limit": "1"}, headers={"X-Request-Id": given}
        )
    assert response.status_code == 200
    assert not response.headers["x-request-id"].lower().startswith("cli-")
    export = response.headers["x-export-id"]
    rows = sql("SELECT request_id FROM learner_export.export_audit WHERE id = $1::uuid", export)
    assert rows[0]["request_id"] == response.headers["x-request-id"]
