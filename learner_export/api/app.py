"""The application: create_app(settings) wires routes, the pool's lifetime and error handlers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.responses import RedirectResponse
from starlette.routing import Match, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from learner_export import __version__, db, logs
from learner_export.api import docs, exports, health, links, metrics
from learner_export.api.cors import AllowListCors
from learner_export.api.errors import add_exception_handlers
from learner_export.api.openapi import build_openapi
from learner_export.api.state import load
from learner_export.audit import AuditAllowance, AuditLog
from learner_export.auth import RoleCache, TokenVerifier
from learner_export.config import Settings
from learner_export.errors import DatabaseUnavailable
from learner_export.links import LinkSigner, parse_secrets
from learner_export.metrics import Metrics
from learner_export.slots import ExportSlots

log = logging.getLogger("learner_export.http")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestIdMiddleware:
    """Take X-Request-Id from the client when it is sane, or make one; echo it back, and log one
    line per request (the path without its query string, which may hold a signed link)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        # `cli-` marks the CLI's rows in the audit trail: no HTTP caller may take it.
        sane = _REQUEST_ID.match(given) and given[:4].lower() != "cli-"
        request_id = given if sane else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        token = logs.request_id.set(request_id)
        started = time.perf_counter()
        status = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            log.info(
                "request",
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 1),
                },
            )
            logs.request_id.reset(token)


def relative_slash_redirect(router: Router) -> ASGIApp:
    """Starlette's trailing-slash redirect, with a Location that is a path: it built an
    absolute URL from the request's Host header, which a client chooses (and the Location may
    carry a signed link). Anything else still gets the router's 404."""
    not_found = router.default

    async def default(scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        if scope["type"] == "http" and path != "/":
            other = path.rstrip("/") if path.endswith("/") else path + "/"
            for route in router.routes:
                match, _ = route.matches({**scope, "path": other})
                if match is not Match.NONE:
                    query = scope.get("query_string", b"").decode("latin-1")
                    location = scope.get("root_path", "") + other + (f"?{query}" if query else "")
                    await RedirectResponse(location, status_code=307)(scope, receive, send)
                    return
        await not_found(scope, receive, send)

    return default


async def _flush_repeated(audit: AuditLog) -> None:
    """Write the audit's repeated rows as their minutes end."""
    while True:
        await asyncio.sleep(5)
        try:
            await audit.flush()
        except Exception:
            log.exception("could not write repeated audit rows")


def create_app(settings: Settings) -> FastAPI:
    if settings.database_url is None:
        raise ValueError("create_app needs settings.database_url")
    # Needs a ≥32-character EXPORT_JWT_SECRET or a JWKS; a bad JWKS fails here, not per request.
    verifier = TokenVerifier.from_settings(settings)
    dsn = settings.database_url
    if not settings.read_database_url and (
        settings.max_concurrent + settings.reserved_connections > settings.pool_max_size
    ):
        # Each running export holds one connection: past this, they can take the ones the
        # audit trail, role lookups and /readyz need.
        log.warning(
            "EXPORT_MAX_CONCURRENT (%d) + EXPORT_RESERVED_CONNECTIONS (%d) exceed"
            " EXPORT_POOL_MAX_SIZE (%d): exports may starve the audit trail and /readyz",
            settings.max_concurrent,
            settings.reserved_connections,
            settings.pool_max_size,
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.pool = await db.create_pool(settings, dsn)
        # Export snapshots may read from a hot standby; the audit trail and role lookups always
        # use the primary.
        app.state.read_pool = (
            await db.create_pool(settings, settings.read_database_url)
            if settings.read_database_url
            else app.state.pool
        )
        app.state.metrics.watch_pool(app.state.read_pool)
        app.state.audit = AuditLog(
            app.state.pool, settings.acquire_timeout_seconds, app.state.allowance
        )
        # The contract is learned now, or on first need if the database is not there yet; a
        # database that does not offer it stops the start (ContractNotMet names what lacks).
        try:
            app.state.contract = await load(app)
        except DatabaseUnavailable:
            log.warning("database not reachable at start; the contract is read when it is")
        flusher = asyncio.create_task(_flush_repeated(app.state.audit))
        try:
            yield
        finally:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
            await app.state.audit.flush(everything=True)
            # Exports still running were cut by the server's graceful-shutdown timeout and have
            # given their connections back; terminate whatever has not within a few seconds.
            for pool in {id(p): p for p in (app.state.read_pool, app.state.pool)}.values():
                try:
                    await asyncio.wait_for(pool.close(), timeout=5)
                except TimeoutError:
                    pool.terminate()

    app = FastAPI(
        title="learner-export",
        version=__version__,
        summary="Streaming exports of learners as CSV, JSON Lines, XLSX or Parquet",
        lifespan=lifespan,
        docs_url=None,  # served by api/docs.py from packaged assets, not a CDN
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.verifier = verifier
    app.state.metrics = Metrics()
    app.state.roles = RoleCache(settings.role_cache_ttl_seconds)
    app.state.slots = ExportSlots(settings.max_concurrent, settings.max_concurrent_per_user)
    app.state.allowance = AuditAllowance(settings.refusals_per_minute)
    app.state.contract = None
    app.state.contract_lock = asyncio.Lock()
    link_secrets = parse_secrets(settings.link_secrets.get_secret_value())
    app.state.links = LinkSigner(link_secrets) if link_secrets else None
    app.router.redirect_slashes = False
    app.router.default = relative_slash_redirect(app.router)
    add_exception_handlers(app)
    app.include_router(health.router)
    app.include_router(exports.router)
    app.include_router(links.router)
    app.include_router(metrics.router)
    app.include_router(docs.router)
    app.add_middleware(AllowListCors, origins=settings.cors_origin_list)
    app.add_middleware(RequestIdMiddleware)
    app.openapi = lambda: build_openapi(app)  # type: ignore[method-assign]
    return app
