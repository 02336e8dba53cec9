"""CORS for an allow-list of exact origins: the admin UI's pages may call the API with fetch().

An allowed origin's requests get Access-Control-Allow-Origin and the exposed headers; its
preflights are answered here. Any other origin gets no CORS header at all, and a preflight that
cannot be allowed gets a 403 JSON body saying why (not the 405 an OPTIONS would otherwise get).
Credentials (cookies) are never allowed: callers send a bearer token.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from learner_export.api.errors import error_response
from learner_export.errors import CorsRefused

ALLOWED_METHODS = ("GET", "HEAD", "POST", "OPTIONS")
ALLOWED_HEADERS = ("Authorization", "Content-Type", "Prefer", "X-Request-Id")
EXPOSED_HEADERS = (
    "Content-Disposition",
    "X-Total-Count",
    "Content-Range",
    "X-Export-Id",
    "X-Request-Id",
)
MAX_AGE_SECONDS = 600


class AllowListCors:
    """Answer CORS for the configured origins only; leave every other request as it was."""

    def __init__(self, app: ASGIApp, origins: Iterable[str]) -> None:
        self.app = app
        self.origins = frozenset(origins)
        self._allowed_headers = frozenset(h.lower() for h in ALLOWED_HEADERS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        origin = headers.get("origin")
        if origin is None:
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS" and "access-control-request-method" in headers:
            await self._preflight(origin, headers)(scope, receive, send)
            return
        if origin not in self.origins:
            await self.app(scope, receive, send)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                out = MutableHeaders(scope=message)
                out["Access-Control-Allow-Origin"] = origin
                out["Access-Control-Expose-Headers"] = ", ".join(EXPOSED_HEADERS)
                out.add_vary_header("Origin")
            await send(message)

        await self.app(scope, receive, send_with_cors)

    def _preflight(self, origin: str, headers: Headers) -> Response:
        method = headers["access-control-request-method"].strip().upper()
        asked = {
            h.strip().lower()
            for h in headers.get("access-control-request-headers", "").split(",")
            if h.strip()
        }
        refused = sorted(asked - self._allowed_headers)
        problem = None
        if origin not in self.origins:
            problem = f"origin {origin} is not in EXPORT_CORS_ORIGINS"
        elif method not in ALLOWED_METHODS:
            problem = f"method {method} is not allowed from another origin"
        elif refused:
            problem = f"headers not allowed from another origin: {', '.join(refused)}"
        if problem is not None:
            response: Response = error_response(CorsRefused(problem))
            response.headers["Vary"] = "Origin"
            return response
        return Response(
            status_code=204,
            headers={
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Methods": ", ".join(ALLOWED_METHODS),
                "Access-Control-Allow-Headers": ", ".join(ALLOWED_HEADERS),
                "Access-Control-Max-Age": str(MAX_AGE_SECONDS),
                "Cache-Control": "no-store",
                "Vary": "Origin",
            },
        )
