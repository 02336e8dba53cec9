"""The connection pool, the migrations runner and the demo-data seeder."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import asyncpg

from service.config import Settings


async def _init_connection(conn: asyncpg.Connection) -> None:
    # UUIDs as text: every encoder writes them as text, and str is cheaper to build than UUID.
    await conn.set_type_codec("uuid", schema="pg_catalog", encoder=str, decoder=str,
                              format="text")


async def create_pool(settings: Settings, dsn: str) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        dsn,
        # No connection at start: the service starts (and reports not ready) without a database.
        min_size=0,
        max_size=settings.pool_max_size,
        statement_cache_size=settings.statement_cache_size,
        init=_init_connection,
        server_settings={"application_name": "learner-export"},
    )


async def connect(settings: Settings, dsn: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(dsn, statement_cache_size=settings.statement_cache_size)
    await _init_connection(conn)
    return conn


SCHEMA = "learner_export"
SAMPLE_ADAPTER = Path("adapters") / "sample.sql"


def migration_files(sql_dir: Path) -> list[Path]:
    return sorted((sql_dir / "migrations").glob("[0-9]*.sql"))


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _checksum(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def migrate(conn: asyncpg.Connection, sql_dir: Path, adapter: Path | None = None
                  ) -> list[str]:
    """Bring the schema learner_export up to date; nothing outside it is created or changed.

    The numbered migrations (tables: append-only) not yet recorded run in order, each in its
    own transaction with its record. The adapter (the contract's functions, written once and
    re-applied whenever its text changes) runs when its checksum differs from the one recorded.
    Then sql/lockdown.sql revokes every grant on the schema and gives the service's role what it
    needs. An advisory lock keeps two migrating processes from racing. Returns what was applied.
    """
    applied: list[str] = []
    await conn.execute("SELECT pg_advisory_lock(hashtext('learner-export migrations'))")
    try:
        await conn.execute(
            f"CREATE SCHEMA IF NOT EXISTS {SCHEMA};"
            f" REVOKE ALL ON SCHEMA {SCHEMA} FROM PUBLIC;"
            f" CREATE TABLE IF NOT EXISTS {SCHEMA}.schema_migrations ("
            " name text PRIMARY KEY, checksum text NOT NULL DEFAULT '',"
            " applied_at timestamptz NOT NULL DEFAULT now())")
        done = {r["name"]: r["checksum"]
                for r in await conn.fetch(f"SELECT name, checksum FROM {SCHEMA}.schema_migrations")}
        for path in migration_files(sql_dir):
            if path.name in done:
                continue
            text = _read(path)
            async with conn.transaction():
                await conn.execute(text)
                await conn.execute(f"INSERT INTO {SCHEMA}.schema_migrations (name, checksum)"
                                   " VALUES ($1, $2)", path.name, _checksum(text))
            applied.append(path.name)
        if adapter is not None:
            text = _read(adapter)
            key = "adapter"
            if done.get(key) != _checksum(text):
                async with conn.transaction():
                    await conn.execute(text)
                    await conn.execute(
                        f"INSERT INTO {SCHEMA}.schema_migrations (name, checksum) VALUES ($1, $2)"
                        " ON CONFLICT (name) DO UPDATE SET checksum = EXCLUDED.checksum,"
                        " applied_at = now()", key, _checksum(text))
                applied.append(f"adapter {adapter.name}")
        await conn.execute(_read(sql_dir / "lockdown.sql"))
    finally:
        await conn.execute("SELECT pg_advisory_unlock(hashtext('learner-export migrations'))")
    return applied


async def create_sample_schema(conn: asyncpg.Connection, sql_dir: Path) -> None:
    """The sample platform tables (sql/sample/schema.sql), for the demo, tests and benchmarks."""
    await conn.execute(_read(sql_dir / "sample" / "schema.sql"))


async def seed(conn: asyncpg.Connection, sql_dir: Path, *, learners: int, clients: int, seed: int,
               replace: bool = False) -> None:
    """Generate deterministic demo learners inside PostgreSQL (see sql/seed/demo_data.sql)."""
    if learners < 0 or clients < 1:
        raise ValueError("learners must be >= 0 and clients >= 1")
    async with conn.transaction():
        if replace:
            await conn.execute(
                "TRUNCATE public.learner_module_progress, public.learners, public.clients")
        elif await conn.fetchval("SELECT EXISTS (SELECT 1 FROM public.learners)"):
            raise RuntimeError("learners already exist; seed again with replace to start over")
        await conn.execute((sql_dir / "sample" / "demo_data.sql").read_text())
        # The generated rows satisfy their foreign keys by construction; skipping the per-row
        # checks halves the time of a 1M-learner seed. Only a superuser may, so it is optional.
        is_superuser = await conn.fetchval(
            "SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        if is_superuser:
            await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute("SET LOCAL work_mem = '256MB'")
        await conn.execute("SELECT pg_temp.learner_export_seed($1, $2, $3)",
                           learners, clients, seed)
    await conn.execute("ANALYZE public.clients, public.learners, public.learner_module_progress")


async def vacuum(conn: asyncpg.Connection) -> None:
    """Set the visibility map, so the progress aggregate can use index-only scans."""
    await conn.execute("VACUUM (ANALYZE) public.learners, public.learner_module_progress")


async def ensure_profile(conn: asyncpg.Connection, role: str, profile_id: uuid.UUID | None = None
                         ) -> uuid.UUID:
    profile_id = profile_id or uuid.uuid4()
    await conn.execute(
        "INSERT INTO public.profiles (id, role) VALUES ($1, $2)"
        " ON CONFLICT (id) DO UPDATE SET role = EXCLUDED.role",
        str(profile_id), role,
    )
    return profile_id


async def prepare_demo(dsn: str, settings: Settings, *, learners: int, clients: int,
                       data_seed: int) -> str:
    """A database ready to export: the sample schema, the service's schema with the sample
    adapter, demo learners, vacuumed, and an admin profile (its id)."""
    conn = await connect(settings, dsn)
    try:
        await create_sample_schema(conn, settings.sql_dir)
        await migrate(conn, settings.sql_dir, settings.sql_dir / SAMPLE_ADAPTER)
        await seed(conn, settings.sql_dir, learners=learners, clients=clients, seed=data_seed)
        await vacuum(conn)
        return str(await ensure_profile(conn, "Admin"))
    finally:
        await conn.close()
