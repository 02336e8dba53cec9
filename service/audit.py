"""The audit trail: one learner_export.export_audit row per export attempt, written on
connections of the primary's pool (the export's own snapshot is read-only)."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import asyncpg
import orjson

from service.errors import DATABASE_ERRORS, DatabaseUnavailable

log = logging.getLogger("learner_export.audit")


class Outcome(StrEnum):
    """How an export ended; the SQL CHECK on export_audit.outcome holds the same values."""

    STARTED = "started"
    COMPLETED = "completed"
    CLIENT_DISCONNECTED = "client_disconnected"
    FAILED = "failed"
    DENIED = "denied"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"


@dataclass
class AuditEntry:
    id: str = field(default_factory=lambda: str(uuid.uuid4()))


class AuditLog:
    def __init__(self, pool: asyncpg.Pool, acquire_timeout: float) -> None:
        self._pool = pool
        self._timeout = acquire_timeout

    async def start(self, *, caller: str, role: str | None, request_id: str, fmt: str,
                    filters: dict[str, Any], via_link: bool) -> AuditEntry:
        """Record an export before it starts; an export that cannot be recorded does not run."""
        entry = AuditEntry()
        try:
            await self._execute(
                "INSERT INTO learner_export.export_audit (id, caller_id, caller_role,"
                " request_id, via_link, format, filters) VALUES ($1, $2, $3, $4, $5, $6,"
                " $7::jsonb)",
                entry.id, caller, role, request_id, via_link, fmt, orjson.dumps(filters).decode())
        except TimeoutError:
            raise DatabaseUnavailable("every database connection is busy; retry shortly") from None
        except DATABASE_ERRORS as exc:
            raise DatabaseUnavailable("could not record the export in the audit trail") from exc
        return entry

    async def finish(self, entry: AuditEntry, *, outcome: Outcome, rows: int, bytes_sent: int,
                     duration_ms: int, client_scope: list[str] | None,
                     detail: str | None = None) -> bool:
        """Complete the row; False (logged) when that failed."""
        try:
            await self._execute(
                "UPDATE learner_export.export_audit SET outcome = $2, rows_sent = $3,"
                " bytes_sent = $4, duration_ms = $5, client_scope = $6::uuid[], detail = $7,"
                " ended_at = now() WHERE id = $1",
                entry.id, outcome.value, rows, bytes_sent, duration_ms, client_scope, detail)
        except DATABASE_ERRORS:
            log.exception("could not complete the audit row", extra={"export_id": entry.id})
            return False
        return True

    async def _execute(self, sql: str, *args: Any) -> None:
        async with self._pool.acquire(timeout=self._timeout) as conn:
            await conn.execute(sql, *args, timeout=self._timeout * 5)
