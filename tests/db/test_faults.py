"""Failures after streaming started cut the response; disconnects give everything back."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable

import httpx
import pytest

from tests.conftest import (
    BIG_LEARNERS,
    Database,
    LiveServer,
    export_backends,
    joined_backends,
    query,
)


@pytest.fixture(scope="module")
def big(start_server: Callable[..., LiveServer], big_database: Database) -> LiveServer:
    return start_server(big_database)


@pytest.fixture(scope="module")
def big_paged(start_server: Callable[..., LiveServer], big_database: Database) -> LiveServer:
    """Every page through the page function, on the export's two connections."""
    return start_server(big_database, bulk_pass=False)


def wait_until_released(server: LiveServer, url: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if server.pool_in_use() == 0 and not export_backends(url):
            return
        time.sleep(0.05)


def terminate_export_backend(url: str, which: int, of: int) -> None:
    """Kill one of the export's `of` backends: 0 opened the export, 1 is its helper (the bulk
    pass's second range)."""
    query(url, "SELECT pg_terminate_backend($1)", joined_backends(url, of)[which]["pid"])


@pytest.fixture(scope="module")
def big_one_range(start_server: Callable[..., LiveServer], big_database: Database) -> LiveServer:
    """The bulk pass in one range, on the export's one connection."""
    return start_server(big_database, bulk_range_min_rows=10 * BIG_LEARNERS)


@pytest.mark.parametrize(
    ("bulk", "which", "of"),
    [(True, 0, 2), (True, 1, 2), (True, 0, 1), (False, 0, 2), (False, 1, 2)],
    ids=["bulk-sent-range", "bulk-held-range", "bulk-one-range", "first", "helper"],
)
@pytest.mark.parametrize("fmt", ["csv", "jsonl", "xlsx"])
def test_backend_killed_mid_stream_gives_an_incomplete_transfer(
    big: LiveServer,
    big_paged: LiveServer,
    big_one_range: LiveServer,
    big_database: Database,
    fmt: str,
    bulk: bool,
    which: int,
    of: int,
) -> None:
    # The bulk pass in two key ranges (the first sent as it is read, the second held until
    # then) or in one; or the page walk with its helper.
    big = (big if of == 2 else big_one_range) if bulk else big_paged
    with (
        big.client() as client,
        client.stream("GET", "/v1/exports/learners", params={"format": fmt}) as response,
    ):
        assert response.status_code == 200
        chunks = response.iter_bytes()
        next(chunks)
        terminate_export_backend(big_database.url, which, of)
        with pytest.raises(httpx.RemoteProtocolError):
            for _ in chunks:
                pass
    wait_until_released(big, big_database.url)
    assert big.pool_in_use() == 0
    # The service is healthy for the next export.
    with big.client() as client:
        after = client.get("/v1/exports/learners", params={"format": "csv", "limit": 10})
    assert after.status_code == 200
    assert after.text.count("\r\n") >= 11


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_reports_the_cut_transfer(big: LiveServer, big_database: Database) -> None:
    curl = subprocess.Popen(
        [
            "curl",
            "-sS",
            "--limit-rate",
            "2M",
            "-o",
            "/dev/null",
            "-H",
            f"Authorization: Bearer {big.token}",
            f"{big.url}/v1/exports/learners?format=csv",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 10
    while not export_backends(big_database.url) and time.monotonic() < deadline:
        time.sleep(0.02)
    terminate_export_backend(big_database.url, 0, 2)
    _, err = curl.communicate(timeout=60)
    assert curl.returncode == 18, err  # CURLE_PARTIAL_FILE: transfer closed with data remaining


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "xlsx"])
def test_client_disconnect_releases_the_connection(
    big: LiveServer, big_database: Database, fmt: str
) -> None:
    for _ in range(3):
        with (
            big.client() as client,
            client.stream("GET", "/v1/exports/learners", params={"format": fmt}) as response,
        ):
            assert response.status_code == 200
            next(response.iter_raw())
        # Leaving the block closes the connection mid-download.
    wait_until_released(big, big_database.url)
    assert big.pool_in_use() == 0
    assert export_backends(big_database.url) == []
    idle = query(
        big_database.url,
        "SELECT count(*) AS n FROM pg_stat_activity"
        " WHERE application_name = 'learner-export' AND state = 'idle in transaction'",
    )
    assert idle[0]["n"] == 0


def test_complete_download_after_faults(big: LiveServer) -> None:
    with big.client() as client:
        response = client.get(
            "/v1/exports/learners", params={"format": "jsonl", "columns": "learner_id"}
        )
    assert response.status_code == 200
    assert response.content.count(b"\n") == BIG_LEARNERS
