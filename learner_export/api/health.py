"""Liveness and readiness."""

from __future__ import annotations

import errno
import logging

import asyncpg
from fastapi import APIRouter, Request
from starlette.responses import JSONResponse

from learner_export.api.state import contract_of
from learner_export.db.diagnose import CONNECTION_ERRORS, describe_connection_error, target_of
from learner_export.errors import ContractNotMet, DatabaseUnavailable

log = logging.getLogger("learner_export.health")
router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


def _why(exc: BaseException, pool: asyncpg.Pool, dsn: str, seconds: float) -> str:
    """What failed, in words, for the log: host and port of the database, never its password."""
    if isinstance(exc, TimeoutError):
        where = target_of(dsn).where
        if pool.get_size() >= pool.get_max_size() and pool.get_idle_size() == 0:
            return (
                f"all {pool.get_max_size()} connections to the database at {where} are "
                f"busy (none free within {seconds:g} s)"
            )
    return describe_connection_error(exc, dsn, seconds)


def _public(exc: BaseException, pool: asyncpg.Pool, seconds: float) -> str:
    """What failed, for anyone who asks (/readyz needs no token): no host, port, user or
    database name; the log has those."""
    if isinstance(exc, TimeoutError):
        if pool.get_size() >= pool.get_max_size() and pool.get_idle_size() == 0:
            return f"all {pool.get_max_size()} database connections are busy"
        return f"the database did not answer within {seconds:g} s"
    if isinstance(
        exc, asyncpg.InvalidPasswordError | asyncpg.InvalidAuthorizationSpecificationError
    ):
        return "the database refused the service's credentials"
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return "the configured database does not exist"
    # asyncio's "Multiple exceptions: [Errno 111] ..." (every address refused) has no errno.
    refused = f"[Errno {errno.ECONNREFUSED}]"
    if isinstance(exc, OSError) and (exc.errno == errno.ECONNREFUSED or refused in str(exc)):
        return "the database refused the connection"
    return "the database cannot be reached"


@router.get(
    "/readyz",
    summary="The database answers",
    responses={503: {"description": "Not ready: `detail` says what failed"}},
)
async def readyz(request: Request) -> JSONResponse:
    state = request.app.state
    seconds = state.settings.acquire_timeout_seconds
    pools = [(state.pool, state.settings.database_url)]
    if state.read_pool is not state.pool:
        pools.append((state.read_pool, state.settings.read_database_url))
    for pool, dsn in pools:
        try:
            async with pool.acquire(timeout=seconds) as conn:
                await conn.fetchval("SELECT 1", timeout=seconds)
        except (*CONNECTION_ERRORS, asyncpg.PostgresError) as exc:
            log.warning("not ready: %s", _why(exc, pool, dsn, seconds))
            return JSONResponse(
                {"status": "not ready", "detail": _public(exc, pool, seconds)},
                status_code=503,
                headers={"Retry-After": "5"},
            )
    # Ready means an export can run: the database offers a contract this service can serve
    # (learned again here when `db migrate` changed it).
    try:
        await contract_of(request.app)
    except ContractNotMet as exc:
        problems = exc.detail if isinstance(exc.detail, list) else [exc.detail]
        return JSONResponse(
            {
                "status": "not ready",
                "detail": "the database does not offer the export contract: "
                + "; ".join(str(p) for p in problems),
            },
            status_code=503,
        )
    except DatabaseUnavailable as exc:
        return JSONResponse(
            {"status": "not ready", "detail": str(exc.detail)},
            status_code=503,
            headers={"Retry-After": "5"},
        )
    return JSONResponse({"status": "ready"})
