"""Export rows as keyset pages of get_learner_export_batch(), inside one read-only snapshot."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from service.columns import CURSOR_COLUMN, KEY_COLUMNS, Column
from service.config import Settings
from service.cursor import encode_cursor
from service.params import ExportParams

Row = Sequence[Any]


@dataclass(frozen=True, slots=True)
class PageQuery:
    """The page query for one column selection; key columns are appended when not selected."""

    sql: str
    width: int
    selected: int
    key_index: tuple[int, int]

    @classmethod
    def for_params(cls, params: ExportParams) -> PageQuery:
        names = [c.name for c in params.columns]
        selected = names + [k for k in KEY_COLUMNS if k not in names]
        # Names come from the allow-list in service.columns, never from the request.
        columns = ", ".join(f'"{n}"' for n in selected)
        sql = (
            f"SELECT {columns} FROM public.get_learner_export_batch("
            "$1::uuid, $2::uuid[], $3::timestamptz, $4::timestamptz, $5::boolean,"
            " $6::timestamptz, $7::uuid, $8::integer)"
        )
        key_index = (selected.index(KEY_COLUMNS[0]), selected.index(KEY_COLUMNS[1]))
        return cls(sql, len(names), len(selected), key_index)


@dataclass(frozen=True, slots=True)
class _Page:
    rows: list[asyncpg.Record]
    requested: int


class LearnerExport:
    """One export on one connection: a REPEATABLE READ, READ ONLY transaction read page by page.

    Every page is read as `caller` (a profile id), whose scope the database applies.
    `open()` starts the snapshot, resolves the caller's scope and fetches the first page, so
    that anything that can fail early (a refusal included) fails before a response starts.
    `batches()` then yields pages, asking the database for the next page before handing out the
    current one, so that PostgreSQL works while rows are encoded. `close()` rolls back; it is
    safe to call at any time, more than once.
    """

    def __init__(self, conn: asyncpg.Connection, params: ExportParams, settings: Settings,
                 caller: str) -> None:
        self._conn = conn
        self._caller = caller
        self.client_scope: list[str] | None = None
        self._params = params
        self._query = PageQuery.for_params(params)
        self._page_size = settings.page_size
        self._first_page_size = min(settings.first_page_size, settings.page_size)
        self._settings = settings
        self._transaction = conn.transaction(isolation="repeatable_read", readonly=True)
        self._remaining = params.limit
        self.columns: tuple[Column, ...] = params.columns + ((CURSOR_COLUMN,) if params.cursor
                                                             else ())
        self._first: _Page | None = None
        self._prefetch: asyncio.Task[_Page] | None = None
        self._closed = False
        self.rows_fetched = 0

    async def open(self) -> LearnerExport:
        await self._transaction.start()
        s = self._settings
        await self._conn.execute(
            "SELECT set_config('statement_timeout', $1, true),"
            " set_config('idle_in_transaction_session_timeout', $2, true),"
            # Parallel plans per page halve the throughput of keyset paging (PERF-NOTES).
            " set_config('max_parallel_workers_per_gather', '0', true),"
            " set_config('jit', 'off', true)",
            str(s.statement_timeout_ms), str(s.idle_in_transaction_timeout_ms),
        )
        self.client_scope = await self._conn.fetchval(
            "SELECT public.learner_export_scope($1::uuid, $2::uuid[])", self._caller,
            self._client_ids())
        self._first = await self._fetch(None, self._first_page_size)
        return self

    async def count(self) -> int:
        """Rows this export will hold, counted in its own snapshot."""
        p = self._params
        after = p.after or (None, None)
        total: int = await self._conn.fetchval(
            "SELECT public.count_learner_export($1::uuid, $2::uuid[], $3::timestamptz,"
            " $4::timestamptz, $5::boolean, $6::timestamptz, $7::uuid)",
            self._caller, self._client_ids(), p.created_from, p.created_to, p.active, *after,
        )
        return total if p.limit is None else min(total, p.limit)

    async def _fetch(self, after: Row | None, size: int) -> _Page:
        if self._remaining is not None:
            size = min(size, self._remaining)
        if size <= 0:
            return _Page([], 0)
        p = self._params
        k1, k2 = self._query.key_index
        cursor = (after[k1], after[k2]) if after is not None else p.after or (None, None)
        rows: list[asyncpg.Record] = await self._conn.fetch(
            self._query.sql, self._caller, self._client_ids(), p.created_from, p.created_to,
            p.active, *cursor, size,
        )
        if self._remaining is not None:
            self._remaining -= len(rows)
        self.rows_fetched += len(rows)
        return _Page(rows, size)

    def _client_ids(self) -> list[str] | None:
        ids = self._params.client_ids
        return list(ids) if ids is not None else None

    def _more_after(self, page: _Page) -> bool:
        full = len(page.rows) == page.requested
        return full and (self._remaining is None or self._remaining > 0)

    async def batches(self) -> AsyncIterator[Sequence[Row]]:
        if self._first is None:
            raise RuntimeError("open() the export first")
        page, self._first = self._first, _Page([], 0)
        while page.rows:
            if self._more_after(page):
                self._prefetch = asyncio.ensure_future(
                    self._fetch(page.rows[-1], self._page_size))
                # One step of the event loop sends the query before the page is encoded.
                await asyncio.sleep(0)
            yield self._shape(page.rows)
            if self._prefetch is None:
                return
            page = await self._prefetch
            self._prefetch = None

    def _shape(self, records: list[asyncpg.Record]) -> Sequence[Row]:
        """The page as the encoder wants it: the chosen columns, and the cursor if asked."""
        width = self._query.width
        if self._params.cursor:
            k1, k2 = self._query.key_index
            return [(*r[:width], encode_cursor(r[k1], r[k2])) for r in records]
        if self._query.selected > width:
            return [r[:width] for r in records]
        return records

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._prefetch is not None:
            self._prefetch.cancel()
            with contextlib.suppress(BaseException):
                await self._prefetch
        try:
            await self._transaction.rollback()
        except (asyncpg.InterfaceError, asyncpg.InternalClientError, asyncpg.PostgresError,
                OSError):
            # A query cancelled half-way leaves the connection busy or broken: it is closed
            # rather than given back as it is (the pool opens a fresh one when needed).
            with contextlib.suppress(Exception):
                self._conn.terminate()
