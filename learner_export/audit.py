"""The audit trail: one learner_export.export_audit row per export attempt, written on
connections of the primary's pool (the export's own snapshot is read-only)."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import asyncpg
import orjson

from learner_export.errors import (
    DATABASE_ERRORS,
    database_error,
)
from learner_export.keys import key_of

log = logging.getLogger("learner_export.audit")

# What one row may hold, so that a caller cannot grow the table by sending more (docs/audit.md).
MAX_CLIENT_IDS_STORED = 20
MAX_FILTERS_BYTES = 2048
MAX_DETAIL_CHARS = 512
MAX_QUERY_PAIRS_STORED = 20
_RECORD_ERRORS: tuple[type[BaseException], ...] = (TimeoutError, *DATABASE_ERRORS)


class Outcome(StrEnum):
    """How an export ended; the SQL CHECK on export_audit.outcome holds the same values
    (migrations 001 and 003)."""

    STARTED = "started"
    COMPLETED = "completed"
    CLIENT_DISCONNECTED = "client_disconnected"
    FAILED = "failed"
    DENIED = "denied"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    HEAD = "head"  # answered with headers only


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
    # jsonb refuses the escaped NUL that JSON allows.
    text = text.replace(b"\\u0000", b"\\ufffd")
    if len(text) > MAX_FILTERS_BYTES:
        text = orjson.dumps({"truncated": True, "bytes": len(text)})
    return text.decode()


def query_filters(query: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """A refused request's query as given (it did not validate), shortened, for its audit row."""
    return {
        "query": [
            [_no_nul(name[:64]), _no_nul(value[:100])]
            for name, value in query[:MAX_QUERY_PAIRS_STORED]
        ],
        "parameters": len(query),
    }


def _capped_detail(detail: str | None) -> str | None:
    return None if detail is None else _no_nul(detail[:MAX_DETAIL_CHARS])


@dataclass
class Repeated:
    """Events of one caller, kind and outcome past the minute's allowance: one row, counted."""

    caller: str
    kind: str
    outcome: Outcome
    count: int
    first_at: datetime
    last_at: datetime
    request_id: str
    via_link: bool
    fmt: str | None
    filters: dict[str, Any]
    detail: str | None
    window: str  # the allowance it was past: the caller's, or theirs for a full service


class AuditAllowance:
    """How many rows of their own a caller's refusals, HEAD and limit=0 requests get a minute.

    The first `per_minute` such events of a caller in a window of a minute are recorded one
    row each; the rest are counted, never refused, and recorded when the window ends as one row
    per kind and outcome with `repeats` = how many (the last one's details as a sample). Nobody
    is barred by it: it bounds the table, not the caller.
    """

    WINDOW_SECONDS = 60.0
    MAX_CALLERS = 10_000  # windows held in memory; past that the oldest end early

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._per_minute = per_minute
        self.clock = clock
        self._windows: dict[str, tuple[float, int]] = {}
        self._repeated: dict[tuple[str, str, Outcome], Repeated] = {}

    def admit(self, caller: str) -> bool:
        """Whether this event of the caller gets a row of its own (and count it)."""
        now = self.clock()
        opened, used = self._windows.get(caller, (now, 0))
        if now - opened >= self.WINDOW_SECONDS:
            opened, used = now, 0
        elif caller not in self._windows and len(self._windows) >= self.MAX_CALLERS:
            oldest = min(self._windows, key=lambda c: self._windows[c][0])
            del self._windows[oldest]
        self._windows[caller] = (opened, used + 1)
        return used < self._per_minute

    def count(
        self,
        *,
        caller: str,
        kind: str,
        outcome: Outcome,
        request_id: str,
        via_link: bool,
        fmt: str | None,
        filters: dict[str, Any],
        detail: str | None,
        window: str | None = None,
    ) -> None:
        """Add one event that was not admitted to its repeated row; `window` is the allowance
        it was refused by (the caller's own by default)."""
        now = datetime.now(UTC)
        key = (window or caller, kind, outcome)
        held = self._repeated.get(key)
        if held is None:
            self._repeated[key] = Repeated(
                caller,
                kind,
                outcome,
                1,
                now,
                now,
                request_id,
                via_link,
                fmt,
                filters,
                detail,
                window or caller,
            )
            return
        held.count += 1
        held.last_at, held.request_id, held.via_link = now, request_id, via_link
        held.fmt, held.filters, held.detail = fmt, filters, detail

    def due(self, *, everything: bool = False) -> list[Repeated]:
        """Repeated rows whose caller's window has ended (all of them with `everything`)."""
        now = self.clock()
        ended = {
            c for c, (opened, _) in self._windows.items() if now - opened >= self.WINDOW_SECONDS
        }
        taken = [
            r
            for k, r in self._repeated.items()
            if everything or k[0] in ended or k[0] not in self._windows
        ]
        for r in taken:
            del self._repeated[(r.window, r.kind, r.outcome)]
        for caller in ended:
            del self._windows[caller]
        return taken


_REPEATED_WHAT = {
    "refused": "refusals",
    "refused while full": "refusals while every export slot was taken",
    "head": "HEAD requests",
    "limit=0": "limit=0 exports",
}


def _no_nul(text: str) -> str:
    # PostgreSQL's text and jsonb hold no NUL character; a query with one is still recorded.
    return text.replace("\x00", "\ufffd")


@dataclass
class AuditEntry:
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    # False for an event past its caller's allowance: counted into a repeated row at the end.
    recorded: bool = True
    caller: str = ""
    kind: str = ""
    request_id: str = ""
    via_link: bool = False
    fmt: str | None = None
    filters: dict[str, Any] = field(default_factory=dict)


class AuditLog:
    """Rows of the audit trail, written on connections of the primary's pool; the service's role
    may insert rows and complete its own 'started' ones (finish_export), nothing else."""

    def __init__(
        self, pool: asyncpg.Pool, acquire_timeout: float, allowance: AuditAllowance | None = None
    ) -> None:
        self._pool = pool
        self._timeout = acquire_timeout
        self.allowance = allowance

    async def start(
        self,
        *,
        caller: str,
        role: str | None,
        request_id: str,
        fmt: str,
        filters: dict[str, Any],
        via_link: bool,
        repeatable: str | None = None,
    ) -> AuditEntry:
        """Record an export before it starts; an export that cannot be recorded does not run.

        A `repeatable` kind of request (HEAD, limit=0: nothing of a learner leaves) past the
        caller's allowance is not written now but counted into a repeated row when it ends.
        """
        entry = AuditEntry(
            caller=caller,
            kind=repeatable or "",
            request_id=request_id,
            via_link=via_link,
            fmt=fmt,
            filters=filters,
        )
        if repeatable and self.allowance is not None and not self.allowance.admit(caller):
            entry.recorded = False
            return entry
        try:
            await self._execute(
                "INSERT INTO learner_export.export_audit (id, caller_id, caller_role,"
                " request_id, via_link, format, filters, api_key_id, api_key_name) VALUES ($1,"
                " $2, $3, $4, $5, $6, $7::jsonb, $8, $9)",
                entry.id,
                caller,
                role,
                request_id,
                via_link,
                fmt,
                capped_filters(filters),
                *key_of(caller),
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
        """Complete the row (only a row still 'started' can be); False (logged) when that
        failed."""
        if not entry.recorded:
            if self.allowance is not None:
                self.allowance.count(
                    caller=entry.caller,
                    kind=entry.kind,
                    outcome=outcome,
                    request_id=entry.request_id,
                    via_link=entry.via_link,
                    fmt=entry.fmt,
                    filters=entry.filters,
                    detail=detail,
                )
            return True
        try:
            async with self._pool.acquire(timeout=self._timeout) as conn:
                done = await conn.fetchval(
                    "SELECT learner_export.finish_export($1, $2, $3, $4, $5, $6::uuid[], $7)",
                    entry.id,
                    outcome.value,
                    rows,
                    bytes_sent,
                    duration_ms,
                    client_scope,
                    _capped_detail(detail),
                    timeout=self._timeout * 5,
                )
        except _RECORD_ERRORS:
            log.exception("could not complete the audit row", extra={"export_id": entry.id})
            return False
        if not done:
            log.error("the audit row was not 'started'", extra={"export_id": entry.id})
        return bool(done)

    async def refused(
        self,
        *,
        caller: str,
        request_id: str,
        fmt: str | None,
        filters: dict[str, Any],
        via_link: bool,
        detail: str,
        outcome: Outcome = Outcome.DENIED,
        allowance_key: str | None = None,
    ) -> bool:
        """Record a refusal that never became an export (a 400, a 403, a 429, a refused link);
        past the allowance (of `allowance_key`, by default the caller's) it is counted into a
        repeated row instead. False (logged) when recording failed: the caller is told of the
        refusal either way."""
        key = allowance_key or caller
        if self.allowance is not None and not self.allowance.admit(key):
            self.allowance.count(
                caller=caller,
                kind="refused" if key == caller else "refused while full",
                window=key,
                outcome=outcome,
                request_id=request_id,
                via_link=via_link,
                fmt=fmt,
                filters=filters,
                detail=detail,
            )
            return True
        return await self._insert_ended(
            caller=caller,
            request_id=request_id,
            via_link=via_link,
            fmt=fmt,
            filters=filters,
            outcome=outcome,
            detail=detail,
        )

    async def flush(self, *, everything: bool = False) -> int:
        """Write the repeated rows whose minute has ended (all with `everything`, at shutdown);
        how many were written."""
        if self.allowance is None:
            return 0
        written = 0
        for r in self.allowance.due(everything=everything):
            span = f"{r.first_at:%H:%M:%S}-{r.last_at:%H:%M:%S} UTC"
            what = _REPEATED_WHAT.get(r.kind, r.kind)
            ok = await self._insert_ended(
                caller=r.caller,
                request_id=r.request_id,
                via_link=r.via_link,
                fmt=r.fmt,
                filters=r.filters,
                outcome=r.outcome,
                detail=f"{r.count} more {what} in {span}; the last: {r.detail or r.outcome}",
                repeats=r.count,
                started_at=r.first_at,
            )
            written += ok
        return written

    async def _insert_ended(
        self,
        *,
        caller: str,
        request_id: str,
        via_link: bool,
        fmt: str | None,
        filters: dict[str, Any],
        outcome: Outcome,
        detail: str,
        repeats: int = 1,
        started_at: datetime | None = None,
    ) -> bool:
        try:
            await self._execute(
                "INSERT INTO learner_export.export_audit (id, caller_id, request_id, via_link,"
                " format, filters, outcome, detail, ended_at, duration_ms, repeats, started_at,"
                " api_key_id, api_key_name) VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8, now(),"
                " 0, $9, coalesce($10, now()), $11, $12)",
                str(uuid.uuid4()),
                caller,
                request_id,
                via_link,
                None if fmt is None else _no_nul(fmt[:16]),
                capped_filters(filters),
                outcome.value,
                _capped_detail(detail),
                repeats,
                started_at,
                *key_of(caller),
            )
        except _RECORD_ERRORS:
            log.exception("could not record a refusal in the audit trail")
            return False
        return True

    async def _execute(self, sql: str, *args: Any) -> None:
        async with self._pool.acquire(timeout=self._timeout) as conn:
            await conn.execute(sql, *args, timeout=self._timeout * 5)
