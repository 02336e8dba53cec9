"""The benchmark's databases: one per dataset size, seeded once and reused while unchanged.

Each database carries a comment with a fingerprint of the migrations, the seed script and the
seed parameters, written only after seeding finished. A database is reused when its fingerprint,
its applied migrations and its number of learners all match; otherwise it is dropped and made
again. Only databases named `learner_export_bench_<rows>` are ever created or dropped.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from learner_export import db, sql
from learner_export.config import Settings
from learner_export.demo import seed as demo
from learner_export.demo.embedded import EmbeddedPostgres

DB_PREFIX = "learner_export_bench"
CLIENTS = 25
SEED = 1
COMMENT_PREFIX = "learner-export benchmark dataset "


@dataclass(frozen=True, slots=True)
class Dataset:
    rows: int
    name: str
    url: str
    admin_id: str
    reused: bool
    prepare_seconds: float


@contextlib.contextmanager
def database_server() -> Iterator[tuple[str, str]]:
    """(server URL, kind): DATABASE_URL's server, or an embedded PostgreSQL for this run."""
    url = os.environ.get("DATABASE_URL")
    if url:
        yield url, "DATABASE_URL"
        return
    # Started from the main thread: the kernel stops it when the thread that started it ends.
    print("starting an embedded PostgreSQL for this run...", file=sys.stderr, flush=True)
    with EmbeddedPostgres() as pg:
        yield pg.url, "embedded"


def prepare_timeout(rows: int) -> float:
    """Seeding runs at ~50K learners a second here; this allows for a machine 4 times slower."""
    return 120.0 + rows / 12_500


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


def redact(url: str) -> str:
    """The URL without its password, for reports."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def database_name(rows: int) -> str:
    return f"{DB_PREFIX}_{rows}"


def fingerprint(settings: Settings, rows: int) -> str:
    digest = hashlib.sha256(f"rows={rows} clients={CLIENTS} seed={SEED}\n".encode())
    scripts = [
        sql.SAMPLE_SCHEMA,
        *sql.migration_files(),
        sql.SAMPLE_ADAPTER,
        sql.LOCKDOWN,
        sql.DEMO_DATA,
    ]
    for resource in scripts:
        digest.update(resource.name.encode() + b"\0" + resource.read_bytes() + b"\0")
    return COMMENT_PREFIX + digest.hexdigest()[:32]


async def _holds(settings: Settings, url: str, rows: int) -> str | None:
    """The admin profile id when the database holds exactly this dataset, else None."""
    conn = await db.connect(settings, url)
    try:
        if not await conn.fetchval(
            f"SELECT to_regclass('{db.SCHEMA}.schema_migrations') IS NOT NULL"
        ):
            return None
        applied = {
            r["name"] for r in await conn.fetch(f"SELECT name FROM {db.SCHEMA}.schema_migrations")
        }
        # The adapter's record is named "adapter"; its text is in the fingerprint.
        if applied - {"adapter"} != {r.name for r in sql.migration_files()}:
            return None
        if await conn.fetchval("SELECT count(*) FROM public.learners") != rows:
            return None
        admin: str | None = await conn.fetchval(
            "SELECT id FROM public.profiles WHERE role = 'Admin' ORDER BY created_at, id LIMIT 1"
        )
        return admin or str(await demo.ensure_profile(conn, "Admin"))
    finally:
        await conn.close()


async def _seed(settings: Settings, url: str, rows: int) -> str:
    return await demo.prepare_demo(url, settings, learners=rows, clients=CLIENTS, data_seed=SEED)


async def prepare(server_url: str, rows: int) -> Dataset:
    """The dataset of `rows` learners: reused when present and unchanged, else seeded anew."""
    settings = Settings()
    name = database_name(rows)
    url = with_database(server_url, name)
    want = fingerprint(settings, rows)
    started = time.perf_counter()
    admin = await asyncpg.connect(server_url)
    try:
        found = await admin.fetchrow(
            "SELECT shobj_description(oid, 'pg_database') AS comment"
            " FROM pg_catalog.pg_database WHERE datname = $1",
            name,
        )
        if found is not None and found["comment"] == want:
            admin_id = await _holds(settings, url, rows)
            if admin_id is not None:
                return Dataset(rows, name, url, admin_id, True, time.perf_counter() - started)
        if found is not None:
            print(f"{name}: out of date, dropping it", file=sys.stderr, flush=True)
            await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        print(f"{name}: seeding {rows:,} learners...", file=sys.stderr, flush=True)
        await admin.execute(f'CREATE DATABASE "{name}"')
        admin_id = await _seed(settings, url, rows)
        # Written last: a seed that was interrupted leaves no fingerprint, so it is not reused.
        await admin.execute(f"COMMENT ON DATABASE \"{name}\" IS '{want}'")
    finally:
        await admin.close()
    return Dataset(rows, name, url, admin_id, False, time.perf_counter() - started)
