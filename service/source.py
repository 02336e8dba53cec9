"""Export rows as keyset pages of get_learner_export_batch(), inside one read-only snapshot.

One export may read with more than one connection: the first exports its snapshot
(`pg_export_snapshot()`), helpers import it, and each reads whole pages, so that PostgreSQL
works on as many cores as there are connections while the pages still come out in key order.
Page k starts after the last row of page k-1; those keys are found ahead of the pages by
learner_export_page_ends(), a walk of the keyset index, so that page k can be read before page
k-1 has arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import asyncpg

from service.columns import CURSOR_COLUMN, KEY_COLUMNS, Column
from service.config import Settings
from service.copy_select import CopySpec
from service.cursor import encode_cursor
from service.params import ExportParams

log = logging.getLogger("learner_export.source")

Row = Sequence[Any]
Key = tuple[datetime, str]

# Page starts found per walk of the keyset (one walk reads this many pages' keys).
PAGES_PER_WALK = 16

# How long close() waits for a helper connection that is still joining.
HELPER_JOIN_SECONDS = 10.0

_SNAPSHOT_ID = re.compile(r"[0-9A-F]+-[0-9A-F]+-[0-9]+")

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
    " set_config('learner_export.page_size', $8::integer::text, true)"
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


@dataclass(frozen=True, slots=True)
class CopiedPage:
    """A page as PostgreSQL's COPY wrote it (service.copy_select): lines ending in LF."""

    data: bytes
    rows: int

    def __len__(self) -> int:
        return self.rows


Page = Sequence[Row] | CopiedPage


@dataclass(frozen=True, slots=True)
class PageQuery:
    """The page query for one column selection; key columns are appended when not selected.

    With `copy` (service.copy_select) pages are written by COPY instead of read as rows.
    """

    sql: str
    width: int
    selected: int
    key_index: tuple[int, int]
    copy_sql: str | None
    copy_options: dict[str, str]

    @classmethod
    def for_params(cls, params: ExportParams, copy: CopySpec | None = None) -> PageQuery:
        names = [c.name for c in params.columns]
        selected = names + [k for k in KEY_COLUMNS if k not in names]
        # Names come from the allow-list in service.columns, never from the request.
        columns = ", ".join(f'"{n}"' for n in selected)
        sql = (f"SELECT {columns} FROM public.get_learner_export_batch({_FILTER_ARGS},"
               " $6::timestamptz, $7::uuid, $8::integer)")
        copy_sql = None
        if copy is not None:
            copy_sql = (f"SELECT {copy.select} FROM public.get_learner_export_batch("
                        f"{_COPY_ARGS}) AS r")
        key_index = (selected.index(KEY_COLUMNS[0]), selected.index(KEY_COLUMNS[1]))
        return cls(sql, len(names), len(selected), key_index, copy_sql,
                   copy.options if copy is not None else {})


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

    def __init__(self, after: Key | None, first_size: int, size: int, limit: int | None
                 ) -> None:
        self._starts: list[Key | None] = [after]
        self._first_size, self._size, self._limit = first_size, size, limit
        self._complete = False
        self._lock = asyncio.Lock()

    def size(self, k: int) -> int:
        nominal = self._first_size if k == 0 else self._size
        if self._limit is None:
            return nominal
        offset = 0 if k == 0 else self._first_size + (k - 1) * self._size
        return max(0, min(nominal, self._limit - offset))

    async def start(self, k: int, walk: Callable[[Key | None, int, int], Awaitable[list[Key]]]
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


class LearnerExport:
    """One export: a REPEATABLE READ, READ ONLY snapshot read page by page.

    Every page is read as `caller` (a profile id), whose scope the database applies.
    `open()` starts the snapshot, resolves the caller's scope and fetches the first page, so
    that anything that can fail early (a refusal included) fails before a response starts.
    `batches()` then yields pages, with the next pages already asked for (one per connection)
    while the current one is encoded. With `helpers`, connections are added as they can be had
    (up to `settings.connections_per_export` in all), each in the same snapshot. `close()` rolls
    back; it is safe to call at any time, more than once.
    """

    def __init__(self, conn: asyncpg.Connection, params: ExportParams, settings: Settings,
                 caller: str, *, helpers: Helpers | None = None,
                 copy: CopySpec | None = None) -> None:
        self._conn = conn
        self._caller = caller
        self.client_scope: list[str] | None = None
        self._params = params
        self._query = PageQuery.for_params(params, copy)
        self._settings = settings
        self._transaction = conn.transaction(isolation="repeatable_read", readonly=True)
        self._helpers = helpers if settings.connections_per_export > 1 else None
        self._helper_conns: list[tuple[asyncpg.Connection, Any]] = []
        self._snapshot: str | None = None
        self._starts = PageStarts(params.after, min(settings.first_page_size, settings.page_size),
                                  settings.page_size, params.limit)
        self.columns: tuple[Column, ...] = params.columns + ((CURSOR_COLUMN,) if params.cursor
                                                             else ())
        self._first: Page | None = None
        self._idle: asyncio.Queue[asyncpg.Connection] = asyncio.Queue()
        self._width = 1
        self._tasks: list[asyncio.Future[Any]] = []
        self._joining: asyncio.Future[None] | None = None
        self._closed = False
        self.rows_fetched = 0

    @property
    def copies(self) -> bool:
        """Whether pages come as COPY wrote them (CopiedPage) rather than as rows."""
        return self._query.copy_sql is not None

    @property
    def connections(self) -> int:
        """Connections reading this export so far."""
        return 1 + len(self._helper_conns)

    async def open(self) -> LearnerExport:
        await self._begin(self._conn, self._transaction)
        self.client_scope = await self._conn.fetchval(
            "SELECT public.learner_export_scope($1::uuid, $2::uuid[])", self._caller,
            self._client_ids())
        if self._helpers is not None:
            self._snapshot = await self._conn.fetchval("SELECT pg_export_snapshot()")
        self._first = await self._fetch(self._conn, self._params.after, self._starts.size(0))
        return self

    async def _begin(self, conn: asyncpg.Connection, transaction: Any,
                     snapshot: str | None = None) -> None:
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
            # What COPY's pages need to equal the encoders' bytes: UTC, shortest floats.
            " set_config('TimeZone', 'UTC', true),"
            " set_config('extra_float_digits', '1', true)",
            str(s.statement_timeout_ms), str(s.idle_in_transaction_timeout_ms),
        )

    async def count(self) -> int:
        """Rows this export will hold, counted in its own snapshot."""
        p = self._params
        after = p.after or (None, None)
        total: int = await self._conn.fetchval(
            f"SELECT public.count_learner_export({_FILTER_ARGS}, $6::timestamptz, $7::uuid)",
            self._caller, self._client_ids(), p.created_from, p.created_to, p.active, *after,
        )
        return total if p.limit is None else min(total, p.limit)

    def _filters(self) -> tuple[Any, ...]:
        p = self._params
        return (self._caller, self._client_ids(), p.created_from, p.created_to, p.active)

    async def _fetch(self, conn: asyncpg.Connection, after: Key | None, size: int) -> Page:
        cursor = after or (None, None)
        if self._query.copy_sql is not None:
            await conn.execute(_COPY_PARAMS, *self._filters(), *cursor, size)
            pieces: list[bytes] = []

            async def keep(piece: bytes) -> None:
                pieces.append(piece)

            status = await conn.copy_from_query(self._query.copy_sql, output=keep, format="csv",
                                                **self._query.copy_options)
            page: Page = CopiedPage(b"".join(pieces), int(status.rpartition(" ")[2]))
        else:
            page = await conn.fetch(self._query.sql, *self._filters(), *cursor, size)
        self.rows_fetched += len(page)
        return page

    async def _walk(self, conn: asyncpg.Connection, after: Key | None, size: int, pages: int
                    ) -> list[Key]:
        cursor = after or (None, None)
        ends = await conn.fetch(
            f"SELECT created_at, learner_id FROM public.learner_export_page_ends({_FILTER_ARGS},"
            " $6::timestamptz, $7::uuid, $8::integer, $9::integer)",
            *self._filters(), *cursor, size, pages)
        return [(r[0], r[1]) for r in ends]

    def _client_ids(self) -> list[str] | None:
        ids = self._params.client_ids
        return list(ids) if ids is not None else None

    async def _page(self, k: int) -> Page | None:
        conn = await self._idle.get()
        try:
            start = await self._starts.start(
                k, lambda after, size, pages: self._walk(conn, after, size, pages))
            if isinstance(start, _End):
                return None
            return await self._fetch(conn, start, self._starts.size(k))
        finally:
            self._idle.put_nowait(conn)

    async def _add_helpers(self) -> None:
        """Bring in helper connections, in this export's snapshot, while pages are read."""
        assert self._helpers is not None and self._snapshot is not None
        for _ in range(self._settings.connections_per_export - 1):
            conn = await self._helpers.acquire()
            if conn is None:
                return
            transaction = conn.transaction(isolation="repeatable_read", readonly=True)
            self._helper_conns.append((conn, transaction))
            try:
                await self._begin(conn, transaction, self._snapshot)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
                # The export goes on with the connections it has.
                log.warning("a helper connection could not join the export: %s", exc)
                return
            self._width += 1
            self._idle.put_nowait(conn)

    async def batches(self) -> AsyncIterator[Page]:
        if self._first is None:
            raise RuntimeError("open() the export first")
        first: Page = self._first
        self._first = []
        if not len(first):
            return
        if self._helpers is not None and len(first) == self._starts.size(0):
            self._joining = asyncio.ensure_future(self._add_helpers())
        self._idle.put_nowait(self._conn)
        pending: deque[asyncio.Future[Page | None]] = deque()
        page: Page | None = first
        k, last = 1, len(first) < self._starts.size(0)
        while True:
            while not last and len(pending) < self._width:
                task = asyncio.ensure_future(self._page(k))
                self._tasks.append(task)
                pending.append(task)
                k += 1
            if pending:
                # A step of the event loop sends the queries before the page is encoded.
                await asyncio.sleep(0)
            if page is not None and len(page):
                yield self._shape(page)
            if not pending:
                return
            page = await pending.popleft()
            if page is None or len(page) < self._starts.size(k - len(pending) - 1):
                last = True
            self._tasks = [t for t in self._tasks if not t.done()]

    def _shape(self, page: Page) -> Page:
        """The page as the encoder wants it: the chosen columns, and the cursor if asked."""
        if isinstance(page, CopiedPage):
            return page
        width = self._query.width
        if self._params.cursor:
            k1, k2 = self._query.key_index
            return [(*r[:width], encode_cursor(r[k1], r[k2])) for r in page]
        if self._query.selected > width:
            return [r[:width] for r in page]
        return page

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
    except (asyncpg.InterfaceError, asyncpg.InternalClientError, asyncpg.PostgresError,
            OSError):
        # A query cancelled half-way leaves the connection busy or broken: it is closed
        # rather than given back as it is (the pool opens a fresh one when needed).
        with contextlib.suppress(Exception):
            conn.terminate()
