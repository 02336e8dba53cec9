"""Connections to the database: the service's pool and single connections, with the codecs
every export relies on."""

from __future__ import annotations

import asyncpg

from learner_export.config import Settings


async def _init_connection(conn: asyncpg.Connection) -> None:
    # UUIDs as text: every encoder writes them as text, and str is cheaper to build than UUID.
    await conn.set_type_codec("uuid", schema="pg_catalog", encoder=str, decoder=str, format="text")


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
