"""Liveness and readiness."""

from __future__ import annotations

import asyncpg
from fastapi import APIRouter, Request
from starlette.responses import JSONResponse

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="The database answers",
            responses={503: {"description": "Not ready"}})
async def readyz(request: Request) -> JSONResponse:
    timeout = request.app.state.settings.acquire_timeout_seconds
    try:
        for pool in (request.app.state.pool, request.app.state.read_pool):
            async with pool.acquire(timeout=timeout) as conn:
                await conn.fetchval("SELECT 1", timeout=timeout)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return JSONResponse({"status": "not ready", "detail": type(exc).__name__},
                            status_code=503, headers={"Retry-After": "5"})
    return JSONResponse({"status": "ready"})
