"""An export as an HTTP response: its headers, compression, and a stream that gives the export
back (slot, snapshot, connections) when the client stops reading."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import anyio
from fastapi import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Message, Receive, Scope, Send

from learner_export.api.state import services_of
from learner_export.compression import negotiate
from learner_export.config import Settings
from learner_export.connections import PoolConnections
from learner_export.errors import DATABASE_ERRORS
from learner_export.filenames import content_disposition, export_filename
from learner_export.lifecycle import Chunk, Disconnected, Export
from learner_export.params import ExportParams

log = logging.getLogger("learner_export.exports")

STANDBY_ADVICE = (
    "raise max_standby_streaming_delay, or turn on hot_standby_feedback, on the standby"
)
# More than the sender's and the receiver's socket buffers hold at most (Linux's default
# tcp_wmem and tcp_rmem maxima: 4 MiB and 6 MiB): past it, the client has read something.
READING_PROOF_BYTES = 16 * 1024 * 1024


def standby_advice(exc: BaseException, on_standby: bool) -> str:
    """What to tell the operator when a hot standby may have cancelled the export's snapshot.

    A conflict during a page query comes as an error saying so; one while the export waits on
    a slow client ends the session with a message asyncpg drops, leaving a closed connection.
    """
    if "conflict with recovery" in str(exc):
        return f"; the standby cancelled it for a replication conflict: {STANDBY_ADVICE}"
    # A session the standby ended surfaces as a lost connection, or as the use of one that is
    # gone (asyncpg's InterfaceError): any database failure, then.
    if on_standby and isinstance(exc, DATABASE_ERRORS):
        return (
            "; it read from a standby, where a replication conflict ends such sessions:"
            f" if the standby's log says so, {STANDBY_ADVICE}"
        )
    return ""


class ExportResponse(StreamingResponse):
    """A streaming response that always ends its export, however the stream ends.

    A failure after the headers went out is logged and re-raised, so the server closes the
    connection without the final chunk: clients see an incomplete transfer, never a file that
    looks complete. A client that does not read is cut after EXPORT_FIRST_STALL_SECONDS until
    it has been seen reading, EXPORT_STALL_TIMEOUT_SECONDS after.
    """

    def __init__(
        self, export: Export, chunks: AsyncIterator[Chunk], settings: Settings, **kwargs: Any
    ) -> None:
        self._export = export
        self._chunks = chunks
        self._settings = settings
        self._ended: BaseException | None = Disconnected()
        super().__init__(self._body(), **kwargs)

    async def _body(self) -> AsyncIterator[Chunk]:
        try:
            async for chunk in self._chunks:
                yield chunk
        except Exception as exc:
            self._ended = exc
            metrics = self._export.services.metrics
            if metrics is not None:
                metrics.failures.labels("stream_failed").inc()
            log.exception(
                "export failed after %d rows; cutting the response%s",
                self._export.rows_sent,
                standby_advice(exc, self._settings.read_database_url is not None),
            )
            raise
        self._ended = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        settings = self._settings
        sent = 0

        async def send_or_give_up(message: Message) -> None:
            # A client that stops reading blocks this send (TCP backpressure), with the
            # snapshot open: past the stall limit the export ends, cut. Until more has gone out
            # than the kernels' buffers can hold unread, the client has not been seen reading:
            # it gets the shorter limit, so that unread downloads give their slots back soon.
            nonlocal sent
            reading = sent > READING_PROOF_BYTES
            limit = settings.stall_timeout_seconds if reading else settings.first_stall_seconds
            with anyio.fail_after(limit):
                await send(message)
            sent += len(message.get("body", b""))

        try:
            with anyio.fail_after(settings.max_duration_seconds):
                await super().__call__(scope, receive, send_or_give_up)
        except TimeoutError as exc:
            self._ended = exc
            metrics = self._export.services.metrics
            if metrics is not None:
                metrics.failures.labels("timed_out").inc()
            log.warning("export stalled or ran too long; cutting the response")
            raise
        except anyio.get_cancelled_exc_class():
            self._ended = asyncio.CancelledError("the server is shutting down")
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await self.body_iterator.aclose()  # type: ignore[attr-defined]
                await self._export.end(self._ended)


def _wants_count(prefer: str | None) -> bool:
    return "count=exact" in (prefer or "").replace(" ", "").split(",")


async def respond(
    request: Request,
    caller: str,
    params: Callable[[], ExportParams],
    query: list[tuple[str, str]],
    *,
    via_link: bool,
) -> Response:
    """The export's response: the lifecycle does everything before the first byte (or refuses,
    raising the error this face answers); this adds the headers and the stream."""
    settings: Settings = request.app.state.settings
    export = await Export.open(
        services_of(request.app),
        caller,
        params,
        PoolConnections(
            request.app.state.read_pool,
            settings.acquire_timeout_seconds,
            reserve=settings.reserved_connections,
        ),
        request_id=request.state.request_id,
        via_link=via_link,
        query=query,
        count=_wants_count(request.headers.get("prefer")),
        head=request.method == "HEAD",
    )
    fmt, scope, p = export.format, export.client_scope, export.params
    ascii_name, full_name = export_filename(
        fmt.extension,
        client_ids=p.client_ids,
        created_from=p.created_from,
        created_to=p.created_to,
        active=p.active,
        now=datetime.now(UTC),
        unit=p.words.unit,
        units=p.words.units,
    )
    headers = {
        "Content-Disposition": content_disposition(ascii_name, full_name),
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        "X-Export-Id": export.entry.id,
        "X-Export-Client-Scope": "all" if scope is None else ",".join(scope),
        # What the ids of the scope are, in the operator's words (docs/contract.md).
        "X-Export-Scope-Unit": p.words.unit,
        "Vary": "Accept-Encoding",
    }
    if export.total is not None:
        total = export.total
        headers["X-Total-Count"] = str(total)
        headers["Content-Range"] = f"0-{total - 1}/{total}" if total else "*/0"
        headers["Preference-Applied"] = "count=exact"
    if export.outcome is not None:  # HEAD: ended already
        return Response(status_code=200, headers=headers, media_type=fmt.media_type)
    codec = negotiate(request.headers.get("accept-encoding")) if fmt.compressible else None
    if codec is not None:
        headers["Content-Encoding"] = codec.name
    chunks = export.chunks(settings.chunk_bytes, codec.make() if codec else None)
    return ExportResponse(export, chunks, settings, media_type=fmt.media_type, headers=headers)
