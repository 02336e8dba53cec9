"""The sample platform's tables and deterministic demo learners, for the demo, the tests and the
benchmarks (never part of `db migrate`: a real platform has tables of its own)."""

from __future__ import annotations

import uuid
from pathlib import Path

import asyncpg

from learner_export import sql
from learner_export.config import Settings
from learner_export.db.migrate import migrate
from learner_export.db.pool import connect


async def create_sample_schema(conn: asyncpg.Connection) -> None:
    """The sample platform tables (sql/sample/schema.sql)."""
    await conn.execute(sql.read(sql.SAMPLE_SCHEMA))


async def seed(
    conn: asyncpg.Connection, *, learners: int, clients: int, seed: int, replace: bool = False
) -> None:
    """Generate deterministic demo learners inside PostgreSQL (sql/sample/demo_data.sql)."""
    if learners < 0 or clients < 1:
        raise ValueError("learners must be >= 0 and clients >= 1")
    async with conn.transaction():
        if replace:
            await conn.execute(
                "TRUNCATE public.learner_module_progress, public.learners, public.clients"
            )
        elif await conn.fetchval("SELECT EXISTS (SELECT 1 FROM public.learners)"):
            raise RuntimeError("learners already exist; seed again with replace to start over")
        await conn.execute(sql.read(sql.DEMO_DATA))
        # The generated rows satisfy their foreign keys by construction; skipping the per-row
        # checks halves the time of a 1M-learner seed. Only a superuser may, so it is optional.
        is_superuser = await conn.fetchval(
            "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"
        )
        if is_superuser:
            await conn.execute("SET LOCAL session_replication_role = replica")
        await conn.execute("SET LOCAL work_mem = '256MB'")
        await conn.execute(
            "SELECT pg_temp.learner_export_seed($1, $2, $3)", learners, clients, seed
        )
    await conn.execute("ANALYZE public.clients, public.learners, public.learner_module_progress")


async def vacuum(conn: asyncpg.Connection) -> None:
    """Set the visibility map, so the progress aggregate can use index-only scans."""
    await conn.execute("VACUUM (ANALYZE) public.learners, public.learner_module_progress")


async def ensure_profile(
    conn: asyncpg.Connection, role: str, profile_id: uuid.UUID | None = None
) -> uuid.UUID:
    profile_id = profile_id or uuid.uuid4()
    await conn.execute(
        "INSERT INTO public.profiles (id, role) VALUES ($1, $2)"
        " ON CONFLICT (id) DO UPDATE SET role = EXCLUDED.role",
        str(profile_id),
        role,
    )
    return profile_id


async def prepare_demo(
    dsn: str, settings: Settings, *, learners: int, clients: int, data_seed: int
) -> str:
    """A database ready to export: the sample schema, the service's schema with the sample
    adapter, demo learners, vacuumed, and an admin profile (its id)."""
    conn = await connect(settings, dsn)
    try:
        await create_sample_schema(conn)
        await migrate(conn, sample_adapter(), service_role=settings.service_role)
        await seed(conn, learners=learners, clients=clients, seed=data_seed)
        await vacuum(conn)
        return str(await ensure_profile(conn, "Admin"))
    finally:
        await conn.close()


def sample_adapter() -> Path:
    """The sample adapter as a file (package data of an installed wheel is a file too)."""
    return Path(str(sql.SAMPLE_ADAPTER))
