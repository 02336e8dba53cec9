"""The embedded PostgreSQL (the demo's and the tests') lets in only its owner: a connection
without the password, or with another, is refused, over TCP and over its unix socket, also from
another user of the machine."""

from __future__ import annotations

import asyncio
import os
import pwd
import subprocess
from collections.abc import Iterator

import asyncpg
import pytest

from learner_export.demo.embedded import EmbeddedPostgres


@pytest.fixture(scope="module")
def pg() -> Iterator[EmbeddedPostgres]:
    with EmbeddedPostgres() as server:
        yield server


async def _connect(**kwargs: object) -> str:
    try:
        conn = await asyncpg.connect(timeout=10, **kwargs)  # type: ignore[arg-type]
    except (asyncpg.InvalidPasswordError, asyncpg.InvalidAuthorizationSpecificationError) as e:
        return f"refused: {e}"
    try:
        return str(await conn.fetchval("SELECT current_user"))
    finally:
        await conn.close()


def connect(**kwargs: object) -> str:
    return asyncio.run(_connect(**kwargs))


def test_the_owner_gets_in_with_the_password(pg: EmbeddedPostgres) -> None:
    assert connect(dsn=pg.url) == "postgres"
    assert len(pg.password) >= 32


@pytest.mark.parametrize("password", [None, "", "postgres", "wrong"])
def test_without_the_password_a_connection_is_refused(
    pg: EmbeddedPostgres, password: str | None
) -> None:
    refused = 'refused: password authentication failed for user "postgres"'
    tcp = connect(host="127.0.0.1", port=pg.port, user="postgres", password=password)
    assert tcp == refused
    # The unix socket, in the data directory (which only the server's user may enter).
    local = connect(host=str(pg.socket_dir), port=pg.port, user="postgres", password=password)
    assert local == refused


def test_another_user_of_the_machine_is_refused(pg: EmbeddedPostgres) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to run a command as another user")
    psql = pg.bin_dir / "psql"
    result = subprocess.run(
        [
            str(psql),
            "-w",
            "-h",
            "127.0.0.1",
            "-p",
            str(pg.port),
            "-U",
            "postgres",
            "-c",
            "COPY (SELECT 1) TO PROGRAM 'id'",
        ],
        user=pwd.getpwnam("nobody").pw_uid,
        capture_output=True,
        env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"},
        cwd="/tmp",
        timeout=30,
        check=False,
    )
    assert result.returncode == 2, result
    assert b"no password supplied" in result.stderr, result.stderr
