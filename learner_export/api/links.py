"""Signed download links: made with a bearer token, followed by a browser without one."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Request
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, create_model
from starlette.responses import Response, StreamingResponse

from learner_export.api.errors import EXPORT_ERRORS, responses
from learner_export.api.responses import respond
from learner_export.api.state import contract_of, services_of
from learner_export.audit import query_filters
from learner_export.auth import authenticate
from learner_export.config import Settings
from learner_export.errors import (
    DATABASE_ERRORS,
    ExportError,
    Forbidden,
    InvalidParameter,
    LinkExpired,
    LinksNotConfigured,
    RequestTooLarge,
    database_error,
)
from learner_export.lifecycle import refuse
from learner_export.links import MAX_TOKEN_CHARS, LinkSigner, link_url
from learner_export.params import (
    PARAMS,
    ExportParams,
    Param,
    pairs_from_values,
    parse_export_params,
)

router = APIRouter(tags=["exports"])


def _field(param: Param) -> tuple[Any, Any]:
    kind = param.schema.get("type")
    # Only JSON true and false are booleans, as only "true" and "false" are in a query.
    one: Any = {"boolean": StrictBool, "integer": int}.get(str(kind), str)
    if param.repeatable:
        return list[one] | None, Field(default=None, description=param.description)
    if param.name == "columns":
        return str | list[str] | None, Field(default=None, description=param.description)
    return one | None, Field(default=None, description=param.description)


# The export's parameters as JSON (from learner_export.params.PARAMS), and the link's lifetime.
_LINK_FIELDS: dict[str, Any] = {
    p.name: _field(p) for p in PARAMS if p.name not in ("cursor", "after")
}
_LINK_FIELDS["expires_in"] = (
    int | None,
    Field(default=None, gt=0, le=2**31, description="Seconds (default EXPORT_LINK_TTL_SECONDS)"),
)
LinkRequest: type[BaseModel] = create_model(
    "LinkRequest", __config__=ConfigDict(extra="forbid"), **_LINK_FIELDS
)


class LinkResponse(BaseModel):
    url: str
    expires_at: str


async def read_capped_body(request: Request, cap: int) -> bytes:
    """The request body, read as it arrives and refused (413) once past `cap` bytes."""
    too_large = RequestTooLarge(f"request body larger than {cap} bytes")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > cap:
            raise too_large
    return bytes(body)


def parse_link_request(body: bytes) -> BaseModel:
    """The body as a LinkRequest, or InvalidParameter naming each problem."""
    try:
        return LinkRequest.model_validate_json(body or b"null")
    except ValidationError as exc:
        raise InvalidParameter(
            [
                {"parameter": ".".join(str(p) for p in e["loc"]) or "body", "message": e["msg"]}
                for e in exc.errors(include_url=False, include_input=False)
            ]
        ) from None


def check_link_query(items: Sequence[tuple[str, str]]) -> None:
    """One `link` and nothing else: a second value or parameter would be unsigned input."""
    problems = [
        {"parameter": name[:64], "message": "unknown parameter"}
        for name, _ in items
        if name != "link"
    ]
    if sum(name == "link" for name, _ in items) > 1:
        problems.insert(0, {"parameter": "link", "message": "given more than once"})
    if problems:
        raise InvalidParameter(problems)


async def check_scope(app: FastAPI, caller: str, params: ExportParams) -> None:
    """Refuse (403) a link that the export would refuse: the caller's role and client scope,
    asked of the database as the export asks it."""
    settings: Settings = app.state.settings
    try:
        async with app.state.read_pool.acquire(timeout=settings.acquire_timeout_seconds) as conn:
            await conn.fetchval(
                "SELECT learner_export.export_scope($1::uuid, $2::uuid[])",
                caller,
                list(params.client_ids) if params.client_ids else None,
            )
    except DATABASE_ERRORS as exc:
        error = database_error(exc, "checking the caller's scope")
        if error is None:
            raise
        raise error from exc


def _signer(request: Request) -> LinkSigner:
    signer: LinkSigner | None = request.app.state.links
    if signer is None:
        raise LinksNotConfigured("signed links are not configured (EXPORT_LINK_SECRETS)")
    return signer


@router.post(
    "/v1/exports/learners/links",
    summary="Make a short-lived signed download link for an export",
    response_model=LinkResponse,
    responses={**EXPORT_ERRORS, **responses(RequestTooLarge)},
    # The body is read by hand (after the token, under a cap), so it is declared here.
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": LinkRequest.model_json_schema()}},
        },
        "security": [{"bearerAuth": []}],
    },
)
async def make_link(request: Request) -> LinkResponse:
    settings: Settings = request.app.state.settings
    caller = await authenticate(request.app.state, request.headers.get("authorization"), keys=False)
    signer = _signer(request)
    body: Any = parse_link_request(await read_capped_body(request, settings.link_request_max_bytes))
    values = body.model_dump(exclude={"expires_in"}, exclude_none=True)
    query: list[tuple[str, str]] = []
    try:
        query = pairs_from_values(values)
        contract, zones = await contract_of(request.app)
        params = parse_export_params(
            query, contract, time_zones=zones, max_limit=settings.max_limit
        )
        await check_scope(request.app, caller, params)
        lifetime = body.expires_in or settings.link_ttl_seconds
        if lifetime > settings.link_max_ttl_seconds:
            raise InvalidParameter.one(
                "expires_in", f"at most {settings.link_max_ttl_seconds} seconds"
            )
    except ExportError as exc:
        await refuse(
            services_of(request.app),
            caller,
            exc,
            request_id=request.state.request_id,
            via_link=True,
            fmt=None,
            filters=query_filters(query),
            what="link",
        )
        raise
    expires_at = int(time.time()) + lifetime
    token = signer.sign(caller, query, expires_at)
    if len(token) > MAX_TOKEN_CHARS:
        raise InvalidParameter.one(
            "client_id",
            f"too many values for a link (it would be {len(token)} characters, at "
            f"most {MAX_TOKEN_CHARS}); export with a bearer token",
        )
    return LinkResponse(
        url=link_url(settings.public_url, token),
        expires_at=datetime.fromtimestamp(expires_at, UTC).isoformat(),
    )


@router.head("/v1/exports/learners/download", include_in_schema=False)
@router.get(
    "/v1/exports/learners/download",
    summary="Follow a signed download link (no Authorization header needed)",
    response_class=StreamingResponse,
    responses={**EXPORT_ERRORS, **responses(Forbidden, LinkExpired)},
)
async def follow_link(
    request: Request,
    link: Annotated[str, Query(description="The signed link token", max_length=MAX_TOKEN_CHARS)],
) -> Response:
    check_link_query(request.query_params.multi_items())
    verified = _signer(request).verify(link)
    max_limit = request.app.state.settings.max_limit
    contract, zones = await contract_of(request.app)

    def params() -> ExportParams:
        return parse_export_params(verified.query, contract, time_zones=zones, max_limit=max_limit)

    return await respond(request, verified.caller, params, list(verified.query), via_link=True)
