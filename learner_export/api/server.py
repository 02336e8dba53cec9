"""How `learner-export serve` runs uvicorn so that idle and half-sent connections cannot take
the process down (docs/limits.md).

uvicorn (0.55, h11) by itself times out only keep-alive connections between requests: a
connection that sends nothing, or half a request head, or a body shorter than its
Content-Length, stays open for as long as the client likes, and enough of them fill the
process's descriptor table (then even /healthz cannot be accepted). Here each connection gets:

* a deadline for the request: head and body must arrive within EXPORT_REQUEST_READ_TIMEOUT_SECONDS
  of the connection's start (or of the first byte of a next request on a kept-alive one);
  a head still incomplete then is answered 408 and closed, a body still incomplete is closed;
* a cap: at most EXPORT_MAX_CONNECTIONS connections, and never more than the descriptor limit
  leaves after the database pools and a margin; past it the oldest connection that is not
  running a request (half-sent, or idle between requests) is closed to let the new one in, so
  a health check or an admin still gets through while such connections are held open.
"""

from __future__ import annotations

import asyncio
import resource
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from learner_export.config import Settings

# Descriptors kept back from connections: the listening socket, logs, the pools' sockets are
# counted apart (2 x pool size); this is for everything else a process opens.
DESCRIPTOR_MARGIN = 64
_TIMEOUT_BODY = b'{"error":"request_timeout","detail":"the request did not arrive in time"}'
_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
    b"connection: close\r\ncache-control: no-store\r\ncontent-length: "
    + str(len(_TIMEOUT_BODY)).encode()
    + b"\r\n\r\n"
    + _TIMEOUT_BODY
)


def connection_cap(settings: Settings) -> int:
    """EXPORT_MAX_CONNECTIONS, lowered to what the process's descriptor limit leaves."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return settings.max_connections
    room = soft - 2 * settings.pool_max_size - DESCRIPTOR_MARGIN
    return max(16, min(settings.max_connections, room))


def guarded_protocol(read_timeout: float, max_connections: int) -> type[H11Protocol]:
    """uvicorn's h11 protocol with a request deadline and a connection cap (one class per
    server: it holds that server's evictable connections)."""
    # Connections not running a request, oldest first (a dict keeps insertion order).
    evictable: dict[GuardedH11Protocol, None] = {}

    class GuardedH11Protocol(H11Protocol):
        _deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)  # type: ignore[arg-type]
            if len(self.connections) > max_connections:
                victim = next(iter(evictable), None)
                if victim is None:  # every connection is running a request: refuse this one
                    self.transport.close()
                    return
                victim._close()
            evictable[self] = None
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.transport.is_closing():
                return
            if self.conn.their_state in (h11.IDLE, h11.SEND_BODY):
                # A request has begun and is not whole yet: it has until the deadline.
                evictable.setdefault(self, None)
                if self._deadline is None:
                    self._arm()
            else:
                evictable.pop(self, None)
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                evictable[self] = None  # idle until its keep-alive timeout

        def connection_lost(self, exc: Exception | None) -> None:
            evictable.pop(self, None)
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._deadline = self.loop.call_later(read_timeout, self._timed_out)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _timed_out(self) -> None:
            self._deadline = None
            if self.transport.is_closing():
                return
            # No request head yet, so no response either: a 408 fits in. A body cut short
            # belongs to a request the app is running; that connection just closes.
            if self.conn.their_state is h11.IDLE and self.conn.our_state is h11.IDLE:
                self.transport.write(_TIMEOUT_RESPONSE)
            self._close()

        def _close(self) -> None:
            evictable.pop(self, None)
            self._disarm()
            self.transport.close()

    return GuardedH11Protocol


def server_options(settings: Settings) -> dict[str, Any]:
    """uvicorn.run's keyword arguments for the limits above."""
    cap = connection_cap(settings)
    return {
        "http": guarded_protocol(settings.request_read_timeout_seconds, cap),
        "h11_max_incomplete_event_size": settings.max_header_bytes,
        "timeout_keep_alive": max(1, round(settings.keep_alive_seconds)),
        # Not limit_concurrency: uvicorn compares it with the connections open, so at the cap
        # it would answer 503 to the very health check the eviction let in. Requests running
        # at once are bounded by the connections; exports by their slots.
    }
