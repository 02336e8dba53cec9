"""The one classifier of database failures and the one error table: what each failure becomes,
with the status, code and exit status a caller sees."""

from __future__ import annotations

import asyncpg
import pytest

from learner_export import errors
from learner_export.db import diagnose
from learner_export.errors import (
    ContractNotMet,
    DatabaseUnavailable,
    ExportError,
    Forbidden,
    database_error,
    kind_of,
)

DSN = "postgresql://app:pw-secret@db.internal:6432/learning"


def test_one_list_of_connection_failures() -> None:
    assert errors.CONNECTION_ERRORS is diagnose.CONNECTION_ERRORS


@pytest.mark.parametrize(
    "exc",
    [
        asyncpg.DataError("invalid input for query argument $1: 'x' (an int is required)"),
        asyncpg.InterfaceError("cannot perform operation: another operation is in progress"),
        asyncpg.PostgresSyntaxError('syntax error at or near "SELEC"'),
        asyncpg.UndefinedColumnError('column "nme" does not exist'),
        ValueError("not a database failure"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_programming_errors_are_not_an_unavailable_database(exc: BaseException) -> None:
    assert database_error(exc, "reading") is None
    assert database_error(exc, "reading", dsn=DSN) is None


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError(111, "Connection refused"),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.TooManyConnectionsError("sorry, too many clients already"),
        asyncpg.QueryCanceledError("canceling statement due to statement timeout"),
        asyncpg.InvalidPasswordError('password authentication failed for user "app"'),
    ],
    ids=lambda e: type(e).__name__,
)
def test_connection_failures_are_503_retry_and_exit_1(exc: BaseException) -> None:
    error = database_error(exc, "reading the contract")
    assert isinstance(error, DatabaseUnavailable)
    assert error.detail == "reading the contract: the database is unreachable; retry shortly"
    assert error.headers == {"Retry-After": "5"}
    kind = kind_of(error)
    assert (kind.status, kind.code, kind.exit_code) == (503, "database_unavailable", 1)


def test_a_pool_with_no_free_connection_is_busy() -> None:
    error = database_error(TimeoutError(), "opening the export")
    assert isinstance(error, DatabaseUnavailable)
    assert error.detail == "every database connection is busy; retry shortly"


def test_with_a_dsn_the_sentence_says_why_without_the_password() -> None:
    refused = database_error(asyncpg.InvalidPasswordError("pw-secret"), "connecting", dsn=DSN)
    assert isinstance(refused, DatabaseUnavailable)
    assert refused.detail == "database at db.internal:6432 rejected the password of user 'app'"
    timeout = database_error(TimeoutError(), "connecting", dsn=DSN, seconds=3)
    assert isinstance(timeout, DatabaseUnavailable)
    assert timeout.detail == "database at db.internal:6432 did not answer within 3 s"


def test_a_scope_refusal_is_403_with_the_adapters_message() -> None:
    error = database_error(
        asyncpg.InsufficientPrivilegeError("client 7 is outside your scope"), "checking"
    )
    assert isinstance(error, Forbidden)
    assert error.detail == "client 7 is outside your scope"
    assert (kind_of(error).status, kind_of(error).exit_code) == (403, 1)


def test_a_missing_contract_function_is_contract_not_met() -> None:
    exc = asyncpg.UndefinedFunctionError("function learner_export.caller_role(uuid) does not exist")
    error = database_error(exc, "reading the caller's role")
    assert isinstance(error, ContractNotMet)
    assert error.detail == (
        "reading the caller's role: function learner_export.caller_role(uuid) does not exist"
    )
    assert kind_of(error).code == "contract_not_met"


def test_an_export_error_passes_through_unchanged() -> None:
    error = Forbidden("no")
    assert database_error(error, "anything") is error


def test_an_error_missing_from_the_table_is_an_internal_error() -> None:
    class Unlisted(ExportError):
        pass

    assert kind_of(Unlisted("x")) == errors.INTERNAL
