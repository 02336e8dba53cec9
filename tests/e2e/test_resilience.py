"""Faults and load, against real servers: the database comes and goes, clients stall or vanish,
the pool runs dry, the service is told to stop."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
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


def _prepare(url: str, learners: int = 3000) -> str:
    result: str = run(
        demo.prepare_demo(
            url, Settings(database_url=url), learners=learners, clients=3, data_seed=5
        )
    )
    return result


@pytest.fixture
def own_postgres() -> Iterator[EmbeddedPostgres]:
    """A server of this test's own, to stop and start (never the shared one)."""
    pg = EmbeddedPostgres()
    yield pg
    pg.stop()


def status(server: LiveServer, path: str) -> int:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        return client.get(path).status_code


def test_starts_without_its_database_and_recovers(
    start_server: Callable[..., LiveServer], own_postgres: EmbeddedPostgres
) -> None:
    server = start_server(
        Database(own_postgres.url, "00000000-0000-0000-0000-000000000000"),
        acquire_timeout_seconds=1.0,
    )
    assert status(server, "/healthz") == 200
    assert status(server, "/readyz") == 503
    with server.client() as client:
        response = client.get("/v1/exports/learners")
    assert response.status_code == 503
    assert response.json()["error"] == "database_unavailable"
    assert int(response.headers["retry-after"]) > 0

    own_postgres.start()
    admin = _prepare(own_postgres.url)
    assert wait_for(lambda: status(server, "/readyz") == 200)
    from learner_export.auth import issue_token
    from tests.conftest import JWT_SECRET

    with httpx.Client(base_url=server.url, timeout=30) as client:
        ok = client.get(
            "/v1/exports/learners",
            params={"format": "jsonl"},
            headers={"Authorization": f"Bearer {issue_token(JWT_SECRET, admin)}"},
        )
    assert ok.status_code == 200
    assert ok.content.count(b"\n") == 3000


def test_database_restart_cuts_the_stream_and_the_service_recovers(
    start_server: Callable[..., LiveServer], own_postgres: EmbeddedPostgres
) -> None:
    own_postgres.start()
    # Tens of MB of JSON Lines: more than socket buffers hold, so the export is still reading
    # when the database goes away.
    admin = _prepare(own_postgres.url, learners=30_000)
    server = start_server(
        Database(own_postgres.url, admin),
        acquire_timeout_seconds=1.0,
        page_size=100,
        first_page_size=100,
    )
    with (
        server.client() as client,
        client.stream("GET", "/v1/exports/learners", params={"format": "jsonl"}) as response,
    ):
        assert response.status_code == 200
        chunks = response.iter_raw()
        next(chunks)
        # The bulk pass: two key ranges, a connection each.
        assert len(joined_backends(own_postgres.url, 2)) == 2
        own_postgres.stop_server()
        with pytest.raises(httpx.RemoteProtocolError):
            for _ in chunks:
                pass
    assert wait_for(lambda: status(server, "/readyz") == 503)
    own_postgres.start_server()
    assert wait_for(lambda: status(server, "/readyz") == 200)
    with server.client() as client:
        after = client.get("/v1/exports/learners", params={"format": "jsonl"})
    assert after.status_code == 200
    assert after.content.count(b"\n") == 30_000
    assert wait_for(lambda: server.pool_in_use() == 0)


def test_pool_exhausted_gets_503_in_bounded_time(
    start_server: Callable[..., LiveServer], big_database: Database
) -> None:
    # Two connections, one kept from helpers: a running export holds one, and a second export
    # takes the other for its snapshot, then finds none for its audit row.
    server = start_server(
        big_database, pool_max_size=2, reserved_connections=1, acquire_timeout_seconds=0.5
    )
    with (
        server.client() as client,
        client.stream("GET", "/v1/exports/learners", params={"format": "jsonl"}) as stalled,
    ):
        chunks = stalled.iter_raw()  # kept: a dropped iterator closes the response
        next(chunks)  # the export now holds its connection, and the client reads no more
        time.sleep(0.5)
        assert server.pool_in_use() == 1
        with server.client(timeout=10) as other:
            response = other.get("/v1/exports/learners", params={"limit": "1"})
        assert response.status_code == 503
        assert response.json()["error"] == "database_unavailable"
        assert "busy" in response.json()["detail"]
        assert response.headers["retry-after"]
    assert wait_for(lambda: server.pool_in_use() == 0)


def test_client_that_stops_reading_is_cut_after_the_stall_timeout(
    start_server: Callable[..., LiveServer], big_database: Database
) -> None:
    server = start_server(big_database, stall_timeout_seconds=1.0)
    with (
        server.client() as client,
        client.stream("GET", "/v1/exports/learners", params={"format": "jsonl"}) as response,
    ):
        chunks = response.iter_raw()
        next(chunks)
        # The snapshot is given up while the client still holds its connection.
        assert wait_for(lambda: not export_backends(big_database.url), timeout=20)
        assert wait_for(lambda: server.pool_in_use() == 0)
        with pytest.raises(httpx.RemoteProtocolError):
            for _ in chunks:
                pass


def test_slow_reader_holds_server_memory_flat(big_database: Database) -> None:
    with (
        server_process(big_database) as server,
        server.client() as client,
        client.stream("GET", "/v1/exports/learners", params={"format": "jsonl"}) as response,
    ):
        chunks = response.iter_raw(chunk_size=10_000)
        next(chunks)
        time.sleep(0.5)
        start_rss = server.rss_kb()
        for _ in range(30):  # about 100 KB/s for 3 s
            next(chunks)
            time.sleep(0.1)
        grown_kb = server.rss_kb() - start_rss
        assert grown_kb < 5_000, f"the server grew by {grown_kb} KB while the client dawdled"


def _slow_download(url: str, token: str, rate_per_s: int, result: dict[str, Any]) -> None:
    try:
        with (
            httpx.Client(
                base_url=url,
                timeout=60,
                headers={"Authorization": f"Bearer {token}", "Accept-Encoding": "identity"},
            ) as client,
            client.stream("GET", "/v1/exports/learners", params={"format": "jsonl"}) as response,
        ):
            result["status"] = response.status_code
            for chunk in response.iter_raw(chunk_size=rate_per_s // 10):
                result["bytes"] = result.get("bytes", 0) + len(chunk)
                time.sleep(0.1)
        result["outcome"] = "complete"
    except httpx.HTTPError as exc:
        result["outcome"] = type(exc).__name__


def test_sigterm_refuses_new_work_then_cuts_exports_that_outlive_the_grace(
    big_database: Database,
) -> None:
    with server_process(big_database, EXPORT_SHUTDOWN_GRACE_SECONDS="1") as server:
        result: dict[str, Any] = {}
        reader = threading.Thread(
            target=_slow_download, args=(server.url, server.token, 500_000, result)
        )
        reader.start()
        assert wait_for(lambda: result.get("bytes", 0) > 0)
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        with pytest.raises(httpx.TransportError):
            httpx.get(server.url + "/healthz", timeout=2)
        reader.join(timeout=60)
        code = server.process.wait(timeout=30)
    assert result["status"] == 200
    assert result["outcome"] == "RemoteProtocolError"  # cut, never a complete-looking file
    assert code == 0
    assert wait_for(lambda: not export_backends(big_database.url))


def test_sigterm_lets_an_export_within_the_grace_finish(big_database: Database) -> None:
    with server_process(big_database, EXPORT_SHUTDOWN_GRACE_SECONDS="30") as server:
        result: dict[str, Any] = {}
        reader = threading.Thread(
            target=_slow_download, args=(server.url, server.token, 20_000_000, result)
        )
        reader.start()
        assert wait_for(lambda: result.get("bytes", 0) > 0)
        server.process.send_signal(signal.SIGTERM)
        reader.join(timeout=60)
        code = server.process.wait(timeout=30)
    assert result["outcome"] == "complete"
    assert result["bytes"] > 20_000_000
    assert code == 0


@pytest.mark.slow
def test_two_hundred_aborted_downloads_leak_nothing(big_database: Database) -> None:
    with server_process(big_database) as server:
        with server.client() as client:
            client.get("/v1/exports/learners", params={"limit": "10"})
        baseline = server.rss_kb()
        formats = ("csv", "jsonl", "xlsx")
        for i in range(200):
            with (
                server.client() as client,
                client.stream(
                    "GET", "/v1/exports/learners", params={"format": formats[i % 3]}
                ) as response,
            ):
                assert response.status_code == 200
                next(response.iter_raw())
        assert wait_for(lambda: not export_backends(big_database.url))
        idle = query(
            big_database.url,
            "SELECT count(*) AS n FROM pg_stat_activity WHERE"
            " application_name = 'learner-export'"
            " AND state <> 'idle'",
        )
        assert idle[0]["n"] == 0
        metrics = httpx.get(server.url + "/metrics").text
        assert 'learner_export_pool_connections{state="in_use"} 0.0' in metrics
        grown_mb = (server.rss_kb() - baseline) / 1024
        print(
            f"\n200 aborted downloads: RSS {baseline / 1024:.0f} MB -> "
            f"{server.rss_kb() / 1024:.0f} MB, peak {server.rss_kb('VmHWM') / 1024:.0f} MB"
        )
        assert grown_mb < 30


@pytest.mark.slow
def test_thirty_two_concurrent_exports_complete(big_database: Database) -> None:
    rows = 50_000
    with server_process(
        big_database,
        EXPORT_POOL_MAX_SIZE="40",
        EXPORT_MAX_CONCURRENT="32",
        EXPORT_MAX_CONCURRENT_PER_USER="32",
        # 32 connections opened at once by a cold pool (a SCRAM handshake and the uuid codec's
        # introspection each) take more than the default 2 s on two busy cores.
        EXPORT_ACQUIRE_TIMEOUT_SECONDS="15",
    ) as server:

        async def one(client: httpx.AsyncClient, fmt: str) -> tuple[str, int, int]:
            async with client.stream(
                "GET",
                "/v1/exports/learners",
                params={"format": fmt, "limit": str(rows), "columns": "learner_id,full_name,notes"},
            ) as r:
                body = b"".join([c async for c in r.aiter_raw()])
                return fmt, r.status_code, len(body) if fmt == "xlsx" else body.count(b"\n")

        async def all_of_them() -> list[tuple[str, int, int]]:
            async with httpx.AsyncClient(
                base_url=server.url,
                timeout=300,
                headers={"Authorization": f"Bearer {server.token}", "Accept-Encoding": "identity"},
            ) as client:
                return await asyncio.gather(
                    *(one(client, ("csv", "jsonl", "xlsx")[i % 3]) for i in range(32))
                )

        started = time.monotonic()
        results = asyncio.run(all_of_them())
        elapsed = time.monotonic() - started
        peak_mb = server.rss_kb("VmHWM") / 1024
    print(
        f"\n32 concurrent exports of {rows} rows: {elapsed:.1f} s, "
        f"{32 * rows / elapsed:,.0f} rows/s, server peak RSS {peak_mb:.0f} MB"
    )
    assert [s for _, s, _ in results] == [200] * 32
    for fmt, _, size in results:
        if fmt == "jsonl":
            assert size == rows
        elif fmt == "csv":
            assert size >= rows + 1  # notes hold newlines too
        else:
            assert size > 100_000
    assert peak_mb < 400
