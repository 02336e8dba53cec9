"""Signed download links: made with a bearer token, followed by a browser without one."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated

import asyncpg
from fastapi import APIRouter, Header, Query, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.responses import StreamingResponse

from service.api.exports import ERROR_RESPONSES, start_export
from service.auth import bearer_token, require_export_role, resolve_caller
from service.config import Settings
from service.errors import DatabaseUnavailable, ErrorBody, ExportError, Forbidden, InvalidParameter
from service.helpers import CONNECTION_ERRORS
from service.links import MAX_TOKEN_CHARS, LinkSigner, link_url
from service.params import parse_export_params

router = APIRouter(tags=["exports"])


class LinksNotConfigured(ExportError):
    status_code = 503
    code = "links_not_configured"


class LinkRequest(BaseModel):
    """The export's parameters, as for GET /v1/exports/learners, and the link's lifetime."""

    model_config = ConfigDict(extra="forbid")

    format: str | None = None
    client_id: list[str] | None = None
    created_from: str | None = None
    created_to: str | None = None
    active: bool | None = None
    columns: str | list[str] | None = None
    limit: int | None = None
    bom: bool | None = None
    escape_formulas: bool | None = None
    expires_in: int | None = Field(default=None, gt=0, description="Seconds (default 300)")

    def query(self) -> list[tuple[str, str]]:
        pairs: list[tuple[str, str]] = []
        for name, value in self.model_dump(exclude={"expires_in"}, exclude_none=True).items():
            if name == "columns" and isinstance(value, list):
                pairs.append((name, ",".join(value)))
            elif isinstance(value, list):
                pairs.extend((name, str(v)) for v in value)
            elif isinstance(value, bool):
                pairs.append((name, "true" if value else "false"))
            else:
                pairs.append((name, str(value)))
        return pairs


class LinkResponse(BaseModel):
    url: str
    expires_at: str


class RequestTooLarge(ExportError):
    status_code = 413
    code = "request_too_large"


def _signer(request: Request) -> LinkSigner:
    signer: LinkSigner | None = request.app.state.links
    if signer is None:
        raise LinksNotConfigured("signed links are not configured (EXPORT_LINK_SECRETS)")
    return signer


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


def parse_link_request(body: bytes) -> LinkRequest:
    """The body as a LinkRequest, or InvalidParameter naming each problem."""
    try:
        return LinkRequest.model_validate_json(body or b"null")
    except ValidationError as exc:
        raise InvalidParameter([
            {"parameter": ".".join(str(p) for p in e["loc"]) or "body", "message": e["msg"]}
            for e in exc.errors(include_url=False, include_input=False)]) from None


# The one place that asks the database which clients a caller may export; it raises
# insufficient_privilege (42501) with the reason when the answer is none of them.
SCOPE_SQL = "SELECT public.learner_export_scope($1::uuid, $2::uuid[])"


async def check_client_scope(pool: asyncpg.Pool, caller_id: str,
                             client_ids: Sequence[str] | None, settings: Settings) -> None:
    """Refuse (403) a caller the export itself would refuse for these client ids."""
    timeout = settings.acquire_timeout_seconds
    try:
        async with pool.acquire(timeout=timeout) as conn:
            await conn.fetchval(SCOPE_SQL, caller_id,
                                None if client_ids is None else list(client_ids),
                                timeout=timeout)
    except asyncpg.InsufficientPrivilegeError as exc:
        raise Forbidden(exc.args[0] if exc.args else "not allowed") from None
    except TimeoutError:
        raise DatabaseUnavailable("every database connection is busy; retry shortly") from None
    except CONNECTION_ERRORS as exc:
        raise DatabaseUnavailable("database unreachable") from exc


@router.post(
    "/v1/exports/learners/links",
    summary="Make a short-lived signed download link for an export",
    response_model=LinkResponse,
    responses={
        **ERROR_RESPONSES,
        413: {"description": "The body is larger than EXPORT_LINK_REQUEST_MAX_BYTES",
              "model": ErrorBody},
    },
    # The body is read by hand (after the token, under a cap), so it is declared here.
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": LinkRequest.model_json_schema()}}}},
)
async def make_link(
    request: Request,
    authorization: Annotated[str | None, Header(description="Bearer <JWT>")] = None,
) -> LinkResponse:
    settings: Settings = request.app.state.settings
    profile_id = request.app.state.verifier.verify(bearer_token(authorization))
    signer = _signer(request)
    body = parse_link_request(await read_capped_body(request, settings.link_request_max_bytes))
    query = body.query()
    params = parse_export_params(query, max_limit=settings.max_limit)
    lifetime = body.expires_in or settings.link_ttl_seconds
    if lifetime > settings.link_max_ttl_seconds:
        raise InvalidParameter([{"parameter": "expires_in",
                                 "message": f"at most {settings.link_max_ttl_seconds} seconds"}])
    pool: asyncpg.Pool = request.app.state.pool
    caller = await resolve_caller(pool, profile_id, settings, request.app.state.roles)
    require_export_role(caller)
    await check_client_scope(pool, caller.id, params.client_ids, settings)
    expires_at = int(time.time()) + lifetime
    token = signer.sign(caller.id, query, expires_at)
    if len(token) > MAX_TOKEN_CHARS:
        raise InvalidParameter([{"parameter": "client_id", "message":
                                 f"too many values for a link (it would be {len(token)} characters,"
                                 f" at most {MAX_TOKEN_CHARS}); export with a bearer token"}])
    return LinkResponse(url=link_url(settings.public_url, token),
                        expires_at=datetime.fromtimestamp(expires_at, UTC).isoformat())


@router.get(
    "/v1/exports/learners/download",
    summary="Follow a signed download link (no Authorization header needed)",
    response_class=StreamingResponse,
    responses={
        **ERROR_RESPONSES,
        403: {"description": "The link was altered, or signed with a retired key, or the caller"
                             " may no longer export", "model": ErrorBody},
        410: {"description": "The link expired", "model": ErrorBody},
    },
)
async def follow_link(
    request: Request,
    link: Annotated[str, Query(description="The signed link token",
                               max_length=MAX_TOKEN_CHARS)],
    accept_encoding: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    check_link_query(request.query_params.multi_items())
    verified = _signer(request).verify(link)
    settings: Settings = request.app.state.settings
    params = parse_export_params(verified.query, max_limit=settings.max_limit)
    return await start_export(request, verified.caller, params, via_link=True, prefer=None,
                              accept_encoding=accept_encoding)


def check_link_query(items: Sequence[tuple[str, str]]) -> None:
    """One `link` and nothing else: a second value or parameter would be unsigned input."""
    problems = [{"parameter": name, "message": "unknown parameter"}
                for name, _ in items if name != "link"]
    if sum(name == "link" for name, _ in items) > 1:
        problems.insert(0, {"parameter": "link", "message": "given more than once"})
    if problems:
        raise InvalidParameter(problems)


