"""GET /v1/exports/learners: validate, authorize, open the snapshot, then stream."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import anyio
import asyncpg
from fastapi import APIRouter, Header, Query, Request
from starlette.responses import StreamingResponse
from starlette.types import Message, Receive, Scope, Send

from service.access import Slot
from service.audit import AuditEntry, AuditLog
from service.auth import bearer_token, require_export_role, resolve_caller
from service.columns import COLUMNS
from service.compression import negotiate
from service.config import Settings
from service.copy_select import copy_select
from service.errors import DatabaseUnavailable, ErrorBody, Forbidden
from service.filenames import content_disposition, export_filename
from service.formats import FORMATS, EncodeOptions
from service.helpers import CONNECTION_ERRORS, PoolHelpers
from service.metrics import Metrics
from service.params import ExportParams, parse_export_params
from service.source import LearnerExport
from service.stream import Chunk, encode_stream

log = logging.getLogger("learner_export.exports")
router = APIRouter(tags=["exports"])

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "A parameter is invalid; the body names each problem",
          "model": ErrorBody},
    401: {"description": "Missing, malformed, expired or wrongly signed token",
          "model": ErrorBody},
    403: {"description": "The caller may not export learners, or not these clients",
          "model": ErrorBody},
    429: {"description": "Too many exports running (for the process, or for this caller)",
          "model": ErrorBody},
    503: {"description": "The database is unreachable or busy; retry after Retry-After",
          "model": ErrorBody},
}


class OpenExport:
    """A pooled connection and the export reading from it, released exactly once."""

    def __init__(self, pool: asyncpg.Pool, conn: asyncpg.Connection, export: LearnerExport
                 ) -> None:
        self.pool, self.conn, self.export = pool, conn, export
        self._released = False

    @classmethod
    async def open(cls, pool: asyncpg.Pool, params: ExportParams, settings: Settings,
                   caller: str) -> OpenExport:
        try:
            conn = await pool.acquire(timeout=settings.acquire_timeout_seconds)
        except TimeoutError:
            raise DatabaseUnavailable("every database connection is busy; retry shortly") from None
        except CONNECTION_ERRORS as exc:
            raise DatabaseUnavailable("database unreachable") from exc
        export = LearnerExport(conn, params, settings, caller, helpers=PoolHelpers(pool),
                               copy=copy_select(params))
        opened = cls(pool, conn, export)
        try:
            await opened.export.open()
        except BaseException as exc:
            await opened.close()
            if isinstance(exc, asyncpg.InsufficientPrivilegeError):
                raise Forbidden(exc.args[0] if exc.args else "not allowed") from None
            if isinstance(exc, CONNECTION_ERRORS):
                raise DatabaseUnavailable("database connection lost") from exc
            raise
        return opened

    async def close(self) -> None:
        if self._released:
            return
        self._released = True
        try:
            await self.export.close()
        finally:
            # A connection lost mid-stream may already be gone from the pool's point of view.
            with contextlib.suppress(asyncpg.InterfaceError, OSError):
                await self.pool.release(self.conn)


STANDBY_ADVICE = ("raise max_standby_streaming_delay, or turn on hot_standby_feedback,"
                  " on the standby")


def standby_advice(exc: BaseException, on_standby: bool) -> str:
    """What to tell the operator when a hot standby may have cancelled the export's snapshot.

    A conflict during a page query comes as an error saying so; one while the export waits on
    a slow client ends the session with a message asyncpg drops, leaving a closed connection.
    """
    if "conflict with recovery" in str(exc):
        return f"; the standby cancelled it for a replication conflict: {STANDBY_ADVICE}"
    if on_standby and isinstance(exc, CONNECTION_ERRORS):
        return ("; it read from a standby, where a replication conflict ends such sessions:"
                f" if the standby's log says so, {STANDBY_ADVICE}")
    return ""


@dataclass
class ExportRun:
    """Everything one running export holds, and what must happen when it ends."""

    opened: OpenExport
    fmt: str
    slot: Slot
    audit: AuditLog
    entry: AuditEntry
    metrics: Metrics
    started: float

    async def end(self, outcome: str, bytes_sent: int) -> None:
        # The client has had everything it will get: its slot is free before the rollback.
        self.slot.release()
        try:
            await self.opened.close()
        finally:
            rows = self.opened.export.rows_fetched
            duration = time.perf_counter() - self.started
            m, fmt = self.metrics, self.fmt
            m.in_flight.labels(fmt).dec()
            m.exports.labels(fmt, outcome).inc()
            m.rows.labels(fmt).inc(rows)
            m.bytes.labels(fmt).inc(bytes_sent)
            m.duration.labels(fmt).observe(duration)
            log.info("export", extra={"export_id": self.entry.id, "format": fmt,
                                      "outcome": outcome, "rows": rows, "bytes": bytes_sent,
                                      "duration_ms": round(duration * 1000)})
            await self.audit.finish(self.entry, outcome=outcome, rows=rows,
                                    bytes_sent=bytes_sent, duration_ms=round(duration * 1000),
                                    client_scope=self.opened.export.client_scope)


class ExportResponse(StreamingResponse):
    """A streaming response that always gives its connection back, however the stream ends.

    A failure after the headers went out is logged and re-raised, so the server closes the
    connection without the final chunk: clients see an incomplete transfer, never a file that
    looks complete. A disconnect cancels the stream; the snapshot is then rolled back here.
    """

    def __init__(self, run: ExportRun, chunks: AsyncIterator[Chunk], settings: Settings,
                 **kwargs: Any) -> None:
        self._run = run
        self._chunks = chunks
        self._settings = settings
        self._bytes = 0
        self.outcome = "client_disconnected"
        super().__init__(self._body(), **kwargs)

    async def _body(self) -> AsyncIterator[Chunk]:
        first = True
        try:
            async for chunk in self._chunks:
                if first:
                    self._run.metrics.first_byte.labels(self._run.fmt).observe(
                        time.perf_counter() - self._run.started)
                    first = False
                self._bytes += len(chunk)
                yield chunk
        except Exception as exc:
            self.outcome = "failed"
            self._run.metrics.failures.labels("stream_failed").inc()
            log.exception("export failed after %d rows; cutting the response%s",
                          self._run.opened.export.rows_fetched,
                          standby_advice(exc, self._settings.read_database_url is not None))
            raise
        self.outcome = "completed"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        stall = self._settings.stall_timeout_seconds

        async def send_or_give_up(message: Message) -> None:
            # A client that stops reading blocks this send (TCP backpressure), with the
            # snapshot open: past the stall timeout the export ends, cut.
            with anyio.fail_after(stall):
                await send(message)

        try:
            with anyio.fail_after(self._settings.max_duration_seconds):
                await super().__call__(scope, receive, send_or_give_up)
        except TimeoutError:
            self.outcome = "timed_out"
            self._run.metrics.failures.labels("timed_out").inc()
            log.warning("export stalled or ran too long; cutting the response")
            raise
        except anyio.get_cancelled_exc_class():
            self.outcome = "cancelled"
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await self.body_iterator.aclose()  # type: ignore[attr-defined]
                await self._run.end(self.outcome, self._bytes)


async def start_export(request: Request, caller_id: str, params: ExportParams, *,
                       via_link: bool, prefer: str | None, accept_encoding: str | None,
                       ) -> StreamingResponse:
    """From an authenticated caller and valid parameters to a streaming response: role,
    limits, audit, snapshot and first page, all before the first byte."""
    started = time.perf_counter()
    state = request.app.state
    settings: Settings = state.settings
    pool: asyncpg.Pool = state.pool
    audit: AuditLog = state.audit
    request_id: str = request.state.request_id
    caller = await resolve_caller(pool, caller_id, settings, state.roles)
    try:
        require_export_role(caller)
    except Forbidden as exc:
        await audit.denied(caller=caller.id, role=caller.role, request_id=request_id,
                           params=params, detail=str(exc.detail), via_link=via_link)
        raise
    slot = state.slots.take(caller.id)
    try:
        entry = await audit.start(caller=caller.id, role=str(caller.role),
                                  request_id=request_id, params=params, via_link=via_link)
        try:
            opened = await OpenExport.open(state.read_pool, params, settings, caller.id)
        except Forbidden as exc:
            await audit.denied(caller=caller.id, role=caller.role, request_id=request_id,
                               params=params, detail=str(exc.detail), via_link=via_link,
                               entry=entry)
            raise
        except BaseException as exc:
            await audit.finish(entry, outcome="failed", rows=0, bytes_sent=0,
                               duration_ms=round((time.perf_counter() - started) * 1000),
                               client_scope=None, detail=type(exc).__name__)
            raise
        fmt = FORMATS[params.format]
        scope = opened.export.client_scope
        headers = {
            "Content-Disposition": content_disposition(*export_filename(
                fmt.extension, client_ids=params.client_ids, created_from=params.created_from,
                created_to=params.created_to, active=params.active, now=datetime.now(UTC))),
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            "X-Export-Id": entry.id,
            "X-Export-Client-Scope": "all" if scope is None else ",".join(scope),
            "Vary": "Accept-Encoding",
        }
        if prefer and "count=exact" in prefer.replace(" ", "").split(","):
            try:
                total = await opened.export.count()
            except BaseException:
                await opened.close()
                raise
            headers["X-Total-Count"] = str(total)
            headers["Content-Range"] = f"0-{total - 1}/{total}" if total else "*/0"
            headers["Preference-Applied"] = "count=exact"
    except BaseException:
        slot.release()
        raise
    encoder = fmt.make_encoder(
        opened.export.columns,
        EncodeOptions(bom=params.bom, escape_formulas=params.escape_formulas,
                      sheet_rows=settings.xlsx_sheet_rows),
    )
    codec = negotiate(accept_encoding) if fmt.name != "xlsx" else None
    if codec is not None:
        headers["Content-Encoding"] = codec.name
    chunks = encode_stream(opened.export.batches(), encoder, settings.chunk_bytes,
                           codec.make() if codec else None)
    metrics: Metrics = state.metrics
    metrics.in_flight.labels(fmt.name).inc()
    run = ExportRun(opened, fmt.name, slot, audit, entry, metrics, started)
    return ExportResponse(run, chunks, settings, media_type=fmt.media_type, headers=headers)


COLUMN_LIST = ", ".join(c.name for c in COLUMNS)


@router.get(
    "/v1/exports/learners",
    summary="Stream every learner as CSV, JSON Lines or XLSX",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The export, streamed as it is read (chunked transfer)",
            "content": {f.media_type: {} for f in FORMATS.values()},
        },
        **ERROR_RESPONSES,
    },
)
async def export_learners(
    request: Request,
    authorization: Annotated[str | None, Header(description="Bearer <JWT>")] = None,
    format: Annotated[str | None, Query(description="csv (default), jsonl or xlsx")] = None,
    client_id: Annotated[list[str] | None, Query(
        description="Only these clients (UUID; repeat the parameter, at most 1,000)")] = None,
    created_from: Annotated[str | None, Query(
        description="created_at on or after this ISO 8601 date or date-time (UTC if no offset)")
    ] = None,
    created_to: Annotated[str | None, Query(
        description="created_at before this ISO 8601 date or date-time (exclusive)")] = None,
    active: Annotated[str | None, Query(description="true or false")] = None,
    columns: Annotated[str | None, Query(
        description=f"Comma-separated, in the order wanted; default all: {COLUMN_LIST}")] = None,
    limit: Annotated[str | None, Query(description="At most this many rows")] = None,
    bom: Annotated[str | None, Query(description="CSV: start with a UTF-8 byte-order mark")] = None,
    escape_formulas: Annotated[str | None, Query(
        description="CSV/XLSX: neutralise cells starting with = + - @ tab CR (default true)")
    ] = None,
    cursor: Annotated[str | None, Query(
        description="CSV/JSONL: add a `_cursor` column, to resume after any row with `after`")
    ] = None,
    after: Annotated[str | None, Query(
        description="Resume after the row whose `_cursor` this is (a new snapshot)")] = None,
    prefer: Annotated[str | None, Header(
        description="`count=exact`: send the row count as Content-Range and X-Total-Count")
    ] = None,
    accept_encoding: Annotated[str | None, Header(
        description="zstd or gzip compress CSV and JSON Lines (not XLSX, already a zip)")
    ] = None,
) -> StreamingResponse:
    settings: Settings = request.app.state.settings
    profile_id = request.app.state.verifier.verify(bearer_token(authorization))
    params = parse_export_params(request.query_params.multi_items(), max_limit=settings.max_limit)
    return await start_export(request, profile_id, params, via_link=False, prefer=prefer,
                              accept_encoding=accept_encoding)
