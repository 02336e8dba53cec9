"""The audit trail: one `export_audit` row per export attempt, on connections of its own."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import orjson

from service.errors import DatabaseUnavailable
from service.params import ExportParams

log = logging.getLogger("learner_export.audit")


def filters_of(params: ExportParams) -> dict[str, Any]:
    """The request's filters and options as they were validated (no learner data)."""
    return {
        "client_id": list(params.client_ids) if params.client_ids is not None else None,
        "created_from": params.created_from.isoformat() if params.created_from else None,
        "created_to": params.created_to.isoformat() if params.created_to else None,
        "active": params.active,
        "columns": [c.name for c in params.columns],
        "limit": params.limit,
        "after": bool(params.after),
    }


@dataclass
class AuditEntry:
    id: str = field(default_factory=lambda: str(uuid.uuid4()))


class AuditLog:
    def __init__(self, pool: asyncpg.Pool, acquire_timeout: float) -> None:
        self._pool = pool
        self._timeout = acquire_timeout

    async def start(self, *, caller: str, role: str, request_id: str, params: ExportParams,
                    via_link: bool) -> AuditEntry:
        """Record an export before it starts; an export that cannot be recorded does not run."""
        entry = AuditEntry()
        try:
            await self._execute(
                "INSERT INTO public.export_audit (id, caller_id, caller_role, request_id,"
                " via_link, format, filters) VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb)",
                entry.id, caller, role, request_id, via_link, params.format,
                orjson.dumps(filters_of(params)).decode())
        except TimeoutError:
            raise DatabaseUnavailable("every database connection is busy; retry shortly") from None
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise DatabaseUnavailable("could not record the export in the audit trail") from exc
        return entry

    async def denied(self, *, caller: str | None, role: str | None, request_id: str,
                     params: ExportParams | None, detail: str, via_link: bool,
                     entry: AuditEntry | None = None) -> None:
        filters = orjson.dumps(filters_of(params)).decode() if params else "{}"
        try:
            if entry is not None:
                await self._execute(
                    "UPDATE public.export_audit SET outcome = 'denied', detail = $2,"
                    " ended_at = now(), duration_ms = 0 WHERE id = $1", entry.id, detail)
            else:
                await self._execute(
                    "INSERT INTO public.export_audit (id, caller_id, caller_role, request_id,"
                    " via_link, format, filters, outcome, detail, ended_at, duration_ms)"
                    " VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, 'denied', $8, now(), 0)",
                    str(uuid.uuid4()), caller, role, request_id, via_link,
                    params.format if params else None, filters, detail)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            log.exception("could not record a denied export")

    async def finish(self, entry: AuditEntry, *, outcome: str, rows: int, bytes_sent: int,
                     duration_ms: int, client_scope: list[str] | None,
                     detail: str | None = None) -> None:
        try:
            await self._execute(
                "UPDATE public.export_audit SET outcome = $2, rows_sent = $3, bytes_sent = $4,"
                " duration_ms = $5, client_scope = $6::uuid[], detail = $7, ended_at = now()"
                " WHERE id = $1",
                entry.id, outcome, rows, bytes_sent, duration_ms, client_scope, detail)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            log.exception("could not complete the audit row", extra={"export_id": entry.id})

    async def _execute(self, sql: str, *args: Any) -> None:
        async with self._pool.acquire(timeout=self._timeout) as conn:
            await conn.execute(sql, *args, timeout=self._timeout * 5)
