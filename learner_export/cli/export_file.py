"""The CLI's face of an export (learner_export.lifecycle): straight from the database into a file or
stdout, without HTTP. A file is written beside its target and renamed only once complete."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TextIO

from learner_export import db
from learner_export.audit import AuditLog
from learner_export.auth import RoleCache
from learner_export.cli.atomic import atomic_file
from learner_export.cli.progress import Progress
from learner_export.config import Settings
from learner_export.connections import DirectConnections
from learner_export.contract import Contract, learn
from learner_export.errors import CONNECTION_ERRORS, ExportError, database_error
from learner_export.lifecycle import Export, Services
from learner_export.params import ExportParams


@dataclass
class Sent:
    """What an export wrote to its output so far (so that a failure says whether it is cut)."""

    bytes: int = 0


def _unavailable(exc: BaseException, dsn: str, seconds: float | None) -> ExportError:
    error = database_error(exc, "connecting", dsn=dsn, seconds=seconds)
    assert error is not None  # every connection failure is classified
    return error


def _cancel_on_sigterm() -> None:
    """SIGTERM cancels the export like Ctrl-C does, so that its snapshot is rolled back, its
    audit row completed and its temporary file removed."""
    task = asyncio.current_task()
    if task is not None:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)


async def read_contract(settings: Settings) -> tuple[Contract, frozenset[str]]:
    """The contract and time zones of the database exports read from (for parsing the CLI's
    parameters as the service parses a query)."""
    dsn = settings.read_database_url or settings.database_url
    assert dsn is not None
    wait = settings.acquire_timeout_seconds
    try:
        async with asyncio.timeout(wait):
            conn = await db.connect(settings, dsn)
    except CONNECTION_ERRORS as exc:
        raise _unavailable(exc, dsn, wait) from None
    try:
        return await learn(conn)
    finally:
        await conn.close()


async def export_to_file(
    settings: Settings,
    params: ExportParams,
    caller: str,
    output: Path | None,
    progress_stream: TextIO | None,
    sent: Sent | None = None,
) -> None:
    """Export into output (complete or not at all), or to stdout when output is None.

    Raises an ExportError when the export cannot run (Forbidden for a refusal); anything that
    goes wrong later propagates, KeyboardInterrupt and cancellation included, after the audit
    row is completed.
    """
    _cancel_on_sigterm()
    if settings.database_url is None:
        raise ValueError("settings.database_url is not set")
    # Roles and the audit trail on the primary; the snapshot where the service reads its own.
    read_dsn = settings.read_database_url or settings.database_url
    try:
        pool = await db.create_pool(
            settings.model_copy(update={"pool_max_size": 1}), settings.database_url
        )
    except CONNECTION_ERRORS as exc:
        raise _unavailable(exc, settings.database_url, None) from None
    try:
        services = Services(
            settings, pool, AuditLog(pool, settings.acquire_timeout_seconds), RoleCache(0)
        )
        export = await Export.open(
            services,
            caller,
            lambda: params,
            DirectConnections(settings, read_dsn),
            request_id=f"cli-{uuid.uuid4().hex}",
            via_link=False,
            count=progress_stream is not None,
        )
        ended: BaseException | None = None
        try:
            with contextlib.ExitStack() as files:
                out: BinaryIO = (
                    files.enter_context(atomic_file(output))
                    if output is not None
                    else sys.stdout.buffer
                )
                await _write(export, out, progress_stream, sent or Sent())
        except BaseException as exc:
            ended = exc
            raise
        finally:
            await export.end(ended)
    finally:
        await pool.close()


async def _write(export: Export, out: BinaryIO, progress_stream: TextIO | None, sent: Sent) -> None:
    # Counted in the export's own snapshot, so the bar ends exactly at its total.
    progress = Progress(progress_stream, total=export.total)
    try:
        rows = 0
        async for chunk in export.chunks(export.services.settings.chunk_bytes):
            out.write(chunk)
            sent.bytes += len(chunk)
            progress.advance(rows=export.rows_sent - rows, nbytes=len(chunk))
            rows = export.rows_sent
        out.flush()
        progress.advance(rows=export.rows_sent - rows)
    except BaseException:
        progress.abandon()
        raise
    progress.finish()
