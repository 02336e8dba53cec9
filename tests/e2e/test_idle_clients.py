"""Idle and half-sent connections cannot take the service down (docs/limits.md): requests have
a deadline, connections a cap below the descriptor limit, and the oldest idle connection makes
room for a new one."""

from __future__ import annotations

import contextlib
import csv
import io
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import httpx
import pytest

from learner_export.auth import issue_token
from tests.conftest import JWT_SECRET, Database, _free_port, service_url, wait_for

HALF_SENT = 2000


@contextlib.contextmanager
def serve(database: Database, nofile: int, **env: str) -> Iterator[str]:
    """`learner-export serve` with its descriptor soft limit at `nofile` (the common 1,024)."""
    port = _free_port()
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, hard))

    environment = {
        **os.environ,
        "DATABASE_URL": service_url(database),
        "EXPORT_JWT_SECRET": JWT_SECRET,
        **env,
    }
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "learner_export.cli.main", "serve", "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=log,
            env=environment,
            preexec_fn=limit,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                        break
                if time.monotonic() > deadline or process.poll() is not None:
                    log.seek(0)
                    raise RuntimeError("the service did not start:\n" + log.read())
                time.sleep(0.05)
            yield url
        finally:
            process.kill()
            process.wait(timeout=30)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def half_sent(port: int, token: str, i: int) -> socket.socket:
    """A request that never completes: half a head, or a head whose body never comes."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    if i % 2:
        sock.sendall(
            b"POST /v1/exports/learners/links HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            + token.encode()
            + b"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
        )
    else:
        sock.sendall(b"GET /v1/exports/learners HTTP/1.1\r\nHost: x\r\nX-Never-Ends")
    return sock


@pytest.fixture
def many_descriptors() -> Iterator[None]:
    """This process holds thousands of sockets: its soft limit raised to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < HALF_SENT + 200:
        pytest.skip(f"the descriptor hard limit ({hard}) is too low to hold {HALF_SENT} sockets")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_health_and_an_admins_export_while_2000_requests_are_held_half_sent(
    database: Database, many_descriptors: None
) -> None:
    token = issue_token(JWT_SECRET, database.admin_id)
    # A long deadline: what keeps the service up here is the cap, not the timeout.
    with serve(database, nofile=1024, EXPORT_REQUEST_READ_TIMEOUT_SECONDS="120") as url:
        port = int(url.rsplit(":", 1)[1])
        held = [half_sent(port, token, i) for i in range(HALF_SENT)]
        try:
            # The server takes the burst in (accepting 2,000 connections and closing the
            # oldest past its cap takes it a few seconds on a busy 2-core machine) ...
            assert wait_for(lambda: _healthy(url), timeout=60)
            # ... and then, while they are held and more keep coming, answers at once.
            held += [half_sent(port, token, i) for i in range(200)]
            began = time.monotonic()
            health = httpx.get(url + "/healthz", timeout=5)
            health_seconds = time.monotonic() - began
            export = httpx.get(
                url + "/v1/exports/learners",
                params={"limit": "500"},
                headers={"Authorization": f"Bearer {token}"},
                timeout=30,
            )
        finally:
            for sock in held:
                sock.close()
    assert health.status_code == 200 and health_seconds < 1
    assert export.status_code == 200
    rows = list(csv.reader(io.StringIO(export.text)))
    assert len(rows) == 501  # the header and 500 learners: complete


def _closed_within(sock: socket.socket, seconds: float) -> tuple[bytes, float]:
    """What the server sent before closing, and when it closed (inf: still open)."""
    sock.settimeout(seconds)
    began = time.monotonic()
    received = b""
    try:
        while chunk := sock.recv(4096):
            received += chunk
    except TimeoutError:
        return received, float("inf")
    return received, time.monotonic() - began


def test_a_head_or_body_that_never_completes_is_cut_at_the_deadline(database: Database) -> None:
    token = issue_token(JWT_SECRET, database.admin_id)
    with serve(database, nofile=1024, EXPORT_REQUEST_READ_TIMEOUT_SECONDS="1") as url:
        port = int(url.rsplit(":", 1)[1])
        head, body = half_sent(port, token, 0), half_sent(port, token, 1)
        idle = socket.create_connection(("127.0.0.1", port), timeout=5)
        # One byte every half second does not extend the deadline.
        slow = socket.create_connection(("127.0.0.1", port), timeout=5)
        for piece in (b"GET /healthz HTTP/1.1\r\n", b"Host: x\r\n", b"X-A: 1\r\n"):
            slow.sendall(piece)
            time.sleep(0.4)
        head_sent, head_closed = _closed_within(head, 5)
        _, body_closed = _closed_within(body, 5)
        _, idle_closed = _closed_within(idle, 5)
        slow_sent, slow_closed = _closed_within(slow, 5)
        for sock in (head, body, idle, slow):
            sock.close()
    assert head_sent.startswith(b"HTTP/1.1 408 ")
    assert b'"error":"request_timeout"' in head_sent
    assert slow_sent.startswith(b"HTTP/1.1 408 ")
    assert max(head_closed, body_closed, idle_closed, slow_closed) < 3
