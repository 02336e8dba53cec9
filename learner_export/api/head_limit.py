"""A request head (request line and headers) larger than EXPORT_MAX_HEADER_BYTES gets 431.

The memory bound itself is the HTTP parser's: `learner-export serve` runs uvicorn with h11,
which refuses a head still incomplete past that many bytes (its own 400, connection closed)
before buffering more. A head that arrived whole in one read (at most 256 KiB) slips past that
check; this middleware applies the same limit to it exactly, with the usual JSON body.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from learner_export.api.errors import error_response
from learner_export.errors import HeadersTooLarge

# Bytes a head carries besides its fields: "GET ", " HTTP/1.1\r\n", ": " and "\r\n" per header.
_LINE_OVERHEAD = 16
_FIELD_OVERHEAD = 4


def head_size(scope: Scope) -> int:
    """The size of the request head as it came over the wire, to within a few bytes."""
    size = _LINE_OVERHEAD + len(scope["method"]) + len(scope.get("raw_path") or b"")
    query = scope.get("query_string") or b""
    if query:
        size += 1 + len(query)
    return size + sum(len(n) + len(v) + _FIELD_OVERHEAD for n, v in scope["headers"])


class HeadLimit:
    """Answer 431 to HTTP requests whose head is larger than `max_bytes`."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and head_size(scope) > self.max_bytes:
            response = error_response(
                HeadersTooLarge(
                    f"request line and headers larger than {self.max_bytes} bytes"
                    " (EXPORT_MAX_HEADER_BYTES)",
                    headers={"Connection": "close"},
                )
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
