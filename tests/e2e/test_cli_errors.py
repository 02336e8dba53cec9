"""Errors as sentences: a configuration that cannot work, a database that does not answer and a
busy port each end in one line on stderr and the error table's exit status (2 for what the user
must change, 1 for a database that does not answer), never a traceback, never a password; /readyz
says what failed."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
from pydantic import ValidationError

from learner_export.config import Settings, describe_validation_error
from learner_export.db.diagnose import describe_connection_error, target_of
from learner_export.demo.embedded import EmbeddedPostgres
from tests.conftest import JWT_SECRET, Database, LiveServer, _free_port, wait_for
from tests.e2e.test_cli_export import cli, cli_command, cli_env

PASSWORD = "pw-Zq81-never-shown"
PROFILE = "00000000-0000-0000-0000-000000000001"


def assert_one_line(result: subprocess.CompletedProcess[bytes], line: str, status: int = 2) -> None:
    """Exit `status`, and stderr is exactly `learner-export: <line>`."""
    assert result.returncode == status, result.stderr
    assert b"Traceback" not in result.stderr
    assert PASSWORD.encode() not in result.stderr + result.stdout
    assert result.stderr.decode() == f"learner-export: {line}\n"


# Configuration -------------------------------------------------------------------------------

SECRET = "s" * 40


@pytest.mark.parametrize(
    ("env", "args", "line"),
    [
        (
            {"EXPORT_PAGE_SIZE": "abc"},
            ["db", "migrate"],
            "EXPORT_PAGE_SIZE: must be a whole number (got 'abc')",
        ),
        (
            {"EXPORT_PAGE_SIZE": "0", "EXPORT_LOG_FORMAT": "xml"},
            ["token", "--sub", PROFILE],
            "EXPORT_PAGE_SIZE: must be at least 1 (got '0'); "
            "EXPORT_LOG_FORMAT: must be 'auto', 'json' or 'text' (got 'xml')",
        ),
        (
            {"EXPORT_STALL_TIMEOUT_SECONDS": "soon"},
            ["export", "--as", PROFILE],
            "EXPORT_STALL_TIMEOUT_SECONDS: must be a number (got 'soon')",
        ),
        (
            {"DATABASE_URL": "postgresql://u@127.0.0.1:1/x"},
            ["serve"],
            "no way to verify tokens: set EXPORT_JWT_SECRET (HS256, at least 32 characters) or a "
            "JWKS (EXPORT_JWKS_URL, EXPORT_JWKS_FILE or EXPORT_JWKS), or both",
        ),
        (
            {
                "DATABASE_URL": "postgresql://u@127.0.0.1:1/x",
                "EXPORT_JWT_SECRET": "short-" + PASSWORD,
            },
            ["serve"],
            "EXPORT_JWT_SECRET must be at least 32 characters (or unset, to accept only "
            "tokens signed by a JWKS key)",
        ),
        (
            {"EXPORT_JWT_SECRET": "too-short"},
            ["token", "--sub", PROFILE],
            "EXPORT_JWT_SECRET must be at least 32 characters (the service refuses a shorter one)",
        ),
        (
            {
                "DATABASE_URL": "postgresql://u@127.0.0.1:1/x",
                "EXPORT_JWT_SECRET": SECRET,
                "EXPORT_LINK_SECRETS": "k1:" + PASSWORD,
            },
            ["serve"],
            "EXPORT_LINK_SECRETS: expected kid:secret pairs, secrets of at least 32 "
            "characters, kids without dots",
        ),
        (
            {"DATABASE_URL": "postgresql://u@127.0.0.1:1/x", "EXPORT_JWKS": '{"keys": ['},
            ["serve"],
            "EXPORT_JWKS is not valid JSON: Expecting value: line 1 column 11 (char 10)",
        ),
        (
            {"DATABASE_URL": "postgresql://u@127.0.0.1:1/x", "EXPORT_JWKS": '{"keys": []}'},
            ["serve"],
            "EXPORT_JWKS holds no signing keys",
        ),
        (
            {
                "DATABASE_URL": "postgresql://u@127.0.0.1:1/x",
                "EXPORT_JWKS_FILE": "/nonexistent.json",
            },
            ["serve"],
            "EXPORT_JWKS_FILE '/nonexistent.json' cannot be read: [Errno 2] No such file "
            "or directory: '/nonexistent.json'",
        ),
    ],
)
def test_configuration_errors_are_one_line(env: dict[str, str], args: list[str], line: str) -> None:
    command = [*args, "--port", str(_free_port())] if args == ["serve"] else args
    assert_one_line(cli(*command, env=cli_env(**env)), line)


def test_validation_errors_name_the_variable_and_hide_secrets() -> None:
    with pytest.raises(ValidationError) as raised:
        Settings(
            page_size="abc",
            database_url=["x"],
            jwt_secret=1,  # type: ignore[arg-type]
            max_concurrent=0,
        )
    text = describe_validation_error(raised.value)
    assert text.startswith("DATABASE_URL: ")
    assert "EXPORT_JWT_SECRET: " in text
    assert "EXPORT_PAGE_SIZE: must be a whole number (got 'abc')" in text
    assert "EXPORT_MAX_CONCURRENT: must be at least 1 (got 0)" in text
    assert "['x']" not in text and "got 1)" not in text


# An unreachable database ---------------------------------------------------------------------


@contextlib.contextmanager
def silent_listener() -> Iterator[int]:
    """A port that takes TCP connections and never says a word: a database that hangs."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield int(sock.getsockname()[1])


def with_credentials(url: str, user: str, database: str = "postgres") -> str:
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:{PASSWORD}@{host}", path="/" + database))


def where(url: str) -> str:
    return urlsplit(url).netloc.rpartition("@")[2]


COMMANDS = [
    ["db", "migrate"],
    ["db", "seed", "--learners", "10"],
    ["db", "check"],
    ["export", "--as", PROFILE],
]
UNAVAILABLE = 1  # the error table's exit status for DatabaseUnavailable


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: "-".join(a[:2]))
def test_refused_connection(args: list[str]) -> None:
    port = _free_port()
    url = f"postgresql://learner:{PASSWORD}@127.0.0.1:{port}/app"
    result = cli(*args, env=cli_env(DATABASE_URL=url))
    # export writes to stdout here, which got nothing: not said to be incomplete.
    assert_one_line(result, f"database at 127.0.0.1:{port} refused the connection", UNAVAILABLE)
    assert result.stdout == b""


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: "-".join(a[:2]))
def test_unknown_host(args: list[str]) -> None:
    url = f"postgresql://learner:{PASSWORD}@db.example.invalid:6543/app"
    result = cli(*args, env=cli_env(DATABASE_URL=url))
    assert_one_line(
        result,
        "database at db.example.invalid:6543 cannot be reached: the host "
        "name 'db.example.invalid' does not resolve (Name or service not known)",
        UNAVAILABLE,
    )


def test_unknown_role_and_database(pg_server: str, tmp_path: Path) -> None:
    # The machine's server trusts every password: a role it does not know is refused as such.
    # The embedded one asks for a password, and says only that it was not the right one.
    url = with_credentials(pg_server, "no_such_role")
    refusal = (
        "rejected the password of user 'no_such_role'"
        if urlsplit(pg_server).password
        else "refused user 'no_such_role': role \"no_such_role\" does not exist"
    )
    assert_one_line(
        cli("db", "migrate", env=cli_env(DATABASE_URL=url)),
        f"database at {where(pg_server)} {refusal}",
        UNAVAILABLE,
    )
    url = urlunsplit(urlsplit(pg_server)._replace(path="/no_such_database"))
    target = tmp_path / "learners.csv"
    assert_one_line(
        cli("export", "--as", PROFILE, "-o", str(target), env=cli_env(DATABASE_URL=url)),
        f"database at {where(pg_server)} has no database 'no_such_database'; "
        f"{target} was not written",
        UNAVAILABLE,
    )
    assert list(tmp_path.iterdir()) == []


def test_export_to_a_database_that_never_answers() -> None:
    with silent_listener() as port:
        url = f"postgresql://learner:{PASSWORD}@127.0.0.1:{port}/app"
        result = cli(
            "export",
            "--as",
            PROFILE,
            env=cli_env(DATABASE_URL=url, EXPORT_ACQUIRE_TIMEOUT_SECONDS="0.5"),
        )
    assert_one_line(
        result,
        f"database at 127.0.0.1:{port} did not answer within 0.5 s",
        UNAVAILABLE,
    )


@pytest.mark.slow
def test_migrate_gives_up_on_a_database_that_never_answers() -> None:
    with silent_listener() as port:
        url = f"postgresql://learner:{PASSWORD}@127.0.0.1:{port}/app"
        started = time.monotonic()
        result = cli("db", "migrate", env=cli_env(DATABASE_URL=url))
    assert_one_line(result, f"database at 127.0.0.1:{port} did not answer within 10 s", UNAVAILABLE)
    assert time.monotonic() - started < 30


def test_connection_errors_in_words() -> None:
    dsn = f"postgresql://app:{PASSWORD}@db.internal:6432/learning"
    cases: list[tuple[BaseException, str]] = [
        (
            asyncpg.InvalidPasswordError(
                f'password authentication failed for user "app" ({PASSWORD})'
            ),
            "database at db.internal:6432 rejected the password of user 'app'",
        ),
        (
            asyncpg.TooManyConnectionsError(f"sorry, too many clients already {PASSWORD}"),
            "database at db.internal:6432 has no connection slot left: sorry, too many clients "
            "already ***",
        ),
        (
            asyncpg.CannotConnectNowError("the database system is starting up"),
            "database at db.internal:6432 does not accept connections now: the database system "
            "is starting up",
        ),
        (TimeoutError(), "database at db.internal:6432 did not answer within 3 s"),
        (
            OSError(
                "Multiple exceptions: [Errno 111] Connect call failed ('::1', 6432, 0, 0), "
                "[Errno 111] Connect call failed ('127.0.0.1', 6432)"
            ),
            "database at db.internal:6432 refused the connection",
        ),
        (
            OSError(113, "No route to host"),
            "database at db.internal:6432 cannot be reached: No route to host",
        ),
        (
            ConnectionResetError(104, "Connection reset by peer"),
            "database at db.internal:6432 closed the connection (is PostgreSQL listening there?)",
        ),
    ]
    for exc, sentence in cases:
        assert describe_connection_error(exc, dsn, 3) == sentence


@pytest.mark.parametrize(
    ("dsn", "shown"),
    [
        ("postgresql://u:p@h/db", "h:5432"),
        ("postgres://u@[::1]:6000/db", "[::1]:6000"),
        ("postgresql://u@h1:5433,h2/db", "h1:5433, h2:5432"),
        ("postgresql:///db?host=/run/postgresql&port=5433", "/run/postgresql/.s.PGSQL.5433"),
        (
            "postgresql://u:p%40ss@db.example.com:6543/postgres?sslmode=require",
            "db.example.com:6543",
        ),
    ],
)
def test_where_a_dsn_points(dsn: str, shown: str) -> None:
    assert target_of(dsn).where == shown


# serve ---------------------------------------------------------------------------------------


def test_a_busy_port() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli(
            "serve",
            "--port",
            str(port),
            env=cli_env(DATABASE_URL="postgresql://u@127.0.0.1:1/x", EXPORT_JWT_SECRET=SECRET),
        )
    assert_one_line(result, f"port {port} on 127.0.0.1 is already in use")


def test_readyz_says_what_failed(start_server: object, database: Database) -> None:
    port = _free_port()
    url = f"postgresql://learner:{PASSWORD}@127.0.0.1:{port}/app"
    server: LiveServer = start_server(Database(url, database.admin_id))  # type: ignore[operator]
    response = httpx.get(server.url + "/readyz", timeout=10)
    assert response.status_code == 503
    # Unauthenticated: what failed, not where (the log says where).
    assert response.json() == {
        "status": "not ready",
        "detail": "the database refused the connection",
    }


@pytest.mark.slow
def test_serve_warns_at_start_and_becomes_ready_when_the_database_appears() -> None:
    db_port, port = _free_port(), _free_port()
    url = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{db_port}/postgres"
    env = cli_env(DATABASE_URL=url, EXPORT_JWT_SECRET=JWT_SECRET)
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(
            cli_command("serve", "--port", str(port)),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
            text=True,
        )
        try:

            def answer() -> httpx.Response | None:
                try:
                    return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
                except httpx.TransportError:
                    return None

            assert wait_for(lambda: answer() is not None, timeout=30)
            response = answer()
            assert response is not None and response.status_code == 503
            assert response.json()["detail"] == "the database refused the connection"
            with EmbeddedPostgres(port=db_port, password=PASSWORD):
                # Reachable, but without the contract: not ready, and it says why ...
                assert wait_for(
                    lambda: "export contract" in str(getattr(answer(), "text", "")), timeout=30
                )
                assert getattr(answer(), "status_code", 0) == 503
                # ... until `db seed` (the sample schema and adapter) gives it one.
                seeded = cli("db", "seed", "--learners", "10", env=cli_env(DATABASE_URL=url))
                assert seeded.returncode == 0, seeded.stderr
                assert wait_for(lambda: getattr(answer(), "status_code", 0) == 200, timeout=30)
        finally:
            process.terminate()
            process.wait(timeout=30)
        log.seek(0)
        text = log.read()
    assert PASSWORD not in text and "Traceback" not in text
    warning = text.splitlines()[0]
    assert '"level":"warning"' in warning
    assert (
        f"database at 127.0.0.1:{db_port} refused the connection; starting anyway, "
        "not ready until it answers"
    ) in warning


def test_no_database_url_for_db_commands() -> None:
    assert_one_line(cli("db", "migrate", env=cli_env()), "DATABASE_URL is not set")
