"""Streaming: bytes leave before the export has been read, and a stalled reader holds it back."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from service import db
from service.formats import FORMATS, EncodeOptions
from service.params import ExportParams
from service.source import LearnerExport
from service.stream import encode_stream
from tests.conftest import BIG_LEARNERS, Database, LiveServer, make_settings, query, run, wait_for
from tests.test_copy_select import sheets


async def _first_chunk_progress(url: str, fmt: str, admin: str) -> tuple[int, int, int]:
    settings = make_settings(url)
    params = ExportParams(format=fmt)
    conn = await db.connect(settings, url)
    export = LearnerExport(conn, params, settings, admin)
    encoder = FORMATS[fmt].make_encoder(params.columns, EncodeOptions())
    fetched_at_first_chunk = -1
    chunks = 0
    try:
        await export.open()
        async for _ in encode_stream(export.batches(), encoder, settings.chunk_bytes):
            if chunks == 0:
                fetched_at_first_chunk = export.rows_fetched
            chunks += 1
    finally:
        await export.close()
        await conn.close()
    return fetched_at_first_chunk, export.rows_fetched, chunks


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "xlsx"])
def test_first_chunk_leaves_before_most_rows_are_read(database_url: str, seeded: str,
                                                     fmt: str) -> None:
    at_first_chunk, total, chunks = run(_first_chunk_progress(database_url, fmt, seeded))
    assert total > 0
    # The first chunk left with the first page (and at most the next one) read, not the export.
    assert at_first_chunk <= 100 + 500 < total
    assert chunks > 2


@pytest.fixture(scope="module")
def big(start_server: Callable[..., LiveServer], big_database: Database) -> LiveServer:
    return start_server(big_database)


def export_backends(url: str) -> list[dict[str, Any]]:
    rows = query(url, "SELECT pid, state, xact_start FROM pg_stat_activity"
                      " WHERE application_name = 'learner-export' AND xact_start IS NOT NULL")
    return sorted((dict(r) for r in rows), key=lambda r: r["xact_start"])


def joined_backends(url: str, connections: int = 2) -> list[dict[str, Any]]:
    """The export's backends once its helper has joined, the first (which opened it) first."""
    assert wait_for(lambda: len(export_backends(url)) == connections), export_backends(url)
    return export_backends(url)


def test_stalled_reader_keeps_the_export_open_then_gets_everything(big: LiveServer,
                                                                   big_database: Database) -> None:
    with big.client() as client, client.stream(
            "GET", "/v1/exports/learners", params={"format": "jsonl"}) as response:
        assert response.status_code == 200
        chunks = response.iter_raw()
        first = next(chunks)
        received, lines = len(first), first.count(b"\n")
        time.sleep(1.0)
        # The server has not read the whole export into memory: it waits on the socket, with
        # its snapshot still open (on the export's two connections), because the client
        # stopped reading.
        backends = export_backends(big_database.url)
        assert len(backends) == big.settings.connections_per_export == 2
        assert {b["state"] for b in backends} == {"idle in transaction"}
        tail = b""
        for chunk in chunks:
            received += len(chunk)
            lines += chunk.count(b"\n")
            tail = chunk[-1:]
    assert tail == b"\n"
    assert lines == BIG_LEARNERS
    assert received > 20_000_000
    deadline = time.monotonic() + 10
    while export_backends(big_database.url) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert export_backends(big_database.url) == []


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "xlsx"])
def test_one_connection_per_export_gives_the_same_file(
        start_server: Callable[..., LiveServer], big: LiveServer, big_database: Database,
        fmt: str) -> None:
    """EXPORT_CONNECTIONS_PER_EXPORT=1: no helper, the same rows in the same order."""
    single = start_server(big_database, connections_per_export=1)
    params = {"format": fmt}
    with single.client() as client, client.stream(
            "GET", "/v1/exports/learners", params=params) as response:
        assert response.status_code == 200
        chunks = response.iter_raw()
        alone = next(chunks)
        time.sleep(0.3)
        # Never a helper (the export may have ended already: its rest fits in socket buffers).
        assert len(export_backends(big_database.url)) <= 1
        alone += b"".join(chunks)
    with big.client() as client:
        helped = client.get("/v1/exports/learners", params=params)
    if fmt == "xlsx":
        assert sheets(alone) == sheets(helped.content)
    else:
        assert alone == helped.content
    assert len(alone) > 4_000_000
