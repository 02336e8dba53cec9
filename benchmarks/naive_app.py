"""The old way, kept for comparison: every row in memory, the whole CSV in memory, one response.

Run as `DATABASE_URL=... python -m uvicorn benchmarks.naive_app:app`. No authentication, no
parameters, no streaming: it is what the service replaces, not a service.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from fastapi import FastAPI, Request
from starlette.responses import JSONResponse, Response

from benchmarks.queries import EXPORT_COLUMNS, EXPORT_SQL


def create_app(dsn: str | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Read when the server starts, not when the module is imported.
        app.state.pool = await asyncpg.create_pool(
            dsn or os.environ["DATABASE_URL"], min_size=0, max_size=4
        )
        try:
            yield
        finally:
            await app.state.pool.close()

    app = FastAPI(title="naive learner export", lifespan=lifespan)

    @app.get("/readyz")
    async def readyz(request: Request) -> JSONResponse:
        await request.app.state.pool.fetchval("SELECT 1")
        return JSONResponse({"status": "ready"})

    @app.get("/v1/exports/learners")
    async def export(request: Request) -> Response:
        pool: asyncpg.Pool = request.app.state.pool
        async with pool.acquire() as conn:
            rows = await conn.fetch(EXPORT_SQL)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerow(EXPORT_COLUMNS)
        writer.writerows(rows)
        return Response(buffer.getvalue().encode(), media_type="text/csv; charset=utf-8")

    return app


app = create_app()
