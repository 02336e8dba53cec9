"""Fixtures: a real PostgreSQL (DATABASE_URL's server, or an embedded one), seeded messy data,
and the service running in a real uvicorn server on a free loopback port."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from learner_export import db
from learner_export.api.app import create_app
from learner_export.auth import issue_token
from learner_export.config import Settings
from learner_export.connections import DirectConnections
from learner_export.contract import SERVICE_ROLE, load_contract
from learner_export.demo import seed as demo
from learner_export.demo.embedded import EmbeddedPostgres
from learner_export.formats import FORMATS
from learner_export.pages import SnapshotPages
from learner_export.params import ExportParams, parse_export_params

JWT_SECRET = "test-secret-" + "x" * 40
LINK_SECRETS = "k2:" + "n" * 40 + ",k1:" + "o" * 40
SEED_LEARNERS = 4000
SEED_CLIENTS = 7
BIG_LEARNERS = 60_000


SERVICE_LOGIN = "learner_export_app"
# The embedded server asks every login for its password (scram-sha-256); a new one per run.
SERVICE_PASSWORD = secrets.token_urlsafe(24)


@dataclass(frozen=True)
class Database:
    url: str  # as the owner: for setting up data and reading it back
    admin_id: str

    @property
    def service_url(self) -> str:
        """As the login role the service runs as: it holds the database's service role, nothing
        more (not a superuser, owns nothing)."""
        parts = urlsplit(self.url)
        netloc = parts.netloc.rpartition("@")[2]
        return urlunsplit(parts._replace(netloc=f"{SERVICE_LOGIN}:{SERVICE_PASSWORD}@{netloc}"))


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def wait_for(condition: Callable[[], bool], timeout: float = 15) -> bool:
    """Poll until condition() holds (bounded); its last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """A PostgreSQL server: DATABASE_URL's, or a throwaway embedded one."""
    server = os.environ.get("DATABASE_URL")
    if server:
        yield server
        return
    with EmbeddedPostgres() as pg:
        yield pg.url


def service_role_of(url: str) -> str:
    """The service's role the tests give a database of theirs: its own, as `db migrate`
    requires of databases sharing a server (learner_export.db.role), named after it."""
    return f"{urlsplit(url).path.lstrip('/')}_service"[:63]


# The login is the cluster's, shared by the tests' databases: made once, and granted in each
# the service's role that database recorded (each has its own).
SERVICE_LOGIN_SQL = f"""
DO $$
DECLARE
    service text;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{SERVICE_LOGIN}') THEN
        CREATE ROLE {SERVICE_LOGIN} LOGIN NOINHERIT;
    END IF;
    -- Before the grant: PostgreSQL 16 gives a grant the member's INHERIT at the time.
    ALTER ROLE {SERVICE_LOGIN} INHERIT PASSWORD '{SERVICE_PASSWORD}';
    IF to_regclass('learner_export.service_role') IS NOT NULL THEN
        EXECUTE 'SELECT name FROM learner_export.service_role' INTO service;
    END IF;
    EXECUTE format('GRANT %I TO {SERVICE_LOGIN}', coalesce(service, 'learner_export_service'));
END
$$;
"""


async def _admin(server: str, statement: str) -> None:
    conn = await asyncpg.connect(server)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture
def empty_database(pg_server: str) -> Iterator[str]:
    """An empty database of the test's own, dropped after, for commands run as a newcomer runs
    them. `db migrate` without EXPORT_SERVICE_ROLE makes learner_export_service, a role of the
    whole server: dropped after too when the test made it, so that the suite leaves the server
    as it found it (a second run there would otherwise skip the default role's tests)."""
    name = f"learner_export_empty_{uuid.uuid4().hex[:12]}"
    existed = query(
        pg_server, "SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = $1)", SERVICE_ROLE
    )[0][0]
    run(_admin(pg_server, f'CREATE DATABASE "{name}"'))
    try:
        yield _with_database(pg_server, name)
    finally:
        run(_admin(pg_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        if not existed:
            run(_admin(pg_server, f'DROP ROLE IF EXISTS "{SERVICE_ROLE}"'))


@contextlib.contextmanager
def fresh_database(server: str, learners: int, clients: int, seed: int) -> Iterator[Database]:
    """A database of our own on the server, migrated, seeded and vacuumed; dropped after."""
    name = f"learner_export_test_{uuid.uuid4().hex[:12]}"
    run(_admin(server, f'CREATE DATABASE "{name}"'))
    url = _with_database(server, name)

    try:
        settings = Settings(database_url=url, service_role=service_role_of(url))
        admin = run(
            demo.prepare_demo(url, settings, learners=learners, clients=clients, data_seed=seed)
        )
        run(_admin(url, SERVICE_LOGIN_SQL))
        yield Database(url, admin)
    finally:
        run(_admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        run(_admin(server, f'DROP ROLE IF EXISTS "{service_role_of(url)}"'))


@pytest.fixture(scope="session")
def database(pg_server: str) -> Iterator[Database]:
    """The messy seed: small enough to compare value by value in every format."""
    with fresh_database(pg_server, SEED_LEARNERS, SEED_CLIENTS, seed=7) as database:
        yield database


@pytest.fixture(scope="session")
def database_url(database: Database) -> str:
    return database.url


@pytest.fixture(scope="session")
def seeded(database: Database) -> str:
    """The admin's profile id in the messy seed."""
    return database.admin_id


@pytest.fixture(scope="session")
def big_database(pg_server: str) -> Iterator[Database]:
    """Enough learners (tens of MB of output) that a stalled client holds the export open."""
    with fresh_database(pg_server, BIG_LEARNERS, SEED_CLIENTS, seed=3) as database:
        yield database


def make_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "jwt_secret": JWT_SECRET,
        "link_secrets": LINK_SECRETS,
        "page_size": 500,
        "first_page_size": 100,
        # The bulk pass, in ranges, for every export longer than its first page (small seeds).
        "bulk_min_rows": 1,
        "bulk_range_min_rows": 1,
        # Tests refuse on purpose, often; test_audit_bounds sets its own.
        "refusals_per_minute": 1_000_000,
    }
    values.update(overrides)
    return Settings(**values)


def service_url(db: Database) -> str:
    """Where the service connects: as the least-privileged login role, granted here for
    databases that other fixtures made (in other clusters too); as the owner only when the
    database is down at the time."""
    try:
        run(_admin(db.url, SERVICE_LOGIN_SQL))
    except (OSError, asyncpg.PostgresError):
        return db.url
    return db.service_url


@dataclass
class LiveServer:
    url: str
    app: FastAPI
    settings: Settings
    token: str

    def client(self, **kwargs: Any) -> httpx.Client:
        # Identity unless a test asks for compression: raw bytes are then the file's bytes.
        headers = {"Authorization": f"Bearer {self.token}", "Accept-Encoding": "identity"}
        return httpx.Client(base_url=self.url, headers=headers, **{"timeout": 60, **kwargs})

    def export(self, **params: Any) -> httpx.Response:
        """GET /v1/exports/learners with these query parameters (a list repeats), as the
        service's admin; the body as the file's bytes."""
        with self.client() as client:
            return client.get("/v1/exports/learners", params=params)

    def pool_in_use(self) -> int:
        pool = self.app.state.pool
        return int(pool.get_size() - pool.get_idle_size())


def interruptible() -> None:
    """A child's preexec_fn: SIGINT back to its default, so that Ctrl-C reaches the child as a
    terminal would deliver it even when the test run started as a background job (whose shell
    leaves SIGINT ignored, and Python then installs no KeyboardInterrupt handler)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def start_server(database: Database) -> Iterator[Callable[..., LiveServer]]:
    """Start the service in a real uvicorn server (in a thread) with the given settings."""
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(db: Database = database, **overrides: Any) -> LiveServer:
        settings = make_settings(service_url(db), **overrides)
        app = create_app(settings)
        port = _free_port()
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        servers.append((server, thread))
        token = issue_token(JWT_SECRET, db.admin_id)
        return LiveServer(f"http://127.0.0.1:{port}", app, settings, token)

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=15)


@pytest.fixture(scope="session")
def live(start_server: Callable[..., LiveServer]) -> LiveServer:
    """The service with small pages (500 rows, the first 100), so exports span many pages."""
    return start_server()


def query(url: str, statement: str, *args: Any) -> list[asyncpg.Record]:
    """Run one statement on a fresh connection (outside the service) and return its rows."""

    async def go() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(url, server_settings={"application_name": "tests"})
        try:
            await conn.set_type_codec(
                "uuid", schema="pg_catalog", encoder=str, decoder=str, format="text"
            )
            return list(await conn.fetch(statement, *args))
        finally:
            await conn.close()

    result: list[asyncpg.Record] = run(go())
    return result


@contextlib.contextmanager
def client_of(
    url: str, name: str, column: str, values: Sequence[Any], value_sql: str = "$3"
) -> Iterator[str]:
    """A client of its own (its id) whose learners, `<name> 00`, `<name> 01`..., hold `values`
    in `column` (`value_sql` reads the value, $3); removed with its learners afterwards."""
    client = str(uuid.uuid4())
    query(url, "INSERT INTO public.clients (id, name) VALUES ($1, $2)", client, name)
    for n, value in enumerate(values):
        query(
            url,
            f"INSERT INTO public.learners (client_id, full_name, {column})"
            f" VALUES ($1, $2, {value_sql})",
            client,
            f"{name} {n:02}",
            value,
        )
    try:
        yield client
    finally:
        query(url, "DELETE FROM public.learners WHERE client_id = $1", client)
        query(url, "DELETE FROM public.clients WHERE id = $1", client)


@pytest.fixture
def sql(database_url: str) -> Callable[..., list[asyncpg.Record]]:
    """query() on the messy seed's database."""
    return functools.partial(query, database_url)


@dataclass
class ServerProcess:
    """The service as a real `learner-export serve` process, for signals, RSS and exit codes."""

    url: str
    process: subprocess.Popen[str]
    token: str
    log: Any

    def logs(self) -> str:
        """What the server wrote to stderr (to a file: a pipe nobody reads would block it)."""
        self.log.seek(0)
        return str(self.log.read())

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss_kb(self, field: str = "VmRSS") -> int:
        for line in open(f"/proc/{self.pid}/status"):  # noqa: SIM115
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise RuntimeError(f"no {field}")

    def client(self, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}", "Accept-Encoding": "identity"}
        return httpx.Client(base_url=self.url, headers=headers, **{"timeout": 60, **kwargs})

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> tuple[int, str]:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        code = self.process.wait(timeout=timeout)
        return code, self.logs()


@contextlib.contextmanager
def server_process(database: Database, **env: str) -> Iterator[ServerProcess]:
    port = _free_port()
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
            text=True,
        )
        server = ServerProcess(
            f"http://127.0.0.1:{port}", process, issue_token(JWT_SECRET, database.admin_id), log
        )
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(server.url + "/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the service did not start:\n" + server.logs())
                time.sleep(0.05)
            yield server
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)


async def snapshot_pages(
    conn: asyncpg.Connection, url: str, settings: Settings, caller: str, **params: Any
) -> tuple[SnapshotPages, ExportParams]:
    """An export's pages read straight from the database (no HTTP), with helpers from `url`;
    `params` as query parameters (lists repeat)."""
    contract = await load_contract(conn)
    pairs: list[tuple[str, str]] = []
    for name, value in params.items():
        for item in value if isinstance(value, list | tuple) else [value]:
            pairs.append((name, str(item).lower() if isinstance(item, bool) else str(item)))
    parsed = parse_export_params(pairs, contract, time_zones=frozenset({"UTC"}))
    spec = FORMATS[parsed.format].select(parsed.columns, parsed.render_options(settings))
    pages = SnapshotPages(
        conn,
        parsed,
        settings,
        caller,
        spec,
        helpers=DirectConnections(settings, url),
    )
    return pages, parsed


async def export_bytes(
    url: str,
    caller: str,
    *,
    page_size: int = 300,
    first_page_size: int = 100,
    sheet_rows: int = 1_048_576,
    bulk_pass: bool = True,
    render: str = "service",
    **params: Any,
) -> tuple[bytes, int]:
    """A whole export as the service writes it, without HTTP; and the connections it used."""
    settings = make_settings(
        url,
        page_size=page_size,
        first_page_size=first_page_size,
        xlsx_sheet_rows=sheet_rows,
        bulk_pass=bulk_pass,
        render=render,
    )
    conn = await db.connect(settings, url)
    pages, parsed = await snapshot_pages(conn, url, settings, caller, **params)
    framer = FORMATS[parsed.format].framer(parsed.columns, parsed.render_options(settings))
    try:
        await pages.open()
        parts = [framer.begin()]
        async for page in pages.pages():
            parts.append(bytes(framer.page(page.data)))
        parts.append(framer.end())
        return b"".join(parts), pages.connections
    finally:
        framer.close()
        await pages.close()
        await conn.close()


def export_backends(url: str) -> list[dict[str, Any]]:
    rows = query(
        url,
        "SELECT pid, state, wait_event, xact_start FROM pg_stat_activity"
        " WHERE application_name = 'learner-export' AND xact_start IS NOT NULL",
    )
    return sorted((dict(r) for r in rows), key=lambda r: r["xact_start"])


def joined_backends(url: str, connections: int = 2) -> list[dict[str, Any]]:
    """The export's backends once its helper has joined, the first (which opened it) first."""
    assert wait_for(lambda: len(export_backends(url)) == connections), export_backends(url)
    return export_backends(url)


def sheets(workbook: bytes) -> dict[str, bytes]:
    """The sheet XML of each worksheet of an XLSX file."""
    with zipfile.ZipFile(io.BytesIO(workbook)) as z:
        return {n: z.read(n) for n in z.namelist() if n.startswith("xl/worksheets/")}
