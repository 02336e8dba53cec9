"""Why a connection to PostgreSQL failed, as one sentence that names host and port and never the
password: for the CLI's error line, the serve warning at start and /readyz."""

from __future__ import annotations

import asyncio
import errno
import os
import re
import socket
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

import asyncpg


@dataclass(frozen=True, slots=True)
class Target:
    """Where a DSN points, as far as a message needs it."""

    where: str
    user: str
    database: str
    password: str


def _host_port(item: str, default_port: str) -> str:
    if item.startswith("/"):
        return f"{item}/.s.PGSQL.{default_port}"
    if item.startswith("["):  # an IPv6 literal, [::1]:5432
        host, _, rest = item[1:].partition("]")
        port = rest.removeprefix(":") or default_port
        return f"[{host}]:{port}"
    host, colon, port = item.rpartition(":")
    if not colon:
        host, port = item, default_port
    return f"{host or 'localhost'}:{port or default_port}"


def target_of(dsn: str) -> Target:
    """Host(s) and port(s), user and database of a postgres:// URL, PG* variables filling gaps
    as libpq and asyncpg do."""
    parts = urlsplit(dsn)
    query = dict(parse_qsl(parts.query))
    userinfo, _, hosts = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    user = unquote(query.get("user") or user or os.environ.get("PGUSER", "") or "postgres")
    password = unquote(query.get("password") or password or os.environ.get("PGPASSWORD", ""))
    port = query.get("port") or os.environ.get("PGPORT") or "5432"
    spec = query.get("host") or unquote(hosts) or os.environ.get("PGHOST") or "localhost"
    where = ", ".join(_host_port(item, port) for item in spec.split(",") if item)
    database = unquote(parts.path.lstrip("/")) or query.get("database") or user
    return Target(where or f"localhost:{port}", user, database, password)


# A connection that could not be had, was refused or was lost, or a server that cannot serve
# now: worth retrying later. The one list, for the service and the CLI (learner_export.errors
# classifies with it). Misuse of a connection (asyncpg.InterfaceError: two statements at once,
# a released connection) and a statement the database rejects (DataError, a syntax error) are
# bugs, not an unavailable database.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,  # SQLSTATE class 08, and a connection closed under us
    asyncpg.InvalidAuthorizationSpecificationError,  # 28: the user or password refused
    asyncpg.InvalidCatalogNameError,  # 3D000: no such database
    asyncpg.InsufficientResourcesError,  # 53: no connection slot, memory or disk left
    asyncpg.OperatorInterventionError,  # 57: shutting down, starting up, statement timeout
)

_ERRNO = re.compile(r"\[Errno (\d+)\]")
_REFUSED = frozenset({errno.ECONNREFUSED})
_CLOSED = frozenset({errno.ECONNRESET, errno.ECONNABORTED, errno.EPIPE})


def _errno_of(exc: OSError) -> int | None:
    if exc.errno is not None:
        return exc.errno
    # asyncio's "Multiple exceptions: [Errno 111] ..., [Errno 111] ..." (every address of a
    # name failed, e.g. ::1 and 127.0.0.1 for localhost) carries no errno of its own.
    found = _ERRNO.search(str(exc))
    return int(found.group(1)) if found else None


def _sentence(exc: BaseException, t: Target, seconds: float | None) -> str:
    at = f"database at {t.where}"
    if isinstance(exc, asyncpg.InvalidPasswordError):
        return f"{at} rejected the password of user {t.user!r}"
    if isinstance(exc, asyncpg.InvalidAuthorizationSpecificationError):
        return f"{at} refused user {t.user!r}: {exc}"
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return f"{at} has no database {t.database!r}"
    if isinstance(exc, asyncpg.CannotConnectNowError):
        return f"{at} does not accept connections now: {exc}"
    if isinstance(exc, asyncpg.TooManyConnectionsError):
        return f"{at} has no connection slot left: {exc}"
    if isinstance(exc, asyncpg.ClientConfigurationError):
        return f"the database URL cannot be used: {exc}"
    if isinstance(exc, asyncpg.ConnectionDoesNotExistError | ConnectionResetError):
        return f"{at} closed the connection (is PostgreSQL listening there?)"
    if isinstance(exc, asyncpg.PostgresError):
        return f"{at} answered: {exc}"
    if isinstance(exc, socket.gaierror):
        host = t.where.rpartition(":")[0]
        return f"{at} cannot be reached: the host name {host!r} does not resolve ({exc.strerror})"
    if isinstance(exc, TimeoutError):
        return f"{at} did not answer " + (f"within {seconds:g} s" if seconds else "in time")
    if isinstance(exc, OSError):
        code = _errno_of(exc)
        if code in _REFUSED:
            return f"{at} refused the connection"
        if code in _CLOSED:
            return f"{at} closed the connection (is PostgreSQL listening there?)"
        reason = os.strerror(code) if code is not None else (exc.strerror or str(exc))
        return f"{at} cannot be reached: {reason}"
    return f"{at} cannot be reached: {type(exc).__name__}: {exc}"


def describe_connection_error(exc: BaseException, dsn: str, seconds: float | None = None) -> str:
    """One sentence on why connecting to dsn failed (a timeout: within `seconds`); the
    password never appears in it."""
    target = target_of(dsn)
    text = _sentence(exc, target, seconds)
    if target.password:
        text = text.replace(target.password, "***")
    return text


async def probe(dsn: str, seconds: float) -> str | None:
    """Connect once and ask for 1 (each within `seconds`): None when the database answers,
    else why not."""
    try:
        conn = await asyncpg.connect(dsn, timeout=seconds)
        try:
            await conn.fetchval("SELECT 1", timeout=seconds)
        finally:
            await conn.close(timeout=seconds)
    except CONNECTION_ERRORS as exc:
        return describe_connection_error(exc, dsn, seconds)
    return None


def check(dsn: str, seconds: float = 10.0) -> str | None:
    """probe(), from synchronous code."""
    return asyncio.run(probe(dsn, seconds))
