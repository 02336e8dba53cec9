"""Errors as HTTP responses: every error a JSON body `{"error": ..., "detail": ...}` with the
status that learner_export.errors.ERRORS gives it, never a stack trace; and the same table as
OpenAPI's error responses."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse, Response

from learner_export.api.browser import error_page, wants_html
from learner_export.errors import (
    ERRORS,
    INTERNAL,
    ContractBreach,
    ContractChanged,
    ContractNotMet,
    DatabaseUnavailable,
    ExportError,
    Forbidden,
    InvalidParameter,
    MethodNotAllowed,
    NotFound,
    TooManyExports,
    Unauthorized,
    kind_of,
)

log = logging.getLogger("learner_export.errors")


class Problem(BaseModel):
    parameter: str
    message: str


class ErrorBody(BaseModel):
    """Every error's body: a stable code, and what is wrong."""

    error: str
    detail: str | list[str]


class InvalidParameterBody(BaseModel):
    """A 400's body: each problem with the parameter it concerns."""

    error: str
    detail: list[Problem]


def error_response(error: ExportError) -> JSONResponse:
    kind = kind_of(error)
    return JSONResponse(
        {"error": kind.code, "detail": error.detail},
        status_code=kind.status,
        headers={"Cache-Control": "no-store", **error.headers},
    )


def responses(*errors: type[ExportError]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI's description of these errors' responses, from learner_export.errors.ERRORS."""
    out: dict[int | str, dict[str, Any]] = {}
    for error in errors:
        kind = ERRORS[error]
        model = InvalidParameterBody if error is InvalidParameter else ErrorBody
        if kind.status in out:
            out[kind.status]["description"] += "; " + kind.description
        else:
            out[kind.status] = {"description": kind.description, "model": model}
    return out


_HTTP: Mapping[int, type[ExportError]] = {404: NotFound, 405: MethodNotAllowed}


def add_exception_handlers(app: FastAPI) -> None:
    async def on_export_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ExportError)
        if wants_html(request):  # a signed link opened in a browser: a page, not JSON
            kind = kind_of(exc)
            return error_page(kind.status, kind.code, exc.detail, exc.headers)
        return error_response(exc)

    async def on_validation_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return error_response(
            InvalidParameter(
                [
                    {
                        "parameter": ".".join(str(p) for p in e.get("loc", ())[1:]),
                        "message": str(e.get("msg")),
                    }
                    for e in exc.errors()
                ]
            )
        )

    async def on_http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        error = _HTTP.get(exc.status_code)
        if error is None:
            return JSONResponse(
                {"error": "http_error", "detail": exc.detail},
                status_code=exc.status_code,
                headers=exc.headers,
            )
        return error_response(error(exc.detail, headers=exc.headers))

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(
            {"error": INTERNAL.code, "detail": "internal error; see the server log"},
            status_code=INTERNAL.status,
            headers={"Cache-Control": "no-store"},
        )

    app.add_exception_handler(ExportError, on_export_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)


EXPORT_ERRORS = responses(
    InvalidParameter,
    Unauthorized,
    Forbidden,
    TooManyExports,
    DatabaseUnavailable,
    ContractBreach,
    ContractChanged,
    ContractNotMet,
    ContractChanged,
    ContractBreach,
)
