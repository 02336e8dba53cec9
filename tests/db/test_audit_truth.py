"""The audit row tells the truth: rows and bytes that left the process, and a finish that could
not be written is seen (a metric and an error line), not silently lost."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import BIG_LEARNERS, Database, LiveServer, query, service_role_of, wait_for


def audit(url: str, export_id: str) -> dict[str, Any]:
    return dict(query(url, "SELECT * FROM learner_export.export_audit WHERE id = $1", export_id)[0])


def test_a_cut_export_counts_only_what_left(
    start_server: Callable[..., LiveServer], big_database: Database
) -> None:
    """A client that takes one chunk and goes: the row counts what was handed on, far less
    than the export, and the bytes match whole pages (never more than the export)."""
    server = start_server(big_database)
    with (
        server.client() as client,
        client.stream("GET", "/v1/exports/learners", params={"format": "jsonl"}) as response,
    ):
        export_id = response.headers["x-export-id"]
        next(response.iter_raw())
    assert wait_for(lambda: audit(big_database.url, export_id)["outcome"] != "started")
    row = audit(big_database.url, export_id)
    assert row["outcome"] == "client_disconnected"
    assert 0 < row["rows_sent"] < BIG_LEARNERS / 2
    assert 0 < row["bytes_sent"] < 20_000_000


def test_a_finish_that_cannot_be_written_is_seen(
    start_server: Callable[..., LiveServer], database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    server = start_server(database)
    finish = "learner_export.finish_export(uuid, text, bigint, bigint, integer, uuid[], text)"
    service = service_role_of(database.url)
    query(database.url, f"REVOKE EXECUTE ON FUNCTION {finish} FROM {service}")
    try:
        with (
            caplog.at_level(logging.ERROR, logger="learner_export.audit"),
            server.client() as client,
        ):
            response = client.get("/v1/exports/learners", params={"limit": "5"})
            assert response.status_code == 200  # the caller got the whole export
            deadline = time.monotonic() + 10
            while (
                "could not complete the audit row" not in caplog.text
                and time.monotonic() < deadline
            ):
                time.sleep(0.05)
            metrics = client.get("/metrics").text
    finally:
        query(database.url, f"GRANT EXECUTE ON FUNCTION {finish} TO {service}")
    assert "could not complete the audit row" in caplog.text
    assert 'learner_export_failures_total{kind="audit_not_completed"} 1.0' in metrics
    assert audit(database.url, response.headers["x-export-id"])["outcome"] == "started"
