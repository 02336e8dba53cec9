"""The OpenAPI document: the export's parameters from learner_export.params.PARAMS (real types, the
formats as an enum, the contract's columns), a bearer scheme, and no FastAPI 422 (a validation
error is a 400 with learner_export.api.errors.InvalidParameterBody)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from learner_export.contract import Words
from learner_export.params import PARAMS, Param

_HEADERS = (
    ("Prefer", "`count=exact`: the row count as X-Total-Count and Content-Range"),
    ("Accept-Encoding", "zstd or gzip compress CSV and JSON Lines (not XLSX or Parquet)"),
    ("X-Request-Id", "Echoed back and written in every log line of the request"),
)


def _parameter(param: Param, columns: list[str] | None, words: Words | None) -> dict[str, Any]:
    description = param.describe(words)
    if param.name == "columns" and columns:
        description += ": " + ", ".join(f"`{c}`" for c in columns)
    schema = (
        {"type": "array", "items": param.schema, "maxItems": 1000}
        if param.repeatable
        else param.schema
    )
    return {
        "name": param.name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
        "style": "form",
        "explode": True,
    }


def query_parameters(columns: list[str] | None, words: Words | None = None) -> list[dict[str, Any]]:
    return [_parameter(p, columns, words) for p in PARAMS]


def build_openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is not None:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, summary=app.summary, routes=app.routes
    )
    learned = app.state.contract
    columns = [c.name for c in learned[0].columns] if learned is not None else None
    words = learned[0].words if learned is not None else None
    for path, operations in schema["paths"].items():
        for operation in operations.values():
            operation.get("responses", {}).pop("422", None)
            if operation.pop("x-export-parameters", False):
                operation["parameters"] = query_parameters(columns, words) + [
                    {
                        "name": n,
                        "in": "header",
                        "required": False,
                        "description": d,
                        "schema": {"type": "string"},
                    }
                    for n, d in _HEADERS
                ]
            if path.startswith("/v1/exports/learners") and not path.endswith("/download"):
                operation["security"] = [{"bearerAuth": []}]
    schema.setdefault("components", {})["securitySchemes"] = {
        "bearerAuth": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "A Supabase access token (HS256, or a JWKS key)",
        }
    }
    if learned is not None:
        app.openapi_schema = schema  # complete: keep it
    return schema
