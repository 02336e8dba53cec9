"""One error base, one status table, one place that registers the handlers."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

from service.api.browser import error_page, wants_html

log = logging.getLogger("learner_export.errors")


class ErrorBody(BaseModel):
    """Every error's body: a stable code, and what is wrong (a list of problems for 400)."""

    error: str
    detail: Any


class ExportError(Exception):
    """An error with a status code and a JSON body that tells the client what is wrong."""

    status_code = 500
    code = "internal_error"

    def __init__(self, detail: Any, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = dict(headers or {})


class InvalidParameter(ExportError, ValueError):
    status_code = 400
    code = "invalid_parameter"


class Unauthorized(ExportError):
    status_code = 401
    code = "unauthorized"

    def __init__(self, detail: Any) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer realm="learner-export"'})


class Forbidden(ExportError):
    status_code = 403
    code = "forbidden"


class TooManyExports(ExportError):
    status_code = 429
    code = "too_many_exports"

    def __init__(self, detail: Any, retry_after: int) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after)})


class DatabaseUnavailable(ExportError):
    status_code = 503
    code = "database_unavailable"

    def __init__(self, detail: Any) -> None:
        super().__init__(detail, headers={"Retry-After": "5"})


HTTP_CODES: dict[int, str] = {
    404: "not_found",
    405: "method_not_allowed",
}


def error_response(status: int, code: str, detail: Any, headers: Mapping[str, str] | None = None
                   ) -> JSONResponse:
    return JSONResponse(
        {"error": code, "detail": detail},
        status_code=status,
        headers={"Cache-Control": "no-store", **(headers or {})},
    )


def add_exception_handlers(app: FastAPI) -> None:
    """Make every error a JSON body `{"error": ..., "detail": ...}`, never a stack trace."""

    async def on_export_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ExportError)
        if wants_html(request):  # a signed link opened in a browser: a page, not JSON
            return error_page(exc.status_code, exc.code, exc.detail, exc.headers)
        return error_response(exc.status_code, exc.code, exc.detail, exc.headers)

    async def on_validation_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        problems = [
            {"parameter": ".".join(str(p) for p in e.get("loc", ())[1:]), "message": e.get("msg")}
            for e in exc.errors()
        ]
        return error_response(400, InvalidParameter.code, problems)

    async def on_http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = HTTP_CODES.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, exc.detail, exc.headers)

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, ExportError.code, "internal error; see the server log")

    app.add_exception_handler(ExportError, on_export_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
