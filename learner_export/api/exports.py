"""GET (and HEAD) /v1/exports/learners: the HTTP face of an export (learner_export.lifecycle)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import anyio
from fastapi import APIRouter, FastAPI, Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Message, Receive, Scope, Send

from learner_export.api.errors import responses
from learner_export.api.state import contract_of, services_of
from learner_export.audit import AuditLog, Outcome, RefusalLimiter, first_throttle, query_filters
from learner_export.auth import bearer_token
from learner_export.compression import negotiate
from learner_export.config import Settings
from learner_export.connections import PoolConnections
from learner_export.errors import (
    DATABASE_ERRORS,
    ERRORS,
    ContractNotMet,
    DatabaseUnavailable,
    ExportError,
    Forbidden,
    InvalidParameter,
    TooManyExports,
    Unauthorized,
)
from learner_export.filenames import content_disposition, export_filename
from learner_export.formats import FORMATS
from learner_export.lifecycle import Chunk, Export
from learner_export.params import ExportParams, parse_export_params

log = logging.getLogger("learner_export.exports")
router = APIRouter(tags=["exports"])

EXPORT_ERRORS = responses(
    InvalidParameter, Unauthorized, Forbidden, TooManyExports, DatabaseUnavailable, ContractNotMet
)

STANDBY_ADVICE = (
    "raise max_standby_streaming_delay, or turn on hot_standby_feedback, on the standby"
)


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
    looks complete. A disconnect cancels the stream; the snapshot is then rolled back here.
    """

    def __init__(
        self, export: Export, chunks: AsyncIterator[Chunk], settings: Settings, **kwargs: Any
    ) -> None:
        self._export = export
        self._chunks = chunks
        self._settings = settings
        self.outcome = Outcome.CLIENT_DISCONNECTED
        self._detail: str | None = None
        super().__init__(self._body(), **kwargs)

    async def _body(self) -> AsyncIterator[Chunk]:
        try:
            async for chunk in self._chunks:
                yield chunk
        except Exception as exc:
            self.outcome, self._detail = Outcome.FAILED, type(exc).__name__
            metrics = self._export.services.metrics
            if metrics is not None:
                metrics.failures.labels("stream_failed").inc()
            log.exception(
                "export failed after %d rows; cutting the response%s",
                self._export.rows_sent,
                standby_advice(exc, self._settings.read_database_url is not None),
            )
            raise
        self.outcome = Outcome.COMPLETED

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
            self.outcome, self._detail = Outcome.TIMED_OUT, "stalled or ran too long"
            metrics = self._export.services.metrics
            if metrics is not None:
                metrics.failures.labels("timed_out").inc()
            log.warning("export stalled or ran too long; cutting the response")
            raise
        except anyio.get_cancelled_exc_class():
            self.outcome, self._detail = Outcome.CANCELLED, "the server is shutting down"
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await self.body_iterator.aclose()  # type: ignore[attr-defined]
                await self._export.finish(self.outcome, self._detail)


async def refused(
    request: Request,
    caller: str,
    exc: ExportError,
    *,
    via_link: bool,
    fmt: str | None,
    filters: dict[str, Any],
    what: str = "export",
) -> None:
    """Count a refusal toward the caller's limit and record it (an export that never started)."""
    state = request.app.state
    limiter: RefusalLimiter = state.refusals
    limiter.note(caller)
    kind = ERRORS[type(exc)]
    audit: AuditLog = state.audit
    await audit.refused(
        caller=caller,
        request_id=request.state.request_id,
        fmt=fmt,
        filters=filters,
        via_link=via_link,
        detail=f"{what} refused: {kind.status} {kind.code}: {exc.detail}",
    )


async def throttle(
    request: Request,
    caller: str,
    query: Sequence[tuple[str, str]],
    *,
    via_link: bool,
    what: str = "export",
) -> None:
    """429 for a caller refused too often this minute; only the first such 429 is recorded."""
    limiter: RefusalLimiter = request.app.state.refusals
    try:
        limiter.check(caller)
    except TooManyExports as exc:
        if first_throttle(exc):
            audit: AuditLog = request.app.state.audit
            await audit.refused(
                caller=caller,
                request_id=request.state.request_id,
                fmt=None,
                filters=query_filters(query),
                via_link=via_link,
                detail=f"{what} refused: 429 slowed: {exc.detail}",
            )
        raise


def _wants_count(prefer: str | None) -> bool:
    return bool(prefer) and "count=exact" in (prefer or "").replace(" ", "").split(",")


async def respond(
    request: Request, caller: str, params: ExportParams, *, via_link: bool
) -> Response:
    """From an authenticated caller and valid parameters to the response: limits, role, audit,
    snapshot and first page, all before the first byte."""
    app: FastAPI = request.app
    state = app.state
    settings: Settings = state.settings
    services = services_of(app)
    try:
        slot = state.slots.take(caller)
    except TooManyExports as exc:
        await refused(
            request, caller, exc, via_link=via_link, fmt=params.format, filters=params.filters()
        )
        raise
    try:
        export = await Export.start(
            services,
            params,
            caller,
            PoolConnections(state.read_pool, settings.acquire_timeout_seconds),
            request_id=request.state.request_id,
            via_link=via_link,
            on_end=slot.release,
        )
    except BaseException as exc:
        slot.release()
        if isinstance(exc, Forbidden):  # recorded by the lifecycle; counted here
            limiter: RefusalLimiter = state.refusals
            limiter.note(caller)
        raise
    fmt = export.format
    scope = export.client_scope
    headers = {
        "Content-Disposition": content_disposition(
            *export_filename(
                fmt.extension,
                client_ids=params.client_ids,
                created_from=params.created_from,
                created_to=params.created_to,
                active=params.active,
                now=datetime.now(UTC),
            )
        ),
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        "X-Export-Id": export.entry.id,
        "X-Export-Client-Scope": "all" if scope is None else ",".join(scope),
        "Vary": "Accept-Encoding",
    }
    try:
        if _wants_count(request.headers.get("prefer")):
            total = await export.count()
            headers["X-Total-Count"] = str(total)
            headers["Content-Range"] = f"0-{total - 1}/{total}" if total else "*/0"
            headers["Preference-Applied"] = "count=exact"
    except BaseException as exc:
        await export.finish(Outcome.FAILED, type(exc).__name__)
        raise
    if request.method == "HEAD":
        await export.finish(Outcome.COMPLETED, "HEAD: headers only")
        return Response(status_code=200, headers=headers, media_type=fmt.media_type)
    codec = negotiate(request.headers.get("accept-encoding")) if fmt.compressible else None
    if codec is not None:
        headers["Content-Encoding"] = codec.name
    chunks = export.chunks(settings.chunk_bytes, codec.make() if codec else None)
    return ExportResponse(export, chunks, settings, media_type=fmt.media_type, headers=headers)


@router.head(
    "/v1/exports/learners",
    summary="The export's headers only (with Prefer: count=exact, its row count)",
    responses={
        200: {"description": "The headers GET would answer, without the body"},
        **EXPORT_ERRORS,
    },
    openapi_extra={"x-export-parameters": True},
)
@router.get(
    "/v1/exports/learners",
    summary="Stream every learner as " + ", ".join(f.name for f in FORMATS.values()),
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The export, streamed as it is read (chunked transfer); HEAD "
            "answers its headers only",
            "content": {f.media_type: {} for f in FORMATS.values()},
        },
        **EXPORT_ERRORS,
    },
    # Parameters come from learner_export.params.PARAMS (learner_export.api.openapi adds them).
    openapi_extra={"x-export-parameters": True},
)
async def export_learners(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    caller = request.app.state.verifier.verify(bearer_token(request.headers.get("authorization")))
    query = request.query_params.multi_items()
    await throttle(request, caller, query, via_link=False)
    contract, time_zones = await contract_of(request.app)
    try:
        params = parse_export_params(
            query, contract, time_zones=time_zones, max_limit=settings.max_limit
        )
    except InvalidParameter as exc:
        await refused(request, caller, exc, via_link=False, fmt=None, filters=query_filters(query))
        raise
    return await respond(request, caller, params, via_link=False)
