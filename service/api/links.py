"""Signed download links: made with a bearer token, followed by a browser without one."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import StreamingResponse

from service.api.exports import ERROR_RESPONSES, start_export
from service.auth import bearer_token, require_export_role, resolve_caller
from service.config import Settings
from service.errors import ErrorBody, ExportError, InvalidParameter
from service.links import LinkSigner
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


def _signer(request: Request) -> LinkSigner:
    signer: LinkSigner | None = request.app.state.links
    if signer is None:
        raise LinksNotConfigured("signed links are not configured (EXPORT_LINK_SECRETS)")
    return signer


@router.post(
    "/v1/exports/learners/links",
    summary="Make a short-lived signed download link for an export",
    response_model=LinkResponse,
    responses=ERROR_RESPONSES,
)
async def make_link(
    request: Request,
    body: LinkRequest,
    authorization: Annotated[str | None, Header(description="Bearer <JWT>")] = None,
) -> LinkResponse:
    settings: Settings = request.app.state.settings
    profile_id = request.app.state.verifier.verify(bearer_token(authorization))
    signer = _signer(request)
    query = body.query()
    parse_export_params(query, max_limit=settings.max_limit)
    caller = await resolve_caller(request.app.state.pool, profile_id, settings,
                                  request.app.state.roles)
    require_export_role(caller)
    lifetime = body.expires_in or settings.link_ttl_seconds
    if lifetime > settings.link_max_ttl_seconds:
        raise InvalidParameter([{"parameter": "expires_in",
                                 "message": f"at most {settings.link_max_ttl_seconds} seconds"}])
    expires_at = int(time.time()) + lifetime
    token = signer.sign(caller.id, query, expires_at)
    base = (settings.public_url or str(request.base_url)).rstrip("/")
    return LinkResponse(url=f"{base}/v1/exports/learners/download?link={token}",
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
    link: Annotated[str, Query(description="The signed link token", max_length=16384)],
    accept_encoding: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    extra = [name for name, _ in request.query_params.multi_items() if name != "link"]
    if extra:
        raise InvalidParameter([{"parameter": name, "message": "unknown parameter"}
                                for name in extra])
    verified = _signer(request).verify(link)
    settings: Settings = request.app.state.settings
    params = parse_export_params(verified.query, max_limit=settings.max_limit)
    return await start_export(request, verified.caller, params, via_link=True, prefer=None,
                              accept_encoding=accept_encoding)


