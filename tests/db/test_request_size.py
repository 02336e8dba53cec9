"""Oversized request heads are refused by `learner-export serve` before they cost memory."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import orjson
import pytest

from learner_export.api.head_limit import head_size
from tests.conftest import Database, ServerProcess, server_process


@pytest.fixture(scope="module")
def served(database: Database) -> Iterator[ServerProcess]:
    with server_process(database) as server:
        yield server


@pytest.fixture(scope="module")
def small_limit(database: Database) -> Iterator[ServerProcess]:
    with server_process(database, EXPORT_MAX_HEADER_BYTES="8192") as server:
        yield server


def send_head(server: ServerProcess, header_bytes: int, timeout: float = 10) -> tuple[bytes, float]:
    """Send a GET /healthz whose X-Padding header holds `header_bytes` bytes; what came back
    (b"" when the server just closed) and how long it took."""
    parts = urlsplit(server.url)
    started = time.monotonic()
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: "
        try:
            sock.sendall(head)
            padding = b"a" * 65536
            for _ in range(header_bytes // len(padding)):
                sock.sendall(padding)
            sock.sendall(b"a" * (header_bytes % len(padding)) + b"\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server refused and hung up while the header was still on its way
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
                if answer.endswith(b"}"):
                    break
        except (ConnectionResetError, TimeoutError):
            pass
    return answer, time.monotonic() - started


def healthy(server: ServerProcess) -> float:
    """Seconds /healthz took, asserting it answered 200."""
    started = time.monotonic()
    assert httpx.get(server.url + "/healthz", timeout=5).status_code == 200
    return time.monotonic() - started


def test_a_1_mb_header_is_refused_at_once_and_the_server_stays_healthy(
    served: ServerProcess,
) -> None:
    rss_before = served.rss_kb()
    answer, took = send_head(served, 1024 * 1024)
    assert not answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert answer == b"" or answer.split(b" ", 2)[1] in (b"400", b"431"), answer[:200]
    assert took < 5
    assert healthy(served) < 1
    # The default limit (64 KiB) is what the server may buffer, not the megabyte sent.
    assert served.rss_kb() - rss_before < 512


def test_a_header_under_the_limit_is_served(served: ServerProcess) -> None:
    answer, _ = send_head(served, 40 * 1024)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]


def test_an_export_naming_1000_clients_fits_under_the_default_limit(
    served: ServerProcess, sql: object
) -> None:
    # The longest query string the export accepts: 1,000 client_id values (about 47 KB).
    client_ids = [f"00000000-0000-4000-8000-{n:012d}" for n in range(1000)]
    with served.client() as client:
        response = client.get(
            "/v1/exports/learners", params={"client_id": client_ids, "format": "jsonl"}
        )
    assert response.status_code == 200
    assert response.content == b""


def test_the_limit_is_a_setting(small_limit: ServerProcess) -> None:
    answer, _ = send_head(small_limit, 10 * 1024)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    assert orjson.loads(answer.split(b"\r\n\r\n", 1)[1])["error"] == (
        "request_header_fields_too_large"
    )
    answer, _ = send_head(small_limit, 7 * 1024)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert healthy(small_limit) < 1


def test_head_size_counts_the_request_line_and_every_header() -> None:
    scope = {
        "type": "http",
        "method": "GET",
        "raw_path": b"/healthz",
        "query_string": b"a=1",
        "headers": [(b"host", b"x"), (b"x-padding", b"a" * 100)],
    }
    wire = b"GET /healthz?a=1 HTTP/1.1\r\nhost: x\r\nx-padding: " + b"a" * 100 + b"\r\n\r\n"
    assert abs(head_size(scope) - len(wire)) <= 8
