"""The `learner-export` command: serve, db migrate/seed, token, export, download."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import logging
import os
import secrets
import signal
import socket
import sys
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import asyncpg
from pydantic import SecretStr

from service import db, dbdiag, logs
from service.auth import MIN_SECRET_CHARS, issue_token
from service.config import ConfigError, Settings, load_settings
from service.embedded import EmbeddedPostgres
from service.errors import DatabaseUnavailable, InvalidParameter
from service.export_file import Refused, export_to_file
from service.params import FORMAT_NAMES, params_from_mapping
from service.progress import stderr_if_terminal

DEMO_LEARNERS = 50_000

log = logging.getLogger("learner_export.cli")

# db migrate and db seed give up on a database that has not answered by then (asyncpg's own
# limit is a minute).
CONNECT_SECONDS = 10.0

# Exit codes of export and download.
EXIT_OK = 0  # complete
EXIT_FAILED = 1  # failed, refused or incomplete: no complete-looking file is left behind
# Bad arguments, parameters or configuration, or a database that cannot be reached: what a
# retry would not fix without a change (argparse's own code for bad arguments too).
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)
EXIT_TERMINATED = 143  # SIGTERM (128 + SIGTERM)

EXIT_CODES_HELP = f"""\
exit status:
  {EXIT_OK}    complete
  {EXIT_FAILED}    failed, refused or incomplete
  {EXIT_USAGE}    bad arguments, parameters or configuration, or the database cannot
       be reached (the message names its host and port)
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C)
  {EXIT_TERMINATED}  terminated (SIGTERM)
"""


EXPORT_HELP = """\
Export learners straight from DATABASE_URL, through the same pipeline as the HTTP
service: one snapshot, keyset pages, the same encoders and parameters, the caller's
scope applied by the database, a row in the audit trail. No HTTP server is involved.

With -o FILE, the export is written to .FILE.partial-<random> beside FILE and renamed
to FILE only once complete: a failed or interrupted export leaves no file, and a FILE
that was already there is left as it was. Without -o, it goes to stdout.

A progress bar (rows, MB, rows/s, time left) is drawn on stderr when stderr is a
terminal; otherwise stderr gets nothing but errors.
"""

DOWNLOAD_HELP = """\
Download URL (GET /v1/exports/learners with its parameters) from a running service.
The body goes to FILE.partial, renamed to FILE when the response ended normally; the
complete file's path is printed on stdout. The token comes from --token or, better
(it stays out of the process list), from the environment variable EXPORT_TOKEN.

CSV and JSON Lines downloads carry the _cursor column in FILE.partial (cursor=true is
added unless the URL sets cursor), so that a cut download can be continued: --resume keeps
the complete rows of FILE.partial (or of FILE, say one that curl left behind) and asks for
the rows after the last of them (after=<its _cursor>; a limit in the URL is reduced by the
rows already there). Once complete, the column added is stripped: FILE holds the bytes of
a plain GET of URL. A resumed download is a NEW SNAPSHOT: the rows added come from the
database as it is when resuming, not as it was when the download started. XLSX cannot
be resumed.

A progress bar is drawn on stderr when it is a terminal (with Prefer: count=exact,
so the total is known).
"""


class DatabaseUnreachable(Exception):
    """The database did not take a connection; the message says why, in one sentence."""


def _settings(**overrides: object) -> Settings:
    return load_settings(**overrides)


async def _connect(settings: Settings, dsn: str) -> asyncpg.Connection:
    try:
        async with asyncio.timeout(CONNECT_SECONDS):
            return await db.connect(settings, dsn)
    except dbdiag.CONNECTION_ERRORS as exc:
        raise DatabaseUnreachable(
            dbdiag.describe_connection_error(exc, dsn, CONNECT_SECONDS)) from None


def _port_problem(host: str, port: int) -> str | None:
    """Why the server could not listen on host:port, found before anything else starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as sock:
        # As uvicorn binds: a port left in TIME_WAIT is free, one with a listener is not.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except socket.gaierror as exc:
            return f"cannot listen on {host}: the host name does not resolve ({exc.strerror})"
        except OverflowError:
            return f"cannot listen on port {port}: ports go from 0 to 65535"
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"port {port} on {host} is already in use"
            if exc.errno == errno.EACCES:
                return f"port {port} on {host} needs privileges this user does not have"
            if exc.errno == errno.EADDRNOTAVAIL:
                return f"cannot listen on {host}: no network interface here has that address"
            return f"cannot listen on port {port} on {host}: {exc.strerror or exc}"
    return None


def _warn_if_unreachable(settings: Settings) -> None:
    """One warning line at start for each database that does not answer; the service starts
    anyway, and /readyz answers 503 until it does."""
    for dsn in dict.fromkeys(filter(None, (settings.database_url, settings.read_database_url))):
        problem = dbdiag.check(dsn, seconds=settings.acquire_timeout_seconds)
        if problem is not None:
            log.warning(f"{problem}; starting anyway, not ready until it answers")


async def _migrate(settings: Settings, dsn: str) -> list[str]:
    conn = await _connect(settings, dsn)
    try:
        return await db.migrate(conn, settings.sql_dir)
    finally:
        await conn.close()


@contextlib.contextmanager
def _database(settings: Settings, demo: bool) -> Iterator[tuple[str, bool]]:
    """The database to use: DATABASE_URL, or a throwaway embedded one for the demo."""
    if settings.database_url and not demo:
        yield settings.database_url, False
        return
    with EmbeddedPostgres() as pg:
        yield pg.url, True


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from service.main import create_app

    settings = _settings()
    if problem := _port_problem(args.host, args.port):
        _error(problem)
        return EXIT_USAGE
    demo = args.demo or not settings.database_url
    with _database(settings, demo) as (dsn, embedded):
        overrides: dict[str, object] = {"database_url": dsn}
        if embedded:
            print(f"Starting a throwaway PostgreSQL and seeding {args.demo_learners:,} learners...",
                  file=sys.stderr)
            if len(settings.jwt_secret.get_secret_value()) < 32:
                overrides["jwt_secret"] = SecretStr(secrets.token_urlsafe(48))
            if not settings.link_secrets.get_secret_value():
                overrides["link_secrets"] = SecretStr("demo:" + secrets.token_urlsafe(48))
        settings = settings.model_copy(update=overrides)
        if embedded:
            admin = asyncio.run(db.prepare_demo(dsn, settings, learners=args.demo_learners,
                                                clients=25, data_seed=1))
            token = issue_token(settings.jwt_secret.get_secret_value(), admin,
                                audience=settings.jwt_audience, ttl_seconds=12 * 3600)
            host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
            print(
                f"\nDemo ready: {args.demo_learners:,} learners in {dsn}\n"
                f"Download them (csv, jsonl or xlsx):\n\n"
                f"  curl -fOJ -H 'Authorization: Bearer {token}' \\\n"
                f"    'http://{host}:{args.port}/v1/exports/learners?format=csv'\n",
                file=sys.stderr, flush=True,
            )
        # uvicorn re-raises the signal that stopped it once it has shut down gracefully; with
        # these handlers in place that ends in exit status 0, as a clean stop should.
        try:
            app = create_app(settings)
        except ValueError as exc:  # secrets, link secrets or JWKS that cannot work
            raise ConfigError(str(exc)) from None
        if not embedded:
            _warn_if_unreachable(settings)
        for stop_signal in (signal.SIGTERM, signal.SIGINT):
            signal.signal(stop_signal, lambda *_: None)
        uvicorn.run(app, host=args.host, port=args.port,
                    log_level=args.log_level, log_config=None, access_log=False,
                    timeout_graceful_shutdown=int(settings.shutdown_grace_seconds))
    return 0


def cmd_db_migrate(args: argparse.Namespace) -> int:
    settings = _settings()
    if not settings.database_url:
        _error("DATABASE_URL is not set")
        return EXIT_USAGE
    applied = asyncio.run(_migrate(settings, settings.database_url))
    print("applied: " + (", ".join(applied) if applied else "nothing (up to date)"))
    return 0


def cmd_db_seed(args: argparse.Namespace) -> int:
    settings = _settings()
    if not settings.database_url:
        _error("DATABASE_URL is not set")
        return EXIT_USAGE

    async def run(dsn: str) -> None:
        conn = await _connect(settings, dsn)
        try:
            await db.migrate(conn, settings.sql_dir)
            await db.seed(conn, settings.sql_dir, learners=args.learners, clients=args.clients,
                          seed=args.seed, replace=args.replace)
            await db.vacuum(conn)
        finally:
            await conn.close()

    try:
        asyncio.run(run(settings.database_url))
    except RuntimeError as exc:
        _error(str(exc))
        return EXIT_FAILED
    print(f"seeded {args.learners:,} learners in {args.clients} clients (seed {args.seed})")
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    settings = _settings()
    secret = settings.jwt_secret.get_secret_value()
    if not secret:
        _error("EXPORT_JWT_SECRET is not set")
        return EXIT_USAGE
    if len(secret) < MIN_SECRET_CHARS:
        _error(f"EXPORT_JWT_SECRET must be at least {MIN_SECRET_CHARS} characters "
               "(the service refuses a shorter one)")
        return EXIT_USAGE
    print(issue_token(secret, str(args.sub), audience=settings.jwt_audience,
                      ttl_seconds=args.ttl))
    return 0


def _error(message: str) -> None:
    print(f"learner-export: {message}", file=sys.stderr, flush=True)


def _export_values(args: argparse.Namespace) -> dict[str, str | list[str] | None]:
    """The command line as the HTTP query's names and values, for the same validation."""
    return {
        "format": args.format,
        "client_id": args.client_id,
        "created_from": args.created_from,
        "created_to": args.created_to,
        "active": args.active,
        "columns": args.columns,
        "limit": args.limit,
        "bom": "true" if args.bom else None,
        "escape_formulas": "false" if args.no_escape_formulas else None,
    }


def cmd_export(args: argparse.Namespace) -> int:
    settings = _settings()
    try:
        params = params_from_mapping(_export_values(args), max_limit=settings.max_limit)
    except InvalidParameter as exc:
        for problem in exc.detail:
            _error(f"--{problem['parameter'].replace('_', '-')}: {problem['message']}")
        return EXIT_USAGE
    if not settings.database_url:
        _error("DATABASE_URL is not set: export reads straight from the database "
               "(to export from a running service, use `learner-export download`)")
        return EXIT_USAGE
    output: Path | None = args.output
    if output is None and params.format == "xlsx" and sys.stdout.isatty():
        _error("not writing an XLSX workbook to a terminal; use -o FILE")
        return EXIT_USAGE
    if output is not None and output.is_dir():
        _error(f"{output} is a directory")
        return EXIT_USAGE
    left = (f"; {output} was not written" if output is not None
            else "; the output is incomplete")
    try:
        asyncio.run(export_to_file(settings, params, str(args.caller), output,
                                   stderr_if_terminal()))
    except Refused as exc:
        _error(f"refused: {exc}" + left)
        return EXIT_FAILED
    except KeyboardInterrupt:
        _error("interrupted" + left)
        return EXIT_INTERRUPTED
    except asyncio.CancelledError:
        _error("terminated" + left)
        return EXIT_TERMINATED
    except BrokenPipeError:
        # Nothing more can go to stdout, and Python would complain again when flushing it.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        _error("export stopped: the output was closed before the export ended")
        return EXIT_FAILED
    except (DatabaseUnavailable, *dbdiag.CONNECTION_ERRORS) as exc:
        # A connection failed: when a database does not take one now, say why in its words.
        for dsn in dict.fromkeys(filter(None, (settings.database_url,
                                               settings.read_database_url))):
            if problem := dbdiag.check(dsn, seconds=settings.acquire_timeout_seconds):
                _error(problem + left)
                return EXIT_USAGE
        _error(f"export failed: {type(exc).__name__}: {exc}" + left)
        return EXIT_FAILED
    except Exception as exc:
        _error(f"export failed: {type(exc).__name__}: {exc}" + left)
        return EXIT_FAILED
    return EXIT_OK


def cmd_download(args: argparse.Namespace) -> int:
    try:
        # httpx is needed by this command only.
        from service import download
    except ModuleNotFoundError as exc:
        _error(f"download needs the {exc.name} package (pip install {exc.name})")
        return EXIT_FAILED

    # httpx logs every request at INFO; stderr is for the progress bar and errors only.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    token = args.token or os.environ.get("EXPORT_TOKEN") or None
    try:
        path = download.fetch(args.url, output=args.output, token=token, resume=args.resume,
                              progress_stream=stderr_if_terminal(), note=_error)
    except download.BadArguments as exc:
        _error(str(exc))
        return EXIT_USAGE
    except download.Interrupted as exc:
        _error(str(exc))
        return EXIT_INTERRUPTED
    except download.DownloadError as exc:
        _error(str(exc))
        return EXIT_FAILED
    except OSError as exc:
        _error(f"download failed: {exc}")
        return EXIT_FAILED
    print(path)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="learner-export", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--demo", action="store_true",
                       help="use a throwaway embedded PostgreSQL with demo data "
                            "(the default when DATABASE_URL is not set)")
    serve.add_argument("--demo-learners", type=int, default=DEMO_LEARNERS)
    serve.add_argument("--log-level", default="info")
    serve.set_defaults(run=cmd_serve)

    database = sub.add_parser("db", help="database tasks (DATABASE_URL)")
    db_sub = database.add_subparsers(dest="db_command", required=True)
    migrate = db_sub.add_parser("migrate", help="apply the sql/ migrations not yet applied")
    migrate.set_defaults(run=cmd_db_migrate)
    seed = db_sub.add_parser("seed", help="generate deterministic demo learners")
    seed.add_argument("--learners", type=int, required=True)
    seed.add_argument("--clients", type=int, default=25)
    seed.add_argument("--seed", type=int, default=1)
    seed.add_argument("--replace", action="store_true",
                      help="delete every learner and client first")
    seed.set_defaults(run=cmd_db_seed)

    token = sub.add_parser("token", help="print a bearer token (EXPORT_JWT_SECRET)")
    token.add_argument("--sub", type=uuid.UUID, required=True, help="profile id")
    token.add_argument("--ttl", type=int, default=3600, help="seconds until it expires")
    token.set_defaults(run=cmd_token)

    export = sub.add_parser(
        "export", help="export learners straight from DATABASE_URL to a file or stdout",
        description=EXPORT_HELP,
        epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    export.add_argument("--as", dest="caller", type=uuid.UUID, required=True,
                        metavar="PROFILE_ID",
                        help="the profile exporting (as a token's sub): the database applies "
                             "its role and client scope, and the audit trail records it")
    export.add_argument("--format", type=str.lower, choices=FORMAT_NAMES, default="csv")
    export.add_argument("--client-id", action="append", metavar="UUID",
                        help="only this client's learners; repeat for several")
    export.add_argument("--created-from", metavar="DATE",
                        help="created on or after (ISO 8601 date or date-time; UTC by default)")
    export.add_argument("--created-to", metavar="DATE", help="created before (exclusive)")
    export.add_argument("--active", metavar="true|false")
    export.add_argument("--columns", metavar="A,B,...", help="these columns, in this order")
    export.add_argument("--limit", metavar="N", help="at most N rows")
    export.add_argument("--bom", action="store_true",
                        help="CSV: start with a UTF-8 byte-order mark (for Excel)")
    export.add_argument("--no-escape-formulas", action="store_true",
                        help="do not neutralise formula-like cells (CSV, XLSX)")
    export.add_argument("-o", "--output", type=Path, metavar="FILE",
                        help="write FILE (complete or not at all); default: stdout")
    export.set_defaults(run=cmd_export)

    download = sub.add_parser(
        "download", help="download an export from a running service (resumable)",
        description=DOWNLOAD_HELP,
        epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    download.add_argument("url", metavar="URL")
    download.add_argument("-o", "--output", type=Path, metavar="FILE",
                          help="save as FILE; default: the server's file name, in the current "
                               "directory")
    download.add_argument("--token", help="bearer token (default: $EXPORT_TOKEN, which keeps "
                                          "it out of the process list)")
    download.add_argument("--resume", action="store_true",
                          help="continue FILE.partial (or FILE) after its last complete row; "
                               "needs -o FILE")
    download.set_defaults(run=cmd_download)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        logs.configure(getattr(args, "log_level", "info"), _settings().log_format)
        return int(args.run(args))
    except (ConfigError, DatabaseUnreachable) as exc:
        # One line: a configuration that cannot work, or a database that does not answer.
        _error(" ".join(str(exc).split()))
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
