"""Keys for scripts: a named, expiring, revocable credential that acts as its owner (a profile).

A key is `lex_` and 43 base64url characters (256 random bits), shown once when it is made; the
database keeps only its SHA-256 (learner_export.api_keys). A request with `Authorization: Bearer
lex_...` exports as the key's owner, with the owner's scope, applied by the database at every
page as for a token; the key stops working when it is revoked, when it expires, and when its
owner is removed or no longer has the role they had when the key was made (a demotion ends it).
Every audit row the key causes names it (export_audit.api_key_id, api_key_name).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from learner_export.errors import DATABASE_ERRORS, DatabaseUnavailable, Unauthorized

KEY_PREFIX = "lex_"
_KEY = re.compile(r"lex_[A-Za-z0-9_-]{43}")
# Letters, digits, dot, dash, underscore: safe in a terminal, a log line and a file name.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_DURATION = re.compile(r"([1-9][0-9]{0,4})([dhm])")
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}
MAX_LIFETIME = timedelta(days=3650)


class KeyCaller(str):
    """The caller a key authenticates: its owner's profile id (the str), naming the key."""

    key_id: str
    key_name: str

    def __new__(cls, owner: str, key_id: str, key_name: str) -> KeyCaller:
        caller = super().__new__(cls, owner)
        caller.key_id, caller.key_name = key_id, key_name
        return caller


def key_of(caller: str) -> tuple[str | None, str | None]:
    """(key id, key name) when the caller came with a key, for the audit row; else Nones."""
    if isinstance(caller, KeyCaller):
        return caller.key_id, caller.key_name
    return None, None


def is_key(token: str) -> bool:
    return token.startswith(KEY_PREFIX)


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def parse_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ValueError(
            "a key's name is 1 to 64 letters, digits, '.', '-' or '_', starting with a "
            f"letter or digit (got {name[:80]!r})"
        )
    return name


def parse_lifetime(text: str) -> timedelta:
    """`90d`, `12h` or `30m`: how long a new key lives (at most ten years)."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"--expires takes a duration such as 90d, 12h or 30m (got {text!r})")
    lifetime = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    if lifetime > MAX_LIFETIME:
        raise ValueError("--expires: a key lives at most 3650 days")
    return lifetime


async def caller_for_key(pool: asyncpg.Pool, key: str, wait: float) -> KeyCaller:
    """The owner a key acts as; Unauthorized (401) for a key that is unknown, revoked, expired,
    or whose owner is gone or no longer has the role the key was made for."""
    if not _KEY.fullmatch(key):
        raise Unauthorized("malformed key (a key is lex_ and 43 characters)")
    try:
        async with pool.acquire(timeout=wait) as conn:
            row = await conn.fetchrow(
                "SELECT k.id::text AS id, k.name, k.owner_id::text AS owner_id, k.owner_role,"
                " k.revoked_at IS NOT NULL AS revoked, k.expires_at <= now() AS expired,"
                " learner_export.caller_role(k.owner_id) AS role_now"
                " FROM learner_export.api_keys AS k WHERE k.secret_sha256 = $1",
                digest(key),
                timeout=wait * 5,
            )
            if row is not None and not (row["revoked"] or row["expired"]):
                await conn.execute(
                    # At most once a minute per key: a write per request would be a hot row.
                    "UPDATE learner_export.api_keys SET last_used_at = now() WHERE id = $1"
                    " AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')",
                    uuid.UUID(row["id"]),
                    timeout=wait * 5,
                )
    except TimeoutError:
        raise DatabaseUnavailable("every database connection is busy; retry shortly") from None
    except DATABASE_ERRORS as exc:
        raise DatabaseUnavailable("database unreachable") from exc
    if row is None:
        raise Unauthorized("unknown key")
    name = row["name"]
    if row["revoked"]:
        raise Unauthorized(f"key {name!r} has been revoked")
    if row["expired"]:
        raise Unauthorized(f"key {name!r} has expired; ask an admin for a new one")
    if row["role_now"] is None:
        raise Unauthorized(f"the owner of key {name!r} no longer exists")
    if row["role_now"] != row["owner_role"]:
        raise Unauthorized(
            f"the owner of key {name!r} no longer has the role it was made for; "
            "ask an admin for a new one"
        )
    return KeyCaller(row["owner_id"], row["id"], name)


@dataclass(frozen=True, slots=True)
class KeyInfo:
    id: str
    name: str
    owner_id: str
    owner_role: str
    prefix: str
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None
    status: str


async def create_key(
    conn: asyncpg.Connection, owner: str, name: str, lifetime: timedelta
) -> tuple[str, KeyInfo]:
    """A new key for owner (who must exist): the key itself, to show once, and what is kept."""
    role = await conn.fetchval("SELECT learner_export.caller_role($1::uuid)", owner)
    if role is None:
        raise ValueError(f"no profile {owner} (learner_export.caller_role knows no such caller)")
    key = new_key()
    try:
        row = await conn.fetchrow(
            "INSERT INTO learner_export.api_keys (id, name, owner_id, owner_role,"
            " secret_sha256, prefix, expires_at) VALUES ($1, $2, $3, $4, $5, $6,"
            " now() + $7::interval) RETURNING *",
            uuid.uuid4(),
            parse_name(name),
            uuid.UUID(owner),
            role,
            digest(key),
            key[:12],
            lifetime,
        )
    except asyncpg.UniqueViolationError:
        raise ValueError(
            f"profile {owner} already has a key named {name!r} that is not revoked; "
            "revoke it first, or choose another name"
        ) from None
    return key, _info(row)


_LIST = (
    "SELECT *, CASE WHEN revoked_at IS NOT NULL THEN 'revoked'"
    " WHEN expires_at <= now() THEN 'expired' ELSE 'active' END AS status"
    " FROM learner_export.api_keys"
)


async def list_keys(conn: asyncpg.Connection, owner: str | None = None) -> list[KeyInfo]:
    rows = await conn.fetch(
        _LIST + " WHERE $1::uuid IS NULL OR owner_id = $1 ORDER BY created_at, id",
        None if owner is None else uuid.UUID(owner),
    )
    return [_info(row) for row in rows]


async def revoke_key(conn: asyncpg.Connection, which: str) -> KeyInfo:
    """Revoke the key with this id, or the one key not yet revoked with this name."""
    try:
        ident: uuid.UUID | None = uuid.UUID(which)
    except ValueError:
        ident = None
    rows = await conn.fetch(
        "UPDATE learner_export.api_keys SET revoked_at = coalesce(revoked_at, now())"
        " WHERE id = $1 OR ($1 IS NULL AND name = $2 AND revoked_at IS NULL)"
        " AND (SELECT count(*) FROM learner_export.api_keys"
        "      WHERE $1 IS NULL AND name = $2 AND revoked_at IS NULL) = 1"
        " RETURNING *, 'revoked' AS status",
        ident,
        which,
    )
    if not rows:
        named = await conn.fetchval(
            "SELECT count(*) FROM learner_export.api_keys WHERE name = $1 AND revoked_at IS NULL",
            which,
        )
        if named:
            raise ValueError(
                f"{named} keys named {which!r} are not revoked (of different owners); "
                "revoke one by its id (keys list)"
            )
        raise ValueError(f"no key {which!r} (give its id or its name; see keys list)")
    return _info(rows[0])


def _info(row: asyncpg.Record) -> KeyInfo:
    return KeyInfo(
        id=str(row["id"]),
        name=row["name"],
        owner_id=str(row["owner_id"]),
        owner_role=row["owner_role"],
        prefix=row["prefix"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
        last_used_at=row["last_used_at"],
        status=row.get("status") or "active",
    )
