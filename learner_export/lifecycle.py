"""What happens during an export, from the caller to the audit row's end; the HTTP route and the
CLI are thin faces over it.

    parameters parsed (a refusal is recorded, and raised for the face to answer)
      → a slot of this process, for the caller and in all
      → authorise (the caller's role label; the database applies their scope)
      → audit row 'started'
      → snapshot opened, scope resolved, first page read (a refusal here is 'denied')
      → slots shared by every replica (advisory locks in the snapshot's transaction)
      → the count (Prefer: count=exact), or the end for HEAD
      → pages written by COPY in the format → framed by the format → compressed → chunks
      → finish: outcome (decided here, by `ending()`), rows and bytes handed on, duration

Everything that can fail before the first byte does so in `start()`, so a caller gets a real
status; after it, a failure cuts the stream and the audit row says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg

from learner_export.audit import AuditEntry, AuditLog, Outcome, query_filters
from learner_export.auth import RoleCache, caller_role
from learner_export.compression import Compressor
from learner_export.config import Settings
from learner_export.errors import (
    ERRORS,
    ContractBreach,
    ExportError,
    TooManyExports,
    database_error,
)
from learner_export.formats import FORMATS, Format, Framer
from learner_export.formats.cells import cell_bound
from learner_export.memory import give_back_large_buffers
from learner_export.metrics import Metrics
from learner_export.pages import SnapshotPages
from learner_export.params import ExportParams
from learner_export.slots import ExportSlots, take_database_slots

log = logging.getLogger("learner_export.export")

Chunk = bytes | memoryview

# Pieces of COPY output larger than this are framed and compressed off the event loop.
OFFLOAD_BYTES = 256 * 1024


class Connections(Protocol):
    """The export's first connection, and helpers for the same snapshot (connections.py)."""

    async def main(self) -> asyncpg.Connection: ...

    async def acquire(self) -> asyncpg.Connection | None: ...

    async def release(self, conn: asyncpg.Connection) -> None: ...


@dataclass(frozen=True)
class Services:
    """What an export needs from the process: settings, the primary's pool (roles, audit)."""

    settings: Settings
    pool: asyncpg.Pool
    audit: AuditLog
    roles: RoleCache
    metrics: Metrics | None = None
    # This process's slots (the service); None where one process runs one export (the CLI).
    slots: ExportSlots | None = None


class Disconnected(Exception):
    """The client went away before the export's end (for `ending()`)."""


def ending(exc: BaseException | None) -> tuple[Outcome, str | None]:
    """How an export ended, from what ended it (None: it ran to its end); the one place that
    decides, for every face."""
    if exc is None:
        return Outcome.COMPLETED, None
    if isinstance(exc, Disconnected):
        return Outcome.CLIENT_DISCONNECTED, str(exc) or None
    if isinstance(exc, TimeoutError):
        return Outcome.TIMED_OUT, str(exc) or "stalled or ran too long"
    if isinstance(exc, KeyboardInterrupt | asyncio.CancelledError):
        return Outcome.CANCELLED, str(exc) or None
    return Outcome.FAILED, type(exc).__name__


async def refuse(
    services: Services,
    caller: str,
    exc: BaseException,
    *,
    request_id: str,
    via_link: bool,
    fmt: str | None,
    filters: dict[str, Any],
    what: str = "export",
) -> None:
    """Record an export that never started: refused (4xx, 'denied') or failed to open (5xx, or
    anything else); the face answers it. A 429 caused by everyone's exports is recorded under an
    allowance of its own, not the caller's."""
    if isinstance(exc, ExportError):
        kind = ERRORS[type(exc)]
        outcome = Outcome.DENIED if kind.status < 500 else Outcome.FAILED
        detail = f"{what} refused: {kind.status} {kind.code}: {exc.detail}"
    else:
        outcome, why = ending(exc)
        detail = f"{what} not started: {why or type(exc).__name__}"
    by_others = isinstance(exc, TooManyExports) and exc.by_others
    await services.audit.refused(
        caller=caller,
        allowance_key=caller + ":busy" if by_others else caller,
        request_id=request_id,
        fmt=fmt,
        filters=filters,
        via_link=via_link,
        detail=detail,
        outcome=outcome,
    )


def _split(data: bytes | bytearray, size: int) -> list[Chunk]:
    if len(data) <= size:
        # What leaves is bytes or a view (Starlette sends nothing else); a small copy is cheap.
        return [bytes(data)] if data else []
    view = memoryview(data)
    return [view[i : i + size] for i in range(0, len(data), size)]


class Export:
    """One export. `start()` it, stream `chunks()`, then `finish()` it exactly once."""

    def __init__(
        self,
        services: Services,
        params: ExportParams,
        caller: str,
        role: str | None,
        entry: AuditEntry,
        pages: SnapshotPages,
        connections: Connections,
        conn: asyncpg.Connection,
        started: float,
        on_end: Callable[[], None] | None,
    ) -> None:
        self.services, self.params, self.caller, self.role = services, params, caller, role
        self.format: Format = FORMATS[params.format]
        self.entry = entry
        self.pages = pages
        self._connections, self._conn = connections, conn
        self._started = started
        self._on_end = on_end
        self.rows_sent = 0
        self.bytes_sent = 0
        self.outcome: Outcome | None = None
        # Why the stream was cut, when the export knows better than its face (a cell too large).
        self.failure: str | None = None
        # The count announced (Prefer: count=exact), which the rows sent must meet.
        self.counted: int | None = None
        self.total: int | None = None  # counted when asked

    @property
    def client_scope(self) -> list[str] | None:
        return self.pages.client_scope

    @classmethod
    async def start(
        cls,
        services: Services,
        params: ExportParams,
        caller: str,
        connections: Connections,
        *,
        request_id: str,
        via_link: bool,
        on_end: Callable[[], None] | None = None,
        head: bool = False,
    ) -> Export:
        """Authorise, record, open the snapshot and read the first page; raise an ExportError
        (a refusal recorded as denied) when the export cannot run."""
        started = time.perf_counter()
        give_back_large_buffers()
        s = services
        role = await s.roles.role(
            caller, lambda c: caller_role(s.pool, c, s.settings.acquire_timeout_seconds)
        )
        conn: asyncpg.Connection | None = None
        pages: SnapshotPages | None = None
        try:
            conn = await connections.main()
            spec = FORMATS[params.format].select(params.columns, params.render_options(s.settings))
            pages = SnapshotPages(
                conn,
                params,
                s.settings,
                caller,
                spec,
                helpers=connections,
                where=cell_bound(params.columns, s.settings.max_cell_bytes),
            )
            await pages.open(
                lambda c: take_database_slots(
                    c, caller, s.settings.max_concurrent_per_user, s.settings.max_concurrent
                )
            )
            # Recorded once it can run, before any byte of it leaves; a refusal above is
            # recorded by refuse(), under the caller's allowance.
            entry = await s.audit.start(
                caller=caller,
                role=role,
                request_id=request_id,
                fmt=params.format,
                filters=params.filters(),
                via_link=via_link,
                # Requests that hand out no learner: past an allowance, counted in one row.
                repeatable="head" if head else "limit=0" if params.limit == 0 else None,
            )
        except BaseException as exc:
            if pages is not None:
                await pages.close()
            if conn is not None:
                await connections.release(conn)
            error = (
                exc if isinstance(exc, ExportError) else database_error(exc, "opening the export")
            )
            await refuse(
                services,
                caller,
                error or exc,
                request_id=request_id,
                via_link=via_link,
                fmt=params.format,
                filters=params.filters(),
            )
            if error is not None and error is not exc:
                raise error from exc
            raise
        if s.metrics is not None:
            s.metrics.in_flight.labels(params.format).inc()
        return cls(services, params, caller, role, entry, pages, connections, conn, started, on_end)

    @classmethod
    async def open(
        cls,
        services: Services,
        caller: str,
        params: Callable[[], ExportParams],
        connections: Connections,
        *,
        request_id: str,
        via_link: bool,
        query: Sequence[tuple[str, str]] = (),
        count: bool = False,
        head: bool = False,
    ) -> Export:
        """Everything before the first byte, for any face: parse the parameters, take a slot,
        `start()`, count when asked, end a HEAD. A refusal is recorded and raised as the
        ExportError the face answers; the Export returned is running (or, for HEAD, ended)."""
        parsed: ExportParams | None = None
        slot = None
        try:
            parsed = params()
            if services.slots is not None:
                slot = services.slots.take(caller)
        except ExportError as exc:
            await refuse(
                services,
                caller,
                exc,
                request_id=request_id,
                via_link=via_link,
                fmt=None if parsed is None else parsed.format,
                filters=query_filters(query) if parsed is None else parsed.filters(),
            )
            raise
        try:
            export = await cls.start(
                services,
                parsed,
                caller,
                connections,
                request_id=request_id,
                via_link=via_link,
                on_end=None if slot is None else slot.release,
                head=head,
            )
        except BaseException:
            if slot is not None:
                slot.release()
            raise
        try:
            if count:
                export.total = await export.count()
        except BaseException as exc:
            await export.finish(*ending(exc))
            error = database_error(exc, "counting the export")
            if error is None or error is exc:
                raise
            raise error from exc
        if head:
            await export.finish(Outcome.HEAD, "headers only")
        return export

    async def count(self) -> int:
        """Rows the export holds, counted in its snapshot."""
        self.counted = await self.pages.count()
        return self.counted

    async def chunks(
        self, chunk_bytes: int, compressor: Compressor | None = None
    ) -> AsyncIterator[Chunk]:
        """The file, piece by piece as COPY writes the pages, in chunks of at most chunk_bytes.

        A page's rows count as sent once all its bytes have been taken (for HTTP: handed to
        the server, which blocks while the client does not read). A piece larger than
        OFFLOAD_BYTES (long cells) is framed and compressed in a thread, so that the event loop
        never runs work that grows with the data.
        """
        framer: Framer = self.format.framer(
            self.params.columns, self.params.render_options(self.services.settings)
        )
        metrics = self.services.metrics
        first = True
        working: asyncio.Future[bytes | bytearray] | None = None

        def render(data: bytes | bytearray) -> bytes | bytearray:
            out = framer.page(data)
            return compressor.compress(bytes(out)) if compressor is not None else out

        try:
            head = framer.begin()
            if compressor is not None and head:
                head = compressor.compress(head)
            async for piece in self.pages.pages():
                if self.counted is not None and self.rows_sent + piece.rows > self.counted:
                    raise _miscounted(self.counted, self.rows_sent + piece.rows, "more")
                if len(piece.data) > OFFLOAD_BYTES:
                    working = asyncio.get_running_loop().run_in_executor(None, render, piece.data)
                    data = await asyncio.shield(working)
                    working = None
                else:
                    data = render(piece.data) if piece.data else b""
                if head:
                    data, head = head + data, b""
                for part in _split(data, chunk_bytes):
                    if first and metrics is not None:
                        metrics.first_byte.labels(self.format.name).observe(
                            time.perf_counter() - self._started
                        )
                    first = False
                    yield part
                    self.bytes_sent += len(part)
                self.rows_sent += piece.rows
            if self.counted is not None and self.rows_sent != self.counted:
                raise _miscounted(self.counted, self.rows_sent, "fewer")
            tail = framer.end()
            if compressor is not None:
                tail = compressor.compress(tail) + compressor.finish()
            for part in _split(head + tail, chunk_bytes):
                yield part
                self.bytes_sent += len(part)
        except ExportError as exc:
            self.failure = f"{type(exc).__name__}: {exc.detail}"
            raise
        finally:
            if working is not None:
                # The framer is still in use by the thread: it is closed after it.
                with contextlib.suppress(BaseException):
                    await asyncio.wait([working])
            framer.close()

    async def end(self, exc: BaseException | None) -> bool:
        """`finish()` with the outcome of what ended the export (None: it ran to its end)."""
        return await self.finish(*ending(exc))

    async def finish(self, outcome: Outcome, detail: str | None = None) -> bool:
        """End the export: free its slot, roll its snapshot back, complete its audit row.
        False when the audit row could not be completed (logged, and counted as a failure)."""
        if self.outcome is not None:
            return True
        if outcome is Outcome.FAILED and self.failure is not None:
            detail = self.failure
        self.outcome = outcome
        if self._on_end is not None:
            self._on_end()
        try:
            await self.pages.close()
        finally:
            await self._connections.release(self._conn)
        duration = time.perf_counter() - self._started
        fmt, m = self.format.name, self.services.metrics
        if m is not None:
            m.in_flight.labels(fmt).dec()
            m.exports.labels(fmt, outcome.value).inc()
            m.rows.labels(fmt).inc(self.rows_sent)
            m.bytes.labels(fmt).inc(self.bytes_sent)
            m.duration.labels(fmt).observe(duration)
        log.info(
            "export",
            extra={
                "export_id": self.entry.id,
                "format": fmt,
                "outcome": outcome.value,
                "rows": self.rows_sent,
                "bytes": self.bytes_sent,
                "duration_ms": _ms(self._started),
            },
        )
        recorded = await self.services.audit.finish(
            self.entry,
            outcome=outcome,
            rows=self.rows_sent,
            bytes_sent=self.bytes_sent,
            duration_ms=_ms(self._started),
            client_scope=self.client_scope,
            detail=detail,
        )
        if not recorded and m is not None:
            m.failures.labels("audit_not_completed").inc()
        return recorded


def _miscounted(counted: int, rows: int, which: str) -> ContractBreach:
    """The export cut because the pages and the announced count disagree (before the page that
    would exceed the count, or before the end of a file that holds fewer rows)."""
    message = (
        f"learner_export.get_learner_export_batch's pages hold {which} rows ({rows:,} so far) "
        f"than learner_export.count_learner_export counted ({counted:,}): the two functions "
        "must read the same rows"
    )
    log.error("the adapter broke the export contract; the export is cut: %s", message)
    return ContractBreach(message)


def _ms(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)
