"""`learner-export keys create|list|revoke`: keys for scripts (learner_export.keys), managed
straight in DATABASE_URL by whoever holds its credentials (an admin, as for `export --as`)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import asyncpg

from learner_export import db
from learner_export.config import load_settings
from learner_export.db import diagnose as dbdiag
from learner_export.keys import KeyInfo, create_key, list_keys, parse_lifetime, revoke_key

CONNECT_SECONDS = 10.0
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

KEYS_HELP = """\
Keys for scripts: a named credential that exports as its owner (a profile), with the
owner's scope, until it expires or is revoked, or until its owner is removed or no longer
has the role it had when the key was made. Send it as `Authorization: Bearer lex_...`
wherever a token is accepted (not to make browser links). Only its SHA-256 is stored:
the key is shown once, by `keys create`. Every audit row a key causes names it.
"""

T = TypeVar("T")


def _error(message: str) -> None:
    print(f"learner-export: {message}", file=sys.stderr, flush=True)


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else f"{moment.astimezone(UTC):%Y-%m-%d %H:%MZ}"


def _with_database(work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T | int:
    """work(conn) on DATABASE_URL; an exit code after one sentence when that cannot be."""
    settings = load_settings()
    dsn = settings.database_url
    if not dsn:
        _error("DATABASE_URL is not set (keys live in the service's schema there)")
        return EXIT_USAGE

    async def run() -> T:
        try:
            async with asyncio.timeout(CONNECT_SECONDS):
                conn = await db.connect(settings, dsn)
        except dbdiag.CONNECTION_ERRORS as exc:
            raise ConnectionError(
                dbdiag.describe_connection_error(exc, dsn, CONNECT_SECONDS)
            ) from None
        try:
            return await work(conn)
        finally:
            await conn.close()

    try:
        return asyncio.run(run())
    except ConnectionError as exc:
        _error(str(exc))
        return EXIT_USAGE
    except asyncpg.UndefinedTableError:
        _error("this database has no keys table yet: run `learner-export db migrate` first")
        return EXIT_FAILED
    except ValueError as exc:
        _error(str(exc))
        return EXIT_FAILED


def cmd_create(args: argparse.Namespace) -> int:
    try:
        lifetime = parse_lifetime(args.expires)
    except ValueError as exc:
        _error(str(exc))
        return EXIT_USAGE
    result = _with_database(lambda conn: create_key(conn, str(args.owner), args.name, lifetime))
    if isinstance(result, int):
        return result
    key, info = result
    # The key alone on stdout, so that `KEY=$(learner-export keys create ...)` takes it.
    print(key, flush=True)
    _error(
        f"key {info.name!r} ({info.id}) for profile {info.owner_id} ({info.owner_role}), "
        f"expires {_when(info.expires_at)}; it is shown only now: store it where the script "
        "reads it"
    )
    return EXIT_OK


def _row(info: KeyInfo) -> list[str]:
    return [
        info.id,
        info.name,
        info.owner_id,
        info.owner_role,
        info.prefix + "...",
        _when(info.created_at),
        _when(info.expires_at),
        _when(info.last_used_at),
        info.status if info.revoked_at is None else f"revoked {_when(info.revoked_at)}",
    ]


def cmd_list(args: argparse.Namespace) -> int:
    owner = None if args.owner is None else str(args.owner)
    result = _with_database(lambda conn: list_keys(conn, owner))
    if isinstance(result, int):
        return result
    header = ["ID", "NAME", "OWNER", "ROLE", "KEY", "CREATED", "EXPIRES", "LAST USED", "STATUS"]
    rows: list[list[Any]] = [header, *(_row(info) for info in result)]
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)))
    return EXIT_OK


def cmd_revoke(args: argparse.Namespace) -> int:
    result = _with_database(lambda conn: revoke_key(conn, args.key))
    if isinstance(result, int):
        return result
    print(f"revoked key {result.name!r} ({result.id}) of profile {result.owner_id}")
    return EXIT_OK


def add_commands(sub: Any) -> None:
    """The `keys` command and its subcommands, on the CLI's subparsers."""
    keys = sub.add_parser(
        "keys",
        help="keys for scripts: create, list, revoke (DATABASE_URL)",
        description=KEYS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="make a key and print it (once)")
    create.add_argument(
        "--owner", type=uuid.UUID, required=True, metavar="PROFILE_ID", help="who it acts as"
    )
    create.add_argument("--name", required=True, help="what it is for, e.g. nightly")
    create.add_argument(
        "--expires", default="90d", metavar="DURATION", help="90d, 12h or 30m (default: 90d)"
    )
    create.set_defaults(run=cmd_create)
    listing = keys_sub.add_parser("list", help="every key: owner, expiry, last use, status")
    listing.add_argument("--owner", type=uuid.UUID, metavar="PROFILE_ID", help="only theirs")
    listing.set_defaults(run=cmd_list)
    revoke = keys_sub.add_parser("revoke", help="stop a key at once")
    revoke.add_argument("key", metavar="KEY", help="its id, or its name if no other key has it")
    revoke.set_defaults(run=cmd_revoke)
