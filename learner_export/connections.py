"""Where an export's connections come from, and where they go back: the service's pools, or
(the CLI, which has no pool) connections of its own."""

from __future__ import annotations

import contextlib

import asyncpg

from learner_export import db
from learner_export.config import Settings
from learner_export.errors import (
    CONNECTION_ERRORS,
    DATABASE_ERRORS,
    ExportError,
    database_error,
)

# A helper is worth having only if it comes at once; the export does not wait for it.
POOL_ACQUIRE_SECONDS = 0.5


def _unavailable(exc: BaseException, dsn: str | None = None) -> ExportError:
    error = database_error(exc, "opening the export", dsn=dsn)
    assert error is not None  # every connection failure is classified
    return error


class PoolConnections:
    """From the service's pool. Helpers only while the pool has some to spare: a busy service
    already keeps every core working, and its exports need the connections more."""

    def __init__(self, pool: asyncpg.Pool, acquire_timeout: float, reserve: int = 0) -> None:
        self._pool = pool
        self._timeout = acquire_timeout
        # Left free for the audit trail, role lookups and /readyz (EXPORT_RESERVED_CONNECTIONS).
        self._reserve = reserve

    async def main(self) -> asyncpg.Connection:
        try:
            conn: asyncpg.Connection = await self._pool.acquire(timeout=self._timeout)
        except CONNECTION_ERRORS as exc:
            raise _unavailable(exc) from exc
        return conn

    async def acquire(self) -> asyncpg.Connection | None:
        pool = self._pool
        free = pool.get_idle_size() + pool.get_max_size() - pool.get_size()
        if free <= self._reserve:
            return None
        try:
            conn: asyncpg.Connection = await pool.acquire(timeout=POOL_ACQUIRE_SECONDS)
        except CONNECTION_ERRORS:
            return None
        return conn

    async def release(self, conn: asyncpg.Connection) -> None:
        # A connection lost mid-stream may already be gone from the pool's point of view.
        with contextlib.suppress(asyncpg.InterfaceError, OSError):
            await self._pool.release(conn)


class DirectConnections:
    """Connections of their own, closed when the export ends."""

    def __init__(self, settings: Settings, dsn: str) -> None:
        self._settings, self._dsn = settings, dsn

    async def main(self) -> asyncpg.Connection:
        try:
            return await db.connect(self._settings, self._dsn)
        except CONNECTION_ERRORS as exc:
            raise _unavailable(exc, self._dsn) from exc

    async def acquire(self) -> asyncpg.Connection | None:
        try:
            return await db.connect(self._settings, self._dsn)
        except DATABASE_ERRORS:
            return None

    async def release(self, conn: asyncpg.Connection) -> None:
        try:
            await conn.close(timeout=5)
        except Exception:
            conn.terminate()
