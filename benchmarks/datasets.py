"""The benchmark's databases: one per schema and size, seeded once and reused while unchanged.

- sample: the sample schema and adapter (learner_export.demo.seed), `learner_export_bench_<rows>`;
- heavy: benchmarks/schemas/heavy.sql and benchmarks/adapters/heavy.sql,
  `learner_export_bench_heavy_<rows>`;
- hostile: the sample with hostile learners mixed in (benchmarks/schemas/hostile.sql),
  `learner_export_bench_hostile_<rows>` (rows: the ordinary learners; 2,021 more are hostile).

Each database carries a comment with a fingerprint of the SQL that made it (the service's
shipped SQL, the benchmark's schema and adapter) and the seed parameters, written only after
seeding finished, then the digest of the reference query that was checked against the adapter.
A database is reused when its fingerprint and its number of learners match; otherwise it is
dropped and made again. Only databases named `learner_export_bench_...` are created or dropped.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from benchmarks import cpu
from benchmarks.queries import HEAVY, SAMPLE, Reference
from learner_export import db
from learner_export.config import Settings
from learner_export.db.migrate import migrate
from learner_export.demo import seed as demo
from learner_export.demo.embedded import EmbeddedPostgres

DB_PREFIX = "learner_export_bench"
CLIENTS = 25
HEAVY_ORGANISATIONS = 40
SEED = 1
COMMENT_PREFIX = "learner-export benchmark dataset "
VERIFIED = " verified "
HERE = Path(__file__).resolve().parent
HEAVY_SCHEMA = HERE / "schemas" / "heavy.sql"
HEAVY_ADAPTER = HERE / "adapters" / "heavy.sql"
HOSTILE_LEARNERS = HERE / "schemas" / "hostile.sql"
HOSTILE_EXTRA = 2_021
HEAVY_ADMIN = "00000000-0000-4000-8000-00000000ad01"
SCHEMAS = ("sample", "heavy")


@dataclass(frozen=True, slots=True)
class Kind:
    """What a dataset is made of: its schema's reference, how to count its learners, who
    exports it, and which files it is made from (besides the service's own SQL)."""

    name: str
    reference: Reference
    count_sql: str
    admin_sql: str
    sources: tuple[Path, ...]
    extra_rows: int = 0


SAMPLE_KIND = Kind(
    "sample",
    SAMPLE,
    "SELECT count(*) FROM public.learners",
    "SELECT id FROM public.profiles WHERE role = 'Admin' ORDER BY created_at, id LIMIT 1",
    (),
)
HEAVY_KIND = Kind(
    "heavy",
    HEAVY,
    "SELECT count(*) FROM public.profiles WHERE role = 'learner'",
    "SELECT id FROM public.profiles WHERE role = 'super_admin' ORDER BY created_at, id LIMIT 1",
    (HEAVY_SCHEMA, HEAVY_ADAPTER),
)
HOSTILE_KIND = Kind(
    "hostile",
    SAMPLE,
    SAMPLE_KIND.count_sql,
    SAMPLE_KIND.admin_sql,
    (HOSTILE_LEARNERS,),
    extra_rows=HOSTILE_EXTRA,
)
KINDS = {k.name: k for k in (SAMPLE_KIND, HEAVY_KIND, HOSTILE_KIND)}


@dataclass(frozen=True, slots=True)
class Dataset:
    kind: Kind
    rows: int
    name: str
    url: str
    admin_id: str
    reused: bool
    prepare_seconds: float
    # The PostgreSQL server's postmaster, when its processes are visible from here (CPU).
    postmaster: int | None = None
    verify_seconds: float | None = None

    @property
    def reference(self) -> Reference:
        return self.kind.reference


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


def prepare_timeout(rows: int, kind: str = "sample") -> float:
    """Seeding took ~11K sample learners a second here (heavy: ~3.5K) on a loaded machine;
    this allows for one ~2 times slower still, and the check of the reference."""
    per_second = 1_500 if kind == "heavy" else 5_000
    return 180.0 + rows / per_second


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


def redact(url: str) -> str:
    """The URL without its password, for reports."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def database_name(rows: int, kind: str = "sample") -> str:
    return f"{DB_PREFIX}_{rows}" if kind == "sample" else f"{DB_PREFIX}_{kind}_{rows}"


def _shipped_sql(root: Traversable) -> Iterator[Traversable]:
    """Every .sql file the service ships (migrations, lockdown, adapters, the sample)."""
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if entry.is_dir():
            yield from _shipped_sql(entry)
        elif entry.name.endswith(".sql"):
            yield entry


def fingerprint(kind: Kind, rows: int) -> str:
    digest = hashlib.sha256(
        f"kind={kind.name} rows={rows} clients={CLIENTS} seed={SEED}\n".encode()
    )
    for resource in _shipped_sql(files("learner_export") / "sql"):
        digest.update(resource.name.encode() + b"\0" + resource.read_bytes() + b"\0")
    for path in kind.sources:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return COMMENT_PREFIX + digest.hexdigest()[:32]


def reference_digest(reference: Reference) -> str:
    return hashlib.sha256(reference.sql.encode()).hexdigest()[:16]


async def _holds(url: str, kind: Kind, rows: int) -> str | None:
    """The admin profile id when the database holds exactly this dataset, else None."""
    conn = await asyncpg.connect(url)
    try:
        if await conn.fetchval(kind.count_sql) != rows + kind.extra_rows:
            return None
        admin = await conn.fetchval(kind.admin_sql)
        return None if admin is None else str(admin)
    finally:
        await conn.close()


def _service_role(url: str) -> str:
    """A service role of the dataset's own: a role is the server's, and `db migrate` refuses
    one that another database already holds (the datasets share a server)."""
    return ("learner_export_service_" + url.rsplit("/", 1)[1].split("?")[0])[:63]


async def _seed_heavy(url: str, rows: int) -> str:
    conn = await db.connect(Settings(), url)
    try:
        async with conn.transaction():
            await conn.execute(HEAVY_SCHEMA.read_text())
            # The generated rows satisfy their foreign keys by construction (as the sample's
            # seed, only a superuser may skip the checks).
            if await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user"):
                await conn.execute("SET LOCAL session_replication_role = replica")
            await conn.execute("SET LOCAL work_mem = '256MB'")
            await conn.execute(
                "SELECT pg_temp.heavy_seed($1, $2, $3)", rows, HEAVY_ORGANISATIONS, SEED
            )
            await conn.execute(
                "INSERT INTO auth.users (id, email, created_at)"
                " VALUES ($1, 'admin@example.org', '2023-12-01 00:00:00+00')",
                HEAVY_ADMIN,
            )
            await conn.execute(
                "INSERT INTO public.profiles (id, role, first_name, last_name, locale, time_zone,"
                " status, is_active, marketing_opt_in, created_at, updated_at)"
                " VALUES ($1, 'super_admin', 'Ada', 'Admin', 'en-AU', 'UTC', 'active', true,"
                " false, '2023-12-01 00:00:00+00', '2023-12-01 00:00:00+00')",
                HEAVY_ADMIN,
            )
        await migrate(conn, HEAVY_ADAPTER, service_role=_service_role(url))
        await conn.execute("VACUUM (ANALYZE)")
    finally:
        await conn.close()
    return HEAVY_ADMIN


async def _seed(url: str, kind: Kind, rows: int) -> str:
    if kind.name == "heavy":
        return await _seed_heavy(url, rows)
    admin = await demo.prepare_demo(
        url,
        Settings(service_role=_service_role(url)),
        learners=rows,
        clients=CLIENTS,
        data_seed=SEED,
    )
    if kind.name == "hostile":
        conn = await asyncpg.connect(url)
        try:
            async with conn.transaction():
                await conn.execute(HOSTILE_LEARNERS.read_text())
                await conn.execute(
                    "SELECT pg_temp.hostile_learners($1, $2, $3)", rows, CLIENTS, SEED
                )
            await conn.execute("VACUUM (ANALYZE) public.learners")
        finally:
            await conn.close()
    return admin


# The reference and the adapter are the same text at every size and the data comes from one
# generator: the first VERIFY_ROWS rows in keyset order settle whether they agree, in ~1 minute
# where the whole of a 1M-row heavy dataset took more than 5 on a loaded machine.
VERIFY_ROWS = 100_000
ROWS_DIGEST_SQL = """
SELECT count(*), sum(hashtextextended(x::text, 0)::numeric)::text FROM ({} LIMIT {}) AS x
"""
PAGE_ALL_SQL = "SELECT * FROM learner_export.get_learner_export_batch($1::uuid, p_page_size => $2)"


async def verify(url: str, reference: Reference, admin_id: str, rows: int) -> None:
    """Raise unless the reference query gives the adapter's rows: the first VERIFY_ROWS rows
    (all of them in a smaller dataset) in keyset order, as one page of the page function, have
    the same count and the same multiset of rows, column by column as text."""
    limit = min(rows, VERIFY_ROWS)
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            await conn.execute("SET LOCAL statement_timeout = 0")
            ref = await conn.fetchrow(ROWS_DIGEST_SQL.format(reference.sql, limit))
            page = await conn.fetchrow(ROWS_DIGEST_SQL.format(PAGE_ALL_SQL, limit), admin_id, limit)
    finally:
        await conn.close()
    if tuple(ref) != tuple(page) or ref[0] != limit:
        raise RuntimeError(
            f"the {reference.schema} reference query does not give the adapter's rows:"
            f" {ref[0]:,} rows (digest {ref[1]}) against {page[0]:,} (digest {page[1]})"
        )


async def _postmaster(url: str) -> int | None:
    conn = await asyncpg.connect(url)
    try:
        return cpu.postmaster_of(int(await conn.fetchval("SELECT pg_backend_pid()")))
    finally:
        await conn.close()


async def prepare(server_url: str, rows: int, kind: Kind = SAMPLE_KIND) -> Dataset:
    """The dataset: reused when present and unchanged, else seeded anew; its reference query
    checked against its adapter once for each version of the reference."""
    name = database_name(rows, kind.name)
    url = with_database(server_url, name)
    want = fingerprint(kind, rows)
    verified = want + VERIFIED + reference_digest(kind.reference)
    started = time.perf_counter()
    admin = await asyncpg.connect(server_url)
    try:
        found = await admin.fetchrow(
            "SELECT shobj_description(oid, 'pg_database') AS comment"
            " FROM pg_catalog.pg_database WHERE datname = $1",
            name,
        )
        comment = None if found is None else found["comment"]
        admin_id = None
        if comment is not None and comment.startswith(want):
            admin_id = await _holds(url, kind, rows)
        reused = admin_id is not None
        if admin_id is None:
            if found is not None:
                print(f"{name}: out of date, dropping it", file=sys.stderr, flush=True)
                await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            print(f"{name}: seeding {rows:,} learners...", file=sys.stderr, flush=True)
            await admin.execute(f'CREATE DATABASE "{name}"')
            admin_id = await _seed(url, kind, rows)
            # Written last: a seed that was interrupted leaves no fingerprint, so it is not reused.
            await admin.execute(f"COMMENT ON DATABASE \"{name}\" IS '{want}'")
            comment = want
        prepared = time.perf_counter() - started
        verify_seconds = None
        if comment != verified:
            print(f"{name}: checking the reference query against the adapter...", file=sys.stderr)
            checked = time.perf_counter()
            await verify(url, kind.reference, admin_id, rows + kind.extra_rows)
            verify_seconds = time.perf_counter() - checked
            await admin.execute(f"COMMENT ON DATABASE \"{name}\" IS '{verified}'")
    finally:
        await admin.close()
    return Dataset(
        kind,
        rows + kind.extra_rows,
        name,
        url,
        admin_id,
        reused,
        prepared,
        await _postmaster(url),
        verify_seconds,
    )
