"""The service's errors, without HTTP: one base, and one table giving each its HTTP status, its
error code and the CLI's exit status. learner_export.api.errors turns them into responses; the CLI
into one sentence and an exit status. Database failures are classified in one place here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg

# The one list of connection failures, kept beside the sentences that describe them.
from learner_export.db.diagnose import CONNECTION_ERRORS as CONNECTION_ERRORS
from learner_export.db.diagnose import describe_connection_error


class ExportError(Exception):
    """Something the caller should be told: `detail` says what (a list of problems for 400)."""

    def __init__(self, detail: Any, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = dict(headers or {})


class InvalidParameter(ExportError, ValueError):
    """One or more parameters are invalid; `detail` lists {"parameter", "message"} problems."""

    @classmethod
    def one(cls, parameter: str, message: str) -> InvalidParameter:
        return cls([{"parameter": parameter, "message": message}])


class Unauthorized(ExportError):
    def __init__(self, detail: Any) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": 'Bearer realm="learner-export"'})


class Forbidden(ExportError):
    pass


class LinkExpired(ExportError):
    pass


class TooManyExports(ExportError):
    def __init__(self, detail: Any, retry_after: int, *, by_others: bool = False) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after)})
        # Full because of everyone's exports, not the caller's own: not held against them.
        self.by_others = by_others


class DatabaseUnavailable(ExportError):
    def __init__(self, detail: Any) -> None:
        super().__init__(detail, headers={"Retry-After": "5"})


class ContractNotMet(ExportError):
    """The database does not offer the export contract (docs/contract.md); `detail` lists what
    is missing."""


class ContractChanged(ExportError):
    """The adapter changed (`db migrate`) between learning the contract and opening the export."""

    def __init__(self, detail: Any) -> None:
        super().__init__(detail, headers={"Retry-After": "1"})


class ContractBreach(ExportError):
    """The adapter's functions returned rows that break the contract (docs/contract.md): a key
    repeated or out of order, a page too long, a count that disagrees with the pages."""


class LinksNotConfigured(ExportError):
    pass


class CorsRefused(ExportError):
    """A cross-origin request from an origin, or with a method or header, not allowed."""


class RequestTooLarge(ExportError):
    pass


class HeadersTooLarge(ExportError):
    pass


class NotFound(ExportError):
    pass


class MethodNotAllowed(ExportError):
    pass


class CellTooLarge(ExportError):
    """A cell of the export is larger than EXPORT_MAX_CELL_BYTES."""


class ServiceRoleRefused(ExportError):
    """`db migrate` refuses the service's role: it already holds privileges or owns objects in
    another database of the server (a role is the whole server's; docs/security.md)."""


class ServiceRoleInvalid(ServiceRoleRefused, ValueError):
    """The name given for the service's role cannot be one (reserved, too long, a superuser)."""


@dataclass(frozen=True, slots=True)
class ErrorKind:
    status: int
    code: str
    exit_code: int  # the CLI's: 2 for what the user must change, 1 for a refusal or failure
    description: str


ERRORS: dict[type[ExportError], ErrorKind] = {
    InvalidParameter: ErrorKind(
        400, "invalid_parameter", 2, "A parameter is invalid; the body lists each problem"
    ),
    Unauthorized: ErrorKind(
        401, "unauthorized", 2, "Missing, malformed, expired or wrongly signed token"
    ),
    Forbidden: ErrorKind(
        403,
        "forbidden",
        1,
        "The caller may not export learners, or not these clients; or the "
        "link was altered or signed with a retired key",
    ),
    CorsRefused: ErrorKind(403, "cors_refused", 2, "Origin not in EXPORT_CORS_ORIGINS"),
    NotFound: ErrorKind(404, "not_found", 2, "No such path"),
    HeadersTooLarge: ErrorKind(
        431,
        "request_header_fields_too_large",
        2,
        "Request line and headers larger than EXPORT_MAX_HEADER_BYTES",
    ),
    MethodNotAllowed: ErrorKind(405, "method_not_allowed", 2, "Method not allowed"),
    LinkExpired: ErrorKind(410, "link_expired", 1, "The link expired; ask for a new one"),
    RequestTooLarge: ErrorKind(
        413, "request_too_large", 2, "The body is larger than EXPORT_LINK_REQUEST_MAX_BYTES"
    ),
    TooManyExports: ErrorKind(
        429, "too_many_exports", 1, "Too many exports running (for the process, or for this caller)"
    ),
    CellTooLarge: ErrorKind(
        422, "cell_too_large", 1, "A cell is larger than EXPORT_MAX_CELL_BYTES; the detail names it"
    ),
    DatabaseUnavailable: ErrorKind(
        503,
        "database_unavailable",
        1,
        "The database is unreachable or busy; retry after Retry-After",
    ),
    ContractNotMet: ErrorKind(
        503, "contract_not_met", 1, "The database does not offer the export contract"
    ),
    ContractChanged: ErrorKind(
        503,
        "contract_changed",
        1,
        "The adapter is being changed or just changed (db migrate); retry after Retry-After",
    ),
    ContractBreach: ErrorKind(
        500,
        "contract_breached",
        1,
        "The adapter returned rows that break the export contract; the operator must fix it",
    ),
    LinksNotConfigured: ErrorKind(
        503, "links_not_configured", 1, "Signed links are not configured (EXPORT_LINK_SECRETS)"
    ),
    # `db migrate`'s only: never an HTTP answer.
    ServiceRoleRefused: ErrorKind(
        409,
        "service_role_shared",
        1,
        "The service's role is another database's too; choose one of this database's own",
    ),
    ServiceRoleInvalid: ErrorKind(
        400, "service_role_invalid", 2, "The name given for the service's role cannot be one"
    ),
}

INTERNAL = ErrorKind(500, "internal_error", 1, "Internal error")


def kind_of(error: ExportError) -> ErrorKind:
    for cls in type(error).__mro__:
        if cls in ERRORS:
            return ERRORS[cls]
    return INTERNAL


# Any failure of the database, of the way to it, or of a connection's use (a connection used
# after it was lost raises InterfaceError): what cleanup tolerates and database_error() is asked
# about. Only CONNECTION_ERRORS among them mean "unavailable, retry".
DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    *CONNECTION_ERRORS,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
)

BUSY = "every database connection is busy; retry shortly"
UNREACHABLE = "the database is unreachable; retry shortly"


# What the COPY's cell bound (learner_export.formats.cells.cell_bound) fails with.
CELL_TOO_LARGE_MARK = "learner_export.cell_too_large "


def database_error(
    exc: BaseException, doing: str, *, dsn: str | None = None, seconds: float | None = None
) -> ExportError | None:
    """The one classifier of database failures: what to tell the caller about `exc`, raised
    while `doing` something, or None when it is no database failure of the caller's concern (a
    bug: let it surface as one). A refusal by the contract's scope function is a 403 with its
    message; a missing contract function, ContractNotMet. With `dsn` (the CLI, whose user runs
    the database), a connection failure says why in diagnose's sentence, naming host and port;
    without (an HTTP client), only that it failed. A TimeoutError without `dsn` is a pool that
    had no connection free within the wait."""
    if isinstance(exc, ExportError):
        return exc
    if isinstance(exc, asyncpg.InvalidTextRepresentationError):
        message = str(exc.args[0]) if exc.args else ""
        if CELL_TOO_LARGE_MARK in message:
            what = message.partition(CELL_TOO_LARGE_MARK)[2].rstrip('"')
            return CellTooLarge(f"{what}, more than EXPORT_MAX_CELL_BYTES")
    if isinstance(exc, asyncpg.InsufficientPrivilegeError):
        return Forbidden(exc.args[0] if exc.args else "not allowed")
    if isinstance(exc, asyncpg.UndefinedFunctionError | asyncpg.InvalidSchemaNameError):
        return ContractNotMet(f"{doing}: {exc.args[0] if exc.args else exc}")
    if not isinstance(exc, CONNECTION_ERRORS):
        return None
    if dsn is not None:
        return DatabaseUnavailable(describe_connection_error(exc, dsn, seconds))
    if isinstance(exc, TimeoutError):
        return DatabaseUnavailable(BUSY)
    return DatabaseUnavailable(f"{doing}: {UNREACHABLE}")
