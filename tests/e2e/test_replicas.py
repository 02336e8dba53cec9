"""Two replicas (two server processes on one database) share one set of export limits, held as
advisory locks by each export's own transaction: a replica killed mid-export gives its slots
back (docs/limits.md)."""

from __future__ import annotations

import signal
import socket
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from learner_export.auth import issue_token
from tests.conftest import JWT_SECRET, Database, query, server_process, wait_for

LIMITS = {
    "EXPORT_MAX_CONCURRENT_PER_USER": "2",
    "EXPORT_MAX_CONCURRENT": "3",
    "EXPORT_FIRST_STALL_SECONDS": "120",
}


def unread_download(url: str, token: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((host, int(port)))
    sock.sendall(
        f"GET /v1/exports/learners HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {token}\r\nAccept-Encoding: identity\r\n\r\n".encode()
    )
    return sock


def export(url: str, token: str) -> httpx.Response:
    return httpx.get(
        url + "/v1/exports/learners",
        params={"limit": "10"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def running(db: Database) -> int:
    rows = query(
        db.url,
        "SELECT count(*) AS n FROM pg_stat_activity"
        " WHERE application_name = 'learner-export' AND xact_start IS NOT NULL",
    )
    return int(rows[0]["n"])


@pytest.fixture
def admins(big_database: Database) -> Iterator[list[str]]:
    ids = [str(uuid.uuid4()) for _ in range(2)]
    for admin in ids:
        query(
            big_database.url, "INSERT INTO public.profiles (id, role) VALUES ($1, 'Admin')", admin
        )
    yield ids
    for admin in ids:
        query(big_database.url, "DELETE FROM public.profiles WHERE id = $1", admin)


def test_two_replicas_share_the_limits_and_a_killed_one_gives_its_slots_back(
    big_database: Database, admins: list[str]
) -> None:
    first, second = (issue_token(JWT_SECRET, a) for a in admins)
    held: list[socket.socket] = []
    with (
        server_process(big_database, **LIMITS) as a,
        server_process(big_database, **LIMITS) as b,
    ):
        try:
            # The first admin's two exports, one on each replica: their share, everywhere.
            held += [unread_download(a.url, first), unread_download(b.url, first)]
            assert wait_for(lambda: running(big_database) >= 2)
            mine = export(a.url, first)
            # The second admin's first export takes the last of the 3 slots in all.
            held.append(unread_download(b.url, second))
            time.sleep(1)
            everyone = export(a.url, second)
            # Replica A dies mid-export: its connections close, its locks with them.
            a.process.send_signal(signal.SIGKILL)
            a.process.wait(timeout=10)
            deadline = time.monotonic() + 15
            after = export(b.url, first)
            while after.status_code == 429 and time.monotonic() < deadline:
                time.sleep(0.25)
                after = export(b.url, first)
        finally:
            for sock in held:
                sock.close()
    assert mine.status_code == 429
    assert "you have 2 exports running" in mine.json()["detail"]
    assert everyone.status_code == 429
    assert "3 exports are running" in everyone.json()["detail"]
    assert after.status_code == 200
