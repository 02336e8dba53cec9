"""Exports through PgBouncer in transaction mode, as Supabase's pooler offers it."""

from __future__ import annotations

import ctypes
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import orjson
import pytest

from tests.conftest import SERVICE_PASSWORD, Database, LiveServer, _free_port

PGBOUNCER = shutil.which("pgbouncer") or (
    "/usr/sbin/pgbouncer" if os.path.exists("/usr/sbin/pgbouncer") else None
)


def _die_with_parent() -> None:
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)


@pytest.fixture(scope="module")
def bouncer_url(database: Database) -> Iterator[str]:
    if PGBOUNCER is None:
        pytest.skip("PgBouncer is not installed (apt-get install pgbouncer)")
    target = urlsplit(database.url)
    port = _free_port()
    folder = Path(tempfile.mkdtemp(prefix="learner-export-pgbouncer-"))
    os.chmod(folder, 0o755)
    # PgBouncer logs in to the server with these (the embedded one asks for passwords).
    (folder / "userlist.txt").write_text(
        f'"postgres" "{target.password or ""}"\n"learner_export_app" "{SERVICE_PASSWORD}"\n'
    )
    (folder / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = host={target.hostname} port={target.port}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {folder}/userlist.txt\n"
        "pool_mode = transaction\nmax_client_conn = 200\ndefault_pool_size = 10\n"
        "ignore_startup_parameters = extra_float_digits\n"
    )
    command = [PGBOUNCER, str(folder / "pgbouncer.ini")]
    if os.geteuid() == 0:  # PgBouncer will not run as root
        command[1:1] = ["-u", "nobody"]
        nobody = pwd.getpwnam("nobody")
        for path in folder.iterdir():
            os.chown(path, nobody.pw_uid, nobody.pw_gid)
    # Its log goes to a file: a pipe nobody reads would stop PgBouncer once it is full.
    log_path = folder / "pgbouncer.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=log, preexec_fn=_die_with_parent
        )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        "PgBouncer did not start: " + log_path.read_text(errors="replace")
                    ) from None
                time.sleep(0.05)
        yield urlunsplit(target._replace(netloc=f"{target.username}@127.0.0.1:{port}"))
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "xlsx"])
def test_exports_work_through_pgbouncer_in_transaction_mode(
    start_server: Callable[..., LiveServer],
    bouncer_url: str,
    database: Database,
    live: LiveServer,
    fmt: str,
) -> None:
    server = start_server(Database(bouncer_url, database.admin_id), statement_cache_size=0)
    with server.client() as client:
        through = client.get("/v1/exports/learners", params={"format": fmt})
        counted = client.get(
            "/v1/exports/learners",
            params={"format": "jsonl", "limit": "7"},
            headers={"Prefer": "count=exact"},
        )
    with live.client() as client:
        direct = client.get("/v1/exports/learners", params={"format": fmt})
    assert through.status_code == 200, through.text
    if fmt == "xlsx":
        assert len(through.content) == pytest.approx(len(direct.content), rel=0.01)
    else:
        assert through.content == direct.content
    assert counted.headers["x-total-count"] == "7"
    assert [orjson.loads(line) for line in counted.content.splitlines()][-1]["learner_id"]
