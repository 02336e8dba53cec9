"""The connection pool, the migrations runner and the demo-data seeder."""

from __future__ import annotations

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


def migration_files(sql_dir: Path) -> list[Path]:
    return sorted(p for p in sql_dir.glob("[0-9]*.sql"))


async def migrate(conn: asyncpg.Connection, sql_dir: Path) -> list[str]:
    """Apply the numbered files of sql_dir not yet recorded in schema_migrations, in order.

    Each file runs in its own transaction with its record; an advisory lock keeps two migrating
    processes from racing. Returns the names applied now.
    """
    await conn.execute(
        "CREATE TABLE IF NOT EXISTS public.schema_migrations ("
        " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
    )
    applied: list[str] = []
    await conn.execute("SELECT pg_advisory_lock(hashtext('learner-export migrations'))")
    try:
        done = {r["name"] for r in await conn.fetch("SELECT name FROM public.schema_migrations")}
        for path in migration_files(sql_dir):
            if path.name in done:
                continue
            async with conn.transaction():
                await conn.execute(path.read_text())
                await conn.execute("INSERT INTO public.schema_migrations (name) VALUES ($1)",
                                   path.name)
            applied.append(path.name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock(hashtext('learner-export migrations'))")
    return applied


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
        await conn.execute((sql_dir / "seed" / "demo_data.sql").read_text())
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
    """A database ready to export: migrated, seeded, vacuumed, with an admin profile (its id)."""
    conn = await connect(settings, dsn)
    try:
        await migrate(conn, settings.sql_dir)
        await seed(conn, settings.sql_dir, learners=learners, clients=clients, seed=data_seed)
        await vacuum(conn)
        return str(await ensure_profile(conn, "Admin"))
    finally:
        await conn.close()
