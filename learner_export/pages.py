"""An export's rows as keyset pages of learner_export.get_learner_export_batch(), inside one
read-only snapshot, each page written by PostgreSQL's COPY through a select list that the
format gave (opaque text here: this module knows no format).

One export may read with more than one connection: the first exports its snapshot
(`pg_export_snapshot()`), helpers import it, and each reads whole pages, so that PostgreSQL
works on as many cores as there are connections while the pages still come out in key order.
Page k starts after the last row of page k-1; those keys are found ahead of the pages by
learner_export_page_ends(), a walk of the keyset index, so that page k can be read before page
k-1 has arrived.

With the adapter's bulk view (learner_export.learner_export_rows, docs/contract.md), the rest of
an export after its first page is read in one statement instead, a "bulk pass": COPY of the view
in keyset order, after the first page's last key, so that PostgreSQL may aggregate each child
table once (hash aggregates and joins, the plan a COPY of the whole export gets) instead of
looking each learner's children up page after page. It runs in the same snapshot, through the
same guard and cell bound (docs/engine.md). A large one is split into key ranges, one per
connection (up to `settings.connections_per_export`): the first range is sent as it is read;
each other range is rendered and sorted by its own connection meanwhile, and held (up to
`settings.read_ahead_bytes`) until the ranges before it have been sent.

A page is never held whole: COPY's output goes through a `PageStream` that holds at most
`settings.read_ahead_bytes` (plus the one piece being handed over, whole rows of at most the cell
bound each), and the connection stops reading its socket while the stream is full, so that
PostgreSQL waits for the client instead of the service buffering for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import asyncpg

from learner_export.config import Settings
from learner_export.contract import guard
from learner_export.errors import (
    DATABASE_ERRORS,
    CellTooLarge,
    ContractBreach,
    ExportError,
    database_error,
)
from learner_export.formats import CopySpec

log = logging.getLogger("learner_export.pages")

Key = tuple[datetime, str]


class Selection(Protocol):
    """Which rows an export holds (learner_export.params.ExportParams is one)."""

    @property
    def client_ids(self) -> tuple[str, ...] | None: ...
    @property
    def created_from(self) -> datetime | None: ...
    @property
    def created_to(self) -> datetime | None: ...
    @property
    def active(self) -> bool | None: ...
    @property
    def limit(self) -> int | None: ...
    @property
    def after(self) -> Key | None: ...
    @property
    def tz(self) -> str: ...
    @property
    def time_column(self) -> str: ...
    @property
    def contract_version(self) -> str: ...
    @property
    def bulk(self) -> bool: ...


# Page starts found per walk of the keyset (one walk reads this many pages' keys).
PAGES_PER_WALK = 16

# How long close() waits for a helper connection that is still joining.
HELPER_JOIN_SECONDS = 10.0

_SNAPSHOT_ID = re.compile(r"[0-9A-F]+-[0-9A-F]+-[0-9]+")

QUOTE = '"'

# What a page's reader waits for before it takes what COPY wrote (PageStream).
GATHER_BYTES = 64 * 1024

_FILTER_ARGS = "$1::uuid, $2::uuid[], $3::timestamptz, $4::timestamptz, $5::boolean"

# COPY takes no bind parameters: a page's are set as transaction-local settings, bound like
# any other parameter, and the COPY statement (fixed text) reads them back.
_COPY_PARAMS = (
    "SELECT set_config('learner_export.caller', $1::uuid::text, true),"
    " set_config('learner_export.client_ids', coalesce($2::uuid[]::text, ''), true),"
    " set_config('learner_export.created_from', coalesce($3::timestamptz::text, ''), true),"
    " set_config('learner_export.created_to', coalesce($4::timestamptz::text, ''), true),"
    " set_config('learner_export.active', coalesce($5::boolean::text, ''), true),"
    " set_config('learner_export.after_created_at', coalesce($6::timestamptz::text, ''), true),"
    " set_config('learner_export.after_id', coalesce($7::uuid::text, ''), true),"
    " set_config('learner_export.page_size', $8::integer::text, true),"
    " set_config('learner_export.row', $9::bigint::text, true),"
    " set_config('learner_export.end_at', coalesce($10::timestamptz::text, ''), true),"
    " set_config('learner_export.end_id', coalesce($11::uuid::text, ''), true)"
)
_COPY_ARGS = (
    "current_setting('learner_export.caller')::uuid,"
    " nullif(current_setting('learner_export.client_ids'), '')::uuid[],"
    " nullif(current_setting('learner_export.created_from'), '')::timestamptz,"
    " nullif(current_setting('learner_export.created_to'), '')::timestamptz,"
    " nullif(current_setting('learner_export.active'), '')::boolean,"
    " nullif(current_setting('learner_export.after_created_at'), '')::timestamptz,"
    " nullif(current_setting('learner_export.after_id'), '')::uuid,"
    " current_setting('learner_export.page_size')::integer"
)
# What the keyset guard compares a page with (learner_export.contract.guard).
_GUARD_AFTER = (
    "nullif(current_setting('learner_export.after_created_at'), '')::timestamptz",
    "nullif(current_setting('learner_export.after_id'), '')::uuid",
)
# The bulk pass's limit: the rows left to send (set as learner_export.page_size).
_BULK_LIMIT = "current_setting('learner_export.page_size')::integer"
# No limit: the most an integer setting holds.
_NO_LIMIT = 2**31 - 1
_BULK_VIEW = "learner_export.learner_export_rows"
_GUARD_END = (
    "nullif(current_setting('learner_export.end_at'), '')::timestamptz",
    "nullif(current_setting('learner_export.end_id'), '')::uuid",
)
# Where a range of the bulk pass ends (its last key, included; NULL for the last range): the
# settings that hold a page's end.
_BULK_UPTO = _GUARD_END


@dataclass(frozen=True, slots=True)
class CopiedPage:
    """A piece of a page as PostgreSQL's COPY wrote it: whole records, each ending in LF (COPY
    sends a row per message, and asyncpg hands on whole messages), `rows` of them where that is
    cheap to know (lines, when no quoted field may hold a line break); a page's last piece
    carries the rest of the page's row count."""

    data: bytes | bytearray
    rows: int

    def __len__(self) -> int:
        return self.rows


class PageStream:
    """One page's COPY output on its way from the connection reading it to the export sending
    it. `put()` (COPY's sink) waits while `budget` bytes are held, which stops asyncpg reading
    the socket (it pauses reading until the sink returns, asyncpg's protocol.copy_out); one
    piece is always taken, however large, so that a row larger than the budget still passes.
    The reader takes what is held once GATHER_BYTES are there or the page has ended, and at
    most about GATHER_BYTES at a time: asyncpg's pieces are as small as the socket's reads, and
    each costs a step of the whole pipeline (25 µs; 0.8 s of the service's CPU per 1M CSV rows
    when taken one by one), while a page held whole until its turn (the budget, 1 MiB) taken at
    once would be framed in a worker thread (lifecycle.OFFLOAD_BYTES), whose buffers come from
    allocator arenas of their own (a 1M-row Parquet export's peak: 5 MB more, docs/engine.md)."""

    def __init__(self, budget: int, lines_are_rows: bool = False) -> None:
        self._budget = budget
        self._least = min(GATHER_BYTES, budget)
        self._lines_are_rows = lines_are_rows
        self._counted = 0  # rows handed on before the page's end
        self._pieces: deque[tuple[bytes | bytearray, int]] = deque()
        self._held = 0
        self.rows: int | None = None  # the page's rows, once its COPY has finished
        self.beyond = False  # the export ended before this page: it was never read
        self.bulk = False  # this page was the bulk pass: the rest of the export
        self._error: BaseException | None = None
        self._finished = False
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self._settled = asyncio.Event()

    async def put(self, piece: bytes | bytearray) -> None:
        while self._held >= self._budget:
            self._settled.set()
            self._writable.clear()
            await self._writable.wait()
        # asyncpg hands on a new bytearray each time: kept as it is, not copied.
        rows = piece.count(b"\n") if self._lines_are_rows or b'"' not in piece else 0
        self._pieces.append((piece, rows))
        self._held += len(piece)
        if self._held >= self._least:
            self._readable.set()

    def end(self, rows: int) -> None:
        self.rows = rows
        self._readable.set()
        self._settled.set()

    async def settled(self) -> None:
        """Wait until the page has ended, failed, or filled its budget."""
        await self._settled.wait()

    def lift(self) -> None:
        """Hold the rest of the page whatever its size (its reader must be freed)."""
        self._budget = 1 << 62
        self._settled.clear()
        self._writable.set()

    def fail(self, error: BaseException) -> None:
        self._error = error
        self._readable.set()
        self._settled.set()

    async def ready(self) -> None:
        """Wait for GATHER_BYTES or the end; a failure with nothing left to take is raised."""
        while self._held < self._least and self.rows is None and self._error is None:
            self._readable.clear()
            await self._readable.wait()
        if self._error is not None and not self._pieces:
            raise self._error

    async def take(self) -> CopiedPage | None:
        """The next piece (the last one carries the page's rows), or None after the last."""
        if self._finished:
            return None
        await self.ready()
        if self._pieces:
            taken = [self._pieces.popleft()]
            size = len(taken[0][0])
            while self._pieces and size < self._least:
                taken.append(self._pieces.popleft())
                size += len(taken[-1][0])
            self._held -= size
            if self._held < self._budget:
                self._writable.set()
            data = taken[0][0] if len(taken) == 1 else b"".join(p for p, _ in taken)
            if self.rows is None or self._pieces:
                rows = sum(r for _, r in taken)
                self._counted += rows
                return CopiedPage(data, rows)
            self._finished = True
            return CopiedPage(data, self.rows - self._counted)
        self._finished = True
        return CopiedPage(b"", (self.rows or 0) - self._counted)


class Helpers(Protocol):
    """Where an export gets more connections from, and gives them back."""

    async def acquire(self) -> asyncpg.Connection | None:
        """A connection now, or None when there is none to spare."""

    async def release(self, conn: asyncpg.Connection) -> None: ...


class _End:
    """No page: the export has no rows from here on."""


END = _End()


class PageStarts:
    """The cursor each page starts after, found ahead by walks of the keyset.

    Page 0 has `first_size` rows and the others `size`, all full but the last; `limit` cuts
    the last page short. A walk that finds fewer page ends than it asked for has reached the
    last rows: the page after the last end found is the export's last (it may be empty).
    """

    def __init__(self, after: Key | None, first_size: int, size: int, limit: int | None) -> None:
        self._starts: list[Key | None] = [after]
        self._first_size, self._size, self._limit = first_size, size, limit
        self._complete = False
        self._lock = asyncio.Lock()

    def size(self, k: int) -> int:
        nominal = self._first_size if k == 0 else self._size
        if self._limit is None:
            return nominal
        return max(0, min(nominal, self._limit - self.offset(k)))

    def offset(self, k: int) -> int:
        """The export's index of page k's first row."""
        return 0 if k == 0 else self._first_size + (k - 1) * self._size

    async def start(
        self, k: int, walk: Callable[[Key | None, int, int], Awaitable[list[Key]]]
    ) -> Key | _End | None:
        if self.size(k) == 0:
            return END
        async with self._lock:
            while k >= len(self._starts) and not self._complete:
                last = len(self._starts) - 1
                size = self.size(last)
                pages = 1 if last == 0 else PAGES_PER_WALK
                if size < (self._first_size if last == 0 else self._size):
                    self._complete = True  # the limit ends the export at page `last`
                    break
                ends = await walk(self._starts[-1], size, pages)
                self._starts.extend(ends)
                self._complete = len(ends) < pages
            return self._starts[k] if k < len(self._starts) else END

    def end(self, k: int) -> Key | None:
        """Where page k ends when it is full, if a walk found it already (else None)."""
        nominal = self._first_size if k == 0 else self._size
        if k + 1 < len(self._starts) and self.size(k) == nominal:
            return self._starts[k + 1]
        return None


@dataclass(frozen=True, slots=True)
class BulkRange:
    """A range of the bulk pass: the rows after `after`, up to `upto` included ((None, None):
    to the end), at most `limit`; `row` is the export's index of its first row."""

    after: Key
    upto: Key | tuple[None, None]
    row: int
    limit: int


# The first range's share of rows, against 1 for each other range. The first renders its cells
# after its sort, as it is sent; the others render theirs before (while the first is sent), and
# only then, one after another, go out. Even ranges left the first still sending when the second
# was ready (a core idle for a second of 1M rows); 0.72 (42% of two ranges) ends both at about
# the same time: ~4% off CSV's and XLSX's wall time at 1M rows, heavy CSV 0.54x -> 0.61x COPY's
# rows/s (docs/engine.md, "Where the split falls").
FIRST_RANGE_WEIGHT = 0.72


def range_sizes(total: int, ranges: int) -> list[int]:
    """Rows in each of the first `ranges - 1` ranges of `total` (the last takes the rest)."""
    if ranges < 2:
        return []
    unit = total / (FIRST_RANGE_WEIGHT + ranges - 1)
    return [max(1, int(unit * FIRST_RANGE_WEIGHT))] + [int(unit)] * (ranges - 2)


def bulk_ranges(
    after: Key, ends: list[Key], sizes: list[int], first: int, left: int | None
) -> list[BulkRange]:
    """The bulk pass's ranges after `after` (the export's row `first`): one up to each of `ends`
    (keys a walk of the keyset found `sizes` rows apart), and the last with the rest, up to
    `left` rows in all (None: no limit)."""
    ranges: list[BulkRange] = []
    start, row = after, first
    for end, size in zip(ends, sizes, strict=False):
        ranges.append(BulkRange(start, end, row, _NO_LIMIT))
        start, row = end, row + size
    rest = _NO_LIMIT if left is None else left - (row - first)
    ranges.append(BulkRange(start, (None, None), row, rest))
    return ranges


class SnapshotPages:
    """An export's pages: a REPEATABLE READ, READ ONLY snapshot read page by page.

    Every page is read as `caller` (a profile id), whose scope the database applies, and
    written by COPY through `spec` (a format's select list over the page function's row `r`,
    and its options for COPY's CSV; `where`, a condition on `r`, may raise to refuse a row).
    `open()` starts the snapshot, resolves the caller's scope and fetches the first page, so
    that anything that can fail early (a refusal included) fails before a response starts.
    `pages()` then yields pages, with the next pages already asked for (one per connection)
    while the current one is sent. With `helpers`, connections are added as they can be had
    (up to `settings.connections_per_export` in all), each in the same snapshot.
    `close()` rolls back; it is safe to call at any time, more than once.
    """

    def __init__(
        self,
        conn: asyncpg.Connection,
        params: Selection,
        settings: Settings,
        caller: str,
        spec: CopySpec,
        *,
        helpers: Helpers | None = None,
        where: str = "",
    ) -> None:
        self._conn = conn
        self._caller = caller
        self.client_scope: list[str] | None = None
        self._params = params
        self._copy_sql = guard.page_query(
            spec.select,
            params.time_column,
            _COPY_ARGS,
            after=_GUARD_AFTER,
            page_size="current_setting('learner_export.page_size')::integer",
            end=_GUARD_END,
        ) + (f" AND ({where})" if where else "")
        # The rest of the export after page 0 in one statement (a range of it per connection),
        # when the adapter offers the view: the range sent as it is read, and the ranges held.
        self._bulk_sql: str | None = None
        self._held_sql = ""
        if params.bulk and settings.bulk_pass:
            first_rows = min(settings.first_page_size, settings.page_size)

            def bulk(render_first: bool) -> str:
                return guard.bulk_query(
                    spec.items,
                    params.time_column,
                    after=_GUARD_AFTER,
                    upto=_BULK_UPTO,
                    limit=_BULK_LIMIT,
                    rows_from=_BULK_VIEW,
                    # The bulk pass's index of a range's first row, for a breach's message.
                    row=f"(SELECT current_setting('learner_export.row')::bigint - {first_rows})",
                    where=where,
                    ordered=spec.ordered,
                    render_first=render_first,
                )

            self._bulk_sql, self._held_sql = bulk(False), bulk(True)
        self._copy_options = dict(spec.options)
        # A quote character other than the double quote is one no cell holds: a line is a row.
        self._lines_are_rows = self._copy_options.get("quote", QUOTE) != QUOTE
        self._settings = settings
        self._transaction = conn.transaction(isolation="repeatable_read", readonly=True)
        self._helpers = helpers if settings.connections_per_export > 1 else None
        self._helper_conns: list[tuple[asyncpg.Connection, Any]] = []
        self._snapshot: str | None = None
        self._starts = PageStarts(
            params.after,
            min(settings.first_page_size, settings.page_size),
            settings.page_size,
            params.limit,
        )
        self._first: PageStream | None = None
        self._idle: asyncio.Queue[asyncpg.Connection] = asyncio.Queue()
        self._width = 1
        self._tasks: list[asyncio.Future[Any]] = []
        self._joining: asyncio.Future[None] | None = None
        self._closed = False
        self.rows_fetched = 0

    @property
    def connections(self) -> int:
        """Connections reading this export so far."""
        return 1 + len(self._helper_conns)

    async def open(
        self, admit: Callable[[asyncpg.Connection], Awaitable[None]] | None = None
    ) -> SnapshotPages:
        """Start the snapshot, hold the contract, run `admit` on the export's connection inside
        its transaction (the slots every replica shares), then start page 0's COPY; returns
        once its first bytes (or its end, or its failure) have arrived."""
        await self._begin(self._conn, self._transaction)
        await guard.hold_contract(self._conn, self._params.contract_version)
        if admit is not None:
            # Before page 0's COPY, which keeps the connection busy until it is read.
            await admit(self._conn)
        self.client_scope = await self._conn.fetchval(
            "SELECT learner_export.export_scope($1::uuid, $2::uuid[])",
            self._caller,
            self._client_ids(),
        )
        if self._helpers is not None:
            self._snapshot = await self._conn.fetchval("SELECT pg_export_snapshot()")
        self._idle.put_nowait(self._conn)
        self._first = self._ask(0)
        await self._first.ready()
        return self

    async def _begin(
        self, conn: asyncpg.Connection, transaction: Any, snapshot: str | None = None
    ) -> None:
        await transaction.start()
        if snapshot is not None:
            if not _SNAPSHOT_ID.fullmatch(snapshot):
                raise ValueError(f"unexpected snapshot id {snapshot!r}")
            await conn.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
        s = self._settings
        await conn.execute(
            "SELECT set_config('statement_timeout', $1, true),"
            " set_config('idle_in_transaction_session_timeout', $2, true),"
            # Parallel plans per page halve the throughput of keyset paging (PERF-NOTES).
            " set_config('max_parallel_workers_per_gather', '0', true),"
            " set_config('jit', 'off', true),"
            # What the formats' select lists rely on: the export's time zone, ISO dates,
            # shortest floats.
            " set_config('TimeZone', $3, true),"
            " set_config('DateStyle', 'ISO, YMD', true),"
            " set_config('extra_float_digits', '1', true)",
            str(s.statement_timeout_ms),
            str(s.idle_in_transaction_timeout_ms),
            self._params.tz,
        )

    async def count(self) -> int:
        """Rows this export will hold, counted in its own snapshot (before pages())."""
        p = self._params
        after = p.after or (None, None)
        conn = await self._free_connection()
        try:
            total = await self._count_after(conn, after)
        finally:
            self._idle.put_nowait(conn)
        return total if p.limit is None else min(total, p.limit)

    def _filters(self) -> tuple[Any, ...]:
        p = self._params
        return (self._caller, self._client_ids(), p.created_from, p.created_to, p.active)

    async def _read(
        self, conn: asyncpg.Connection, k: int, after: Key | None, stream: PageStream
    ) -> int:
        cursor = after or (None, None)
        end = self._starts.end(k) or (None, None)
        await conn.execute(
            _COPY_PARAMS,
            *self._filters(),
            *cursor,
            self._starts.size(k),
            self._starts.offset(k),
            *end,
        )
        return await self._copy(conn, self._copy_sql, stream)

    async def _copy(self, conn: asyncpg.Connection, sql: str, stream: PageStream) -> int:
        """COPY `sql` (a page or the bulk pass) into `stream`; its rows. A breach of the keyset
        guard is raised as the ContractBreach it names."""
        try:
            status = await conn.copy_from_query(
                sql, output=stream.put, format="csv", **self._copy_options
            )
        except asyncpg.PostgresError as exc:
            breach = guard.breach_of(exc)
            if breach is not None:
                raise breach from exc
            raise
        rows = int(status.rpartition(" ")[2])
        self.rows_fetched += rows
        return rows

    async def _read_bulk(
        self, conn: asyncpg.Connection, after: Key, stream: PageStream
    ) -> int | None:
        """Every row after page 0 (`after`, its last key), up to the limit, into `stream`: the
        bulk pass, its ranges read at once, one per connection; its rows. None, with nothing
        read, when fewer than settings.bulk_min_rows rows follow (or the limit leaves fewer):
        those are read page by page, where PostgreSQL looks each learner's children up by index
        instead of aggregating every child table whole."""
        assert self._bulk_sql is not None
        s = self._settings
        first, limit = self._starts.offset(1), self._params.limit
        left = None if limit is None else min(_NO_LIMIT, limit - first)
        if left is not None and left < s.bulk_min_rows:
            return None
        if self._helpers is None or self._snapshot is None:
            # One connection: a walk of settings.bulk_min_rows says whether the pass is worth it.
            if not await self._walk(conn, after, s.bulk_min_rows, 1):
                return None
            ranges = bulk_ranges(after, [], [], first, left)
            spare: list[asyncpg.Connection] = []
        else:
            # Ranges of range_sizes() rows: the rows counted, then a walk to where each ends.
            total = await self._count_after(conn, after)
            total = total if left is None else min(total, left)
            if total < s.bulk_min_rows:
                return None
            # Ranges of settings.bulk_range_min_rows on average at least: each aggregates the
            # child tables whole, which a small range does not earn back.
            wanted = min(s.connections_per_export, total // s.bulk_range_min_rows)
            spare = await self._spare_connections(wanted - 1)
            sizes = range_sizes(total, 1 + len(spare))
            ends: list[Key] = []
            if spare:
                ends = await self._walk(conn, after, sizes[0], 1)
            if len(spare) > 1 and ends:
                ends += await self._walk(conn, ends[0], sizes[1], len(spare) - 1)
            # Fewer ends than asked only where the adapter's count and walk disagree.
            for other in spare[len(ends) :]:
                self._idle.put_nowait(other)
            spare = spare[: len(ends)]
            ranges = bulk_ranges(after, ends, sizes, first, left)
        held = [PageStream(s.read_ahead_bytes, self._lines_are_rows) for _ in ranges[1:]]
        for part, other, into in zip(ranges[1:], spare, held, strict=True):
            self._tasks.append(asyncio.ensure_future(self._read_held(other, part, into)))
        rows = await self._read_range(conn, ranges[0], self._bulk_sql, stream)
        for into in held:
            # Each held range after the one before it: what it holds, then the rest as it is read.
            while (piece := await into.take()) is not None:
                if piece.data:
                    await stream.put(piece.data)
            rows += into.rows or 0
        return rows

    async def _count_after(self, conn: asyncpg.Connection, after: Key | tuple[None, None]) -> int:
        """The export's rows after `after` (the limit aside), in its snapshot."""
        total: int = await conn.fetchval(
            f"SELECT learner_export.count_learner_export({_FILTER_ARGS}, $6::timestamptz,"
            " $7::uuid)",
            *self._filters(),
            *after,
        )
        return total

    async def _spare_connections(self, wanted: int) -> list[asyncpg.Connection]:
        """Up to `wanted` of the export's connections for ranges of the bulk pass: those idle,
        then helpers added in its snapshot (up to settings.connections_per_export in all)."""
        spare: list[asyncpg.Connection] = []
        while len(spare) < wanted and not self._idle.empty():
            spare.append(self._idle.get_nowait())
        while (
            len(spare) < wanted
            and len(self._helper_conns) < self._settings.connections_per_export - 1
            and (conn := await self._add_helper()) is not None
        ):
            spare.append(conn)
        return spare

    async def _read_held(self, conn: asyncpg.Connection, part: BulkRange, into: PageStream) -> None:
        try:
            rows = await self._read_range(conn, part, self._held_sql, into)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            into.fail(exc)  # raised where the range's turn comes, after what it sent
            return
        into.end(rows)

    async def _read_range(
        self, conn: asyncpg.Connection, part: BulkRange, sql: str, stream: PageStream
    ) -> int:
        await conn.execute(
            _COPY_PARAMS, *self._filters(), *part.after, part.limit, part.row, *part.upto
        )
        await conn.execute(
            # One statement now sends a range of the export, as fast as the client reads it:
            # the export's own deadline bounds it, not a page's statement_timeout; and a range's
            # connection then waits, idle in its transaction (the first holds the export's slots
            # and the contract), while the ranges after it are sent.
            "SELECT set_config('statement_timeout', $1, true),"
            " set_config('idle_in_transaction_session_timeout', $1, true),"
            # The plan a COPY of the whole export gets: every child table aggregated once and
            # hash-joined. The view's filters are settings, unknown when it is planned, so the
            # planner expects a few hundred rows and would look children up learner by learner
            # (measured on the heavy schema: more than 260 s for 1M rows, against 18 s).
            " set_config('enable_nestloop', 'off', true),"
            " set_config('enable_mergejoin', 'off', true)",
            str(int(self._settings.max_duration_seconds * 1000)),
        )
        return await self._copy(conn, sql, stream)

    async def _walk(
        self, conn: asyncpg.Connection, after: Key | None, size: int, pages: int
    ) -> list[Key]:
        cursor = after or (None, None)
        ends = await conn.fetch(
            # By position: the adapter names the keyset's time column.
            "SELECT * FROM learner_export.learner_export_page_ends("
            f"{_FILTER_ARGS}, $6::timestamptz, $7::uuid, $8::integer, $9::integer)",
            *self._filters(),
            *cursor,
            size,
            pages,
        )
        return [(r[0], r[1]) for r in ends]

    def _client_ids(self) -> list[str] | None:
        ids = self._params.client_ids
        return list(ids) if ids is not None else None

    def _ask(self, k: int) -> PageStream:
        """Page k, read into a stream by the next idle connection."""
        stream = PageStream(self._settings.read_ahead_bytes, self._lines_are_rows)
        self._tasks.append(asyncio.ensure_future(self._page(k, stream)))
        return stream

    async def _page(self, k: int, stream: PageStream) -> None:
        conn = await self._idle.get()
        try:
            start = await self._starts.start(
                k, lambda after, size, pages: self._walk(conn, after, size, pages)
            )
            stream.beyond = isinstance(start, _End)
            if isinstance(start, _End):
                rows = 0
            elif (
                k == 1
                and self._bulk_sql is not None
                and start is not None
                and (bulk_rows := await self._read_bulk(conn, start, stream)) is not None
            ):
                stream.bulk = True
                rows = bulk_rows
            else:
                if k == 1 and self._bulk_sql is not None:
                    # Too few rows left for the bulk pass: page by page, helpers included.
                    self._bulk_sql = None
                    self._start_helpers()
                rows = await self._read(conn, k, start, stream)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            error = exc if isinstance(exc, ExportError) else database_error(exc, "reading a page")
            stream.fail(error if isinstance(error, (CellTooLarge, ContractBreach)) else exc)
            return
        finally:
            self._idle.put_nowait(conn)
        stream.end(rows)
        if k == 0 and rows == self._starts.size(0) and self._bulk_sql is None:
            self._start_helpers()  # the bulk pass (when it comes) reads on one connection

    def _start_helpers(self) -> None:
        if self._helpers is not None and self._joining is None:
            self._joining = asyncio.ensure_future(self._add_helpers())

    async def _add_helpers(self) -> None:
        """Bring in helper connections, in this export's snapshot, while pages are read."""
        while len(self._helper_conns) < self._settings.connections_per_export - 1:
            conn = await self._add_helper()
            if conn is None:
                return
            self._idle.put_nowait(conn)

    async def _add_helper(self) -> asyncpg.Connection | None:
        """One more connection in this export's snapshot (not yet idle), or None."""
        if self._helpers is None or self._snapshot is None:
            return None
        conn = await self._helpers.acquire()
        if conn is None:
            return None
        transaction = conn.transaction(isolation="repeatable_read", readonly=True)
        self._helper_conns.append((conn, transaction))
        try:
            await self._begin(conn, transaction, self._snapshot)
        except DATABASE_ERRORS as exc:
            # The export goes on with the connections it has.
            log.warning("a helper connection could not join the export: %s", exc)
            return None
        self._width += 1
        return conn

    async def _free_connection(self) -> asyncpg.Connection:
        """A connection of the export free for a query before pages() starts: the first page
        may still be streaming on the first connection (waiting for the client, which waits
        for this query). Then a helper joins; without one, the first page is read whole."""
        first = self._first
        if first is not None and first.rows is None:
            await first.settled()
            if first.rows is None:
                helper = await self._add_helper()
                if helper is not None:
                    return helper
                first.lift()
                await first.settled()
        conn: asyncpg.Connection = await self._idle.get()
        return conn

    async def pages(self) -> AsyncIterator[CopiedPage]:
        """The export's pages in order, piece by piece, while the next pages (one per
        connection) are read ahead into their own streams."""
        if self._first is None:
            raise RuntimeError("open() the export first")
        stream, self._first = self._first, PageStream(1)
        stream_k, next_k = 0, 1
        pending: deque[tuple[int, PageStream]] = deque()
        last = False
        while True:
            # With the bulk pass, page 1 is the rest of the export: no page is asked after it
            # unless it turns out to be a page (too few rows left for the pass).
            while (
                not last and len(pending) < self._width and (next_k <= 1 or self._bulk_sql is None)
            ):
                pending.append((next_k, self._ask(next_k)))
                next_k += 1
            piece = await stream.take()
            if piece is not None:
                if piece.data or piece.rows:
                    yield piece
                continue
            if stream.beyond or stream.bulk or (stream.rows or 0) < self._starts.size(stream_k):
                # Pages after the last end without a query (their start is the end).
                last = True
                pending.clear()
            self._tasks = [t for t in self._tasks if not t.done()]
            if not pending:
                return
            stream_k, stream = pending.popleft()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        if self._joining is not None:
            # A helper still connecting is waited for, not cancelled: a cancelled connection
            # attempt sends PostgreSQL a cancel request, which crashes PgBouncer 1.18.
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self._joining, HELPER_JOIN_SECONDS)
        await _roll_back(self._conn, self._transaction)
        for conn, transaction in self._helper_conns:
            await _roll_back(conn, transaction)
            assert self._helpers is not None
            with contextlib.suppress(Exception):
                await self._helpers.release(conn)


async def _roll_back(conn: asyncpg.Connection, transaction: Any) -> None:
    try:
        await transaction.rollback()
    except DATABASE_ERRORS:
        # A query cancelled half-way leaves the connection busy or broken: it is closed
        # rather than given back as it is (the pool opens a fresh one when needed).
        with contextlib.suppress(Exception):
            conn.terminate()
