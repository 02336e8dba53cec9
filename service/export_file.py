"""One export straight from the database into a file or stdout, without HTTP.

The HTTP export's pipeline (snapshot, keyset pages, encoder, chunks) and its rules: the pages are
read as a caller whose scope the database applies, and the attempt is written to the audit trail.
A file is written beside its target and renamed only once complete.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO, TextIO

import asyncpg

from service import db
from service.atomic import atomic_file
from service.audit import AuditEntry, AuditLog
from service.auth import Caller, caller_role, require_export_role
from service.config import Settings
from service.copy_select import copy_select
from service.errors import Forbidden
from service.formats import FORMATS, EncodeOptions
from service.helpers import ConnectHelpers
from service.params import ExportParams
from service.progress import Progress
from service.source import LearnerExport, Page
from service.stream import encode_stream


class Refused(Exception):
    """The caller may not make this export (no profile, a role that may not export, or clients
    outside their scope)."""


async def _counted(batches: AsyncIterator[Page], progress: Progress) -> AsyncIterator[Page]:
    async for batch in batches:
        progress.advance(rows=len(batch))
        yield batch


def _cancel_on_sigterm() -> None:
    """SIGTERM cancels the export like Ctrl-C does, so that its snapshot is rolled back, its
    audit row completed and its temporary file removed."""
    task = asyncio.current_task()
    if task is not None:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)


class _Run:
    def __init__(self, settings: Settings, params: ExportParams, caller: str,
                 audit: AuditLog) -> None:
        self.settings, self.params, self.caller, self.audit = settings, params, caller, audit
        self.request_id = f"cli-{uuid.uuid4().hex}"
        self.export: LearnerExport | None = None
        self.written = 0

    async def authorize(self, pool: asyncpg.Pool) -> AuditEntry:
        """Refuse early, as the service does, and record the attempt."""
        role = await caller_role(pool, self.caller, self.settings)
        try:
            require_export_role(Caller(self.caller, role))
        except Forbidden as exc:
            await self.audit.denied(caller=self.caller, role=role, request_id=self.request_id,
                                    params=self.params, detail=str(exc.detail), via_link=False)
            raise Refused(str(exc.detail)) from None
        return await self.audit.start(caller=self.caller, role=str(role),
                                      request_id=self.request_id, params=self.params,
                                      via_link=False)

    async def stream(self, dsn: str, entry: AuditEntry, out: BinaryIO,
                     progress_stream: TextIO | None) -> None:
        settings, params = self.settings, self.params
        conn = await db.connect(settings, dsn)
        try:
            self.export = export = LearnerExport(conn, params, settings, self.caller,
                                                 helpers=ConnectHelpers(settings, dsn),
                                                 copy=copy_select(params))
            progress = Progress(None)
            try:
                try:
                    await export.open()
                except asyncpg.InsufficientPrivilegeError as exc:
                    detail = exc.args[0] if exc.args else "not allowed"
                    await self.audit.denied(caller=self.caller, role=None,
                                            request_id=self.request_id, params=params,
                                            detail=detail, via_link=False, entry=entry)
                    raise Refused(detail) from None
                # Counted in the export's own snapshot, so the bar ends exactly at its total.
                total = await export.count() if progress_stream is not None else None
                progress = Progress(progress_stream, total=total)
                encoder = FORMATS[params.format].make_encoder(
                    export.columns,
                    EncodeOptions(bom=params.bom, escape_formulas=params.escape_formulas,
                                  sheet_rows=settings.xlsx_sheet_rows))
                async for chunk in encode_stream(_counted(export.batches(), progress), encoder,
                                                 settings.chunk_bytes):
                    out.write(chunk)
                    self.written += len(chunk)
                    progress.advance(nbytes=len(chunk))
                out.flush()
            except BaseException:
                progress.abandon()
                raise
            finally:
                await export.close()
            progress.finish()
        finally:
            try:
                await conn.close(timeout=5)
            except Exception:
                conn.terminate()

    async def finish(self, entry: AuditEntry, outcome: str, started: float,
                     detail: str | None) -> None:
        export = self.export
        await self.audit.finish(
            entry, outcome=outcome, rows=export.rows_fetched if export else 0,
            bytes_sent=self.written, duration_ms=round((time.perf_counter() - started) * 1000),
            client_scope=export.client_scope if export else None, detail=detail)


async def export_to_file(settings: Settings, params: ExportParams, caller: str,
                         output: Path | None, progress_stream: TextIO | None) -> None:
    """Export into output (complete or not at all), or to stdout when output is None.

    Raises Refused when the caller may not export; anything else that goes wrong propagates,
    KeyboardInterrupt and cancellation included, after the audit row is completed.
    """
    _cancel_on_sigterm()
    started = time.perf_counter()
    if settings.database_url is None:
        raise ValueError("settings.database_url is not set")
    # Roles and the audit trail on the primary; the snapshot where the service reads its own.
    read_dsn = settings.read_database_url or settings.database_url
    pool = await db.create_pool(settings.model_copy(update={"pool_max_size": 1}),
                                settings.database_url)
    try:
        run = _Run(settings, params, caller, AuditLog(pool, settings.acquire_timeout_seconds))
        entry = await run.authorize(pool)
        outcome: str | None = "failed"
        detail = None
        try:
            with contextlib.ExitStack() as files:
                out: BinaryIO = (files.enter_context(atomic_file(output)) if output is not None
                                 else sys.stdout.buffer)
                await run.stream(read_dsn, entry, out, progress_stream)
            outcome = "completed"
        except Refused:
            outcome = None  # recorded as denied
            raise
        except (KeyboardInterrupt, asyncio.CancelledError):
            outcome = "cancelled"
            raise
        except BaseException as exc:
            detail = type(exc).__name__
            raise
        finally:
            if outcome is not None:
                await run.finish(entry, outcome, started, detail)
    finally:
        await pool.close()
