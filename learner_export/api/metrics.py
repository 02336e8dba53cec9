"""GET /metrics in Prometheus's text format, for the scraper and nobody else.

It tells the learner count (row totals) and the pool sizes. With EXPORT_METRICS_TOKEN set, the
scraper sends that token as a bearer token; unset, only loopback clients are answered (a sidecar
or an agent on the host), so that a deployment that forgot the setting leaks nothing.
"""

from __future__ import annotations

import hmac
import ipaddress
from typing import Annotated

from fastapi import APIRouter, Header, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from learner_export.api.errors import responses
from learner_export.config import Settings
from learner_export.errors import Forbidden, Unauthorized

router = APIRouter(tags=["operations"])


def is_loopback(host: str | None) -> bool:
    """Whether a client address is this machine's own (None: a Unix socket, also local)."""
    if host is None:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    # A server listening on :: sees IPv4 clients as ::ffff:a.b.c.d.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def authorize_scrape(authorization: str | None, client_host: str | None, token: str) -> None:
    """Let the scrape through, or raise Unauthorized / Forbidden saying what is missing."""
    if not token:
        if not is_loopback(client_host):
            raise Forbidden(
                "/metrics answers loopback clients only; set EXPORT_METRICS_TOKEN"
                " to let a scraper elsewhere in with a bearer token"
            )
        return
    scheme, _, given = (authorization or "").partition(" ")
    # Compared in constant time, so the answer's timing tells nothing about the token.
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        given.strip().encode(), token.encode()
    ):
        raise Unauthorized("/metrics needs 'Authorization: Bearer <EXPORT_METRICS_TOKEN>'")


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    # 401: EXPORT_METRICS_TOKEN is set and was not sent; 403: it is unset and the client is
    # not on loopback.
    responses=responses(Unauthorized, Forbidden),
)
async def metrics(
    request: Request,
    authorization: Annotated[
        str | None, Header(description="Bearer <EXPORT_METRICS_TOKEN>, when that is set")
    ] = None,
) -> Response:
    settings: Settings = request.app.state.settings
    authorize_scrape(
        authorization,
        request.client.host if request.client else None,
        settings.metrics_token.get_secret_value(),
    )
    return Response(
        generate_latest(request.app.state.metrics.registry), media_type=CONTENT_TYPE_LATEST
    )
