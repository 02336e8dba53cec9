"""The audit trail: one learner_export.export_audit row per export attempt, written on
connections of the primary's pool (the export's own snapshot is read-only)."""

from __future__ import annotations

import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import asyncpg
import orjson

from learner_export.errors import DATABASE_ERRORS, TooManyExports, database_error

log = logging.getLogger("learner_export.audit")

# What one row may hold, so that a caller cannot grow the table by sending more (docs/audit.md).
MAX_CLIENT_IDS_STORED = 20
MAX_FILTERS_BYTES = 2048
MAX_DETAIL_CHARS = 512
MAX_QUERY_PAIRS_STORED = 20
_RECORD_ERRORS: tuple[type[BaseException], ...] = (TimeoutError, *DATABASE_ERRORS)


class Outcome(StrEnum):
    """How an export ended; the SQL CHECK on export_audit.outcome holds the same values."""

    STARTED = "started"
    COMPLETED = "completed"
    CLIENT_DISCONNECTED = "client_disconnected"
    FAILED = "failed"
    DENIED = "denied"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"


def capped_filters(filters: dict[str, Any]) -> str:
    """The filters as JSON of at most MAX_FILTERS_BYTES: a long client_id list keeps its first
    MAX_CLIENT_IDS_STORED ids and its count; anything still larger keeps only its size."""
    capped = dict(filters)
    ids = capped.get("client_id")
    if isinstance(ids, list) and len(ids) > MAX_CLIENT_IDS_STORED:
        capped["client_id"] = ids[:MAX_CLIENT_IDS_STORED]
        capped["client_id_count"] = len(ids)
    try:
        text = orjson.dumps(capped)
    except TypeError:  # e.g. an integer beyond 64 bits: never stored as given
        text = b"{}"
    if len(text) > MAX_FILTERS_BYTES:
        text = orjson.dumps({"truncated": True, "bytes": len(text)})
    return text.decode()


def query_filters(query: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """A refused request's query as given (it did not validate), shortened, for its audit row."""
    return {
        "query": [[name[:64], value[:100]] for name, value in query[:MAX_QUERY_PAIRS_STORED]],
        "parameters": len(query),
    }


def _capped_detail(detail: str | None) -> str | None:
    return None if detail is None else detail[:MAX_DETAIL_CHARS]


class RefusalLimiter:
    """Refusals per caller in the last minute, in this process: past `per_minute` of them, every
    request of that caller is answered 429 until the minute has passed."""

    WINDOW_SECONDS = 60.0
    MAX_CALLERS = 10_000  # the memory it holds stays bounded too

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._per_minute = per_minute
        self._clock = clock
        self._refusals: dict[str, deque[float]] = {}
        self._throttled: dict[str, float] = {}

    def _recent(self, caller: str, now: float) -> deque[float]:
        times = self._refusals.get(caller, deque())
        while times and times[0] <= now - self.WINDOW_SECONDS:
            times.popleft()
        return times

    def check(self, caller: str) -> bool:
        """Raise TooManyExports (429) when the caller is slowed; True the first time in a window
        (that refusal is worth an audit row, the ones after it are not)."""
        now = self._clock()
        times = self._recent(caller, now)
        if len(times) < self._per_minute:
            return False
        retry = max(1, round(times[0] + self.WINDOW_SECONDS - now))
        first = self._throttled.get(caller, -self.WINDOW_SECONDS) <= now - self.WINDOW_SECONDS
        if first:
            self._throttled[caller] = now
        raise TooManyExports(
            f"{self._per_minute} refused requests in a minute; retry in {retry} s",
            retry_after=retry,
        ) from _Throttled(first)

    def note(self, caller: str) -> None:
        """Count one refusal of the caller."""
        now = self._clock()
        if caller not in self._refusals and len(self._refusals) >= self.MAX_CALLERS:
            self._forget(now)
        times = self._recent(caller, now)
        times.append(now)
        while len(times) > self._per_minute:
            times.popleft()
        self._refusals[caller] = times

    def _forget(self, now: float) -> None:
        for caller in [
            c for c, t in self._refusals.items() if not t or t[-1] <= now - self.WINDOW_SECONDS
        ]:
            del self._refusals[caller]
            self._throttled.pop(caller, None)
        if len(self._refusals) >= self.MAX_CALLERS:
            oldest = min(self._refusals, key=lambda c: self._refusals[c][-1])
            del self._refusals[oldest]


class _Throttled(Exception):
    """Carried as the 429's cause: whether it is the caller's first in this window."""

    def __init__(self, first: bool) -> None:
        super().__init__(first)
        self.first = first


def first_throttle(exc: BaseException) -> bool:
    """Whether a RefusalLimiter's 429 is the first of its window (the one to record)."""
    return isinstance(exc.__cause__, _Throttled) and exc.__cause__.first


@dataclass
class AuditEntry:
    id: str = field(default_factory=lambda: str(uuid.uuid4()))


class AuditLog:
    def __init__(self, pool: asyncpg.Pool, acquire_timeout: float) -> None:
        self._pool = pool
        self._timeout = acquire_timeout

    async def start(
        self,
        *,
        caller: str,
        role: str | None,
        request_id: str,
        fmt: str,
        filters: dict[str, Any],
        via_link: bool,
    ) -> AuditEntry:
        """Record an export before it starts; an export that cannot be recorded does not run."""
        entry = AuditEntry()
        try:
            await self._execute(
                "INSERT INTO learner_export.export_audit (id, caller_id, caller_role,"
                " request_id, via_link, format, filters) VALUES ($1, $2, $3, $4, $5, $6,"
                " $7::jsonb)",
                entry.id,
                caller,
                role,
                request_id,
                via_link,
                fmt,
                capped_filters(filters),
            )
        except DATABASE_ERRORS as exc:
            error = database_error(exc, "recording the export in the audit trail")
            if error is None:
                raise
            raise error from exc
        return entry

    async def finish(
        self,
        entry: AuditEntry,
        *,
        outcome: Outcome,
        rows: int,
        bytes_sent: int,
        duration_ms: int,
        client_scope: list[str] | None,
        detail: str | None = None,
    ) -> bool:
        """Complete the row; False (logged) when that failed."""
        try:
            await self._execute(
                "UPDATE learner_export.export_audit SET outcome = $2, rows_sent = $3,"
                " bytes_sent = $4, duration_ms = $5, client_scope = $6::uuid[], detail = $7,"
                " ended_at = now() WHERE id = $1",
                entry.id,
                outcome.value,
                rows,
                bytes_sent,
                duration_ms,
                client_scope,
                _capped_detail(detail),
            )
        except DATABASE_ERRORS:
            log.exception("could not complete the audit row", extra={"export_id": entry.id})
            return False
        return True

    async def refused(
        self,
        *,
        caller: str,
        request_id: str,
        fmt: str | None,
        filters: dict[str, Any],
        via_link: bool,
        detail: str,
    ) -> bool:
        """Record a refusal that never became an export (a 400, a 429, a refused link); False
        (logged) when that failed: the caller is told of the refusal either way."""
        try:
            await self._execute(
                "INSERT INTO learner_export.export_audit (id, caller_id, request_id, via_link,"
                " format, filters, outcome, detail, ended_at, duration_ms) VALUES ($1, $2, $3,"
                " $4, $5, $6::jsonb, $7, $8, now(), 0)",
                str(uuid.uuid4()),
                caller,
                request_id,
                via_link,
                None if fmt is None else fmt[:16],
                capped_filters(filters),
                Outcome.DENIED.value,
                _capped_detail(detail),
            )
        except _RECORD_ERRORS:
            log.exception("could not record a refusal in the audit trail")
            return False
        return True

    async def _execute(self, sql: str, *args: Any) -> None:
        async with self._pool.acquire(timeout=self._timeout) as conn:
            await conn.execute(sql, *args, timeout=self._timeout * 5)
