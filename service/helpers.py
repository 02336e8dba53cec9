"""Where an export's helper connections come from (see LearnerExport), and where they go back."""

from __future__ import annotations

import contextlib

import asyncpg

from service import db
from service.config import Settings

CONNECTION_ERRORS = (OSError, TimeoutError, asyncpg.PostgresConnectionError,
                     asyncpg.InterfaceError, asyncpg.CannotConnectNowError)

# A helper is worth having only if it comes at once; the export does not wait for it.
POOL_ACQUIRE_SECONDS = 0.5


class PoolHelpers:
    """Helper connections from the service's pool, only while it has some to spare: a busy
    service already keeps every core working, and its exports need the connections more."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def acquire(self) -> asyncpg.Connection | None:
        pool = self._pool
        if pool.get_idle_size() == 0 and pool.get_size() >= pool.get_max_size():
            return None
        try:
            conn: asyncpg.Connection = await pool.acquire(timeout=POOL_ACQUIRE_SECONDS)
        except (TimeoutError, *CONNECTION_ERRORS):
            return None
        return conn

    async def release(self, conn: asyncpg.Connection) -> None:
        with contextlib.suppress(asyncpg.InterfaceError, OSError):
            await self._pool.release(conn)


class ConnectHelpers:
    """Helper connections of their own (the CLI has no pool), closed when the export ends."""

    def __init__(self, settings: Settings, dsn: str) -> None:
        self._settings, self._dsn = settings, dsn

    async def acquire(self) -> asyncpg.Connection | None:
        try:
            return await db.connect(self._settings, self._dsn)
        except (*CONNECTION_ERRORS, asyncpg.PostgresError):
            return None

    async def release(self, conn: asyncpg.Connection) -> None:
        try:
            await conn.close(timeout=5)
        except Exception:
            conn.terminate()
