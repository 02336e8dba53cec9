"""The `learner-export` command: serve, db migrate/seed, token."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import signal
import sys
import uuid
from collections.abc import Iterator, Sequence

from pydantic import SecretStr

from service import db, logs
from service.auth import issue_token
from service.config import Settings
from service.embedded import EmbeddedPostgres

DEMO_LEARNERS = 50_000


def _settings(**overrides: object) -> Settings:
    return Settings(**overrides)  # type: ignore[arg-type]


async def _migrate(settings: Settings, dsn: str) -> list[str]:
    conn = await db.connect(settings, dsn)
    try:
        return await db.migrate(conn, settings.sql_dir)
    finally:
        await conn.close()


async def _prepare_demo(settings: Settings, dsn: str, learners: int) -> str:
    conn = await db.connect(settings, dsn)
    try:
        await db.migrate(conn, settings.sql_dir)
        await db.seed(conn, settings.sql_dir, learners=learners, clients=25, seed=1)
        await db.vacuum(conn)
        return str(await db.ensure_profile(conn, "Admin"))
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
            admin = asyncio.run(_prepare_demo(settings, dsn, args.demo_learners))
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
        for stop_signal in (signal.SIGTERM, signal.SIGINT):
            signal.signal(stop_signal, lambda *_: None)
        uvicorn.run(create_app(settings), host=args.host, port=args.port,
                    log_level=args.log_level, log_config=None, access_log=False,
                    timeout_graceful_shutdown=int(settings.shutdown_grace_seconds))
    return 0


def cmd_db_migrate(args: argparse.Namespace) -> int:
    settings = _settings()
    if not settings.database_url:
        print("DATABASE_URL is not set", file=sys.stderr)
        return 2
    applied = asyncio.run(_migrate(settings, settings.database_url))
    print("applied: " + (", ".join(applied) if applied else "nothing (up to date)"))
    return 0


def cmd_db_seed(args: argparse.Namespace) -> int:
    settings = _settings()
    if not settings.database_url:
        print("DATABASE_URL is not set", file=sys.stderr)
        return 2

    async def run(dsn: str) -> None:
        conn = await db.connect(settings, dsn)
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
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"seeded {args.learners:,} learners in {args.clients} clients (seed {args.seed})")
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    settings = _settings()
    secret = settings.jwt_secret.get_secret_value()
    if not secret:
        print("EXPORT_JWT_SECRET is not set", file=sys.stderr)
        return 2
    print(issue_token(secret, str(args.sub), audience=settings.jwt_audience,
                      ttl_seconds=args.ttl))
    return 0


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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.configure(getattr(args, "log_level", "info"),
                   json=_settings().log_format == "json")
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
