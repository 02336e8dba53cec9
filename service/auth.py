"""Bearer tokens: Supabase-style HS256 JWTs whose `sub` names a row of public.profiles."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import asyncpg
import jwt

from service.access import RoleCache
from service.config import Settings
from service.errors import DatabaseUnavailable, Forbidden, Unauthorized

EXPORT_ROLES = frozenset({"Admin", "Staff"})


@dataclass(frozen=True, slots=True)
class Caller:
    id: str
    role: str | None


def bearer_token(authorization: str | None) -> str:
    if not authorization:
        raise Unauthorized("missing Authorization header; send 'Authorization: Bearer <JWT>'")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Authorization header must be 'Bearer <JWT>'")
    return token.strip()


def verify_token(token: str, settings: Settings) -> str:
    """Check signature, expiry and audience; return the subject (a profile id)."""
    try:
        claims = jwt.decode(
            token,
            settings.jwt_secret.get_secret_value(),
            algorithms=["HS256"],
            audience=settings.jwt_audience,
            leeway=settings.jwt_leeway_seconds,
            options={"require": ["exp", "sub", "aud"]},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("token expired") from None
    except jwt.InvalidAudienceError:
        raise Unauthorized("token audience not accepted") from None
    except jwt.InvalidSignatureError:
        raise Unauthorized("token signature invalid") from None
    except jwt.MissingRequiredClaimError as exc:
        raise Unauthorized(f"token lacks the {exc.claim!r} claim") from None
    except jwt.InvalidTokenError:
        raise Unauthorized("malformed or unacceptable token") from None
    try:
        return str(uuid.UUID(str(claims["sub"])))
    except ValueError:
        raise Unauthorized("token subject is not a UUID") from None


async def caller_role(pool: asyncpg.Pool, profile_id: str, settings: Settings) -> str | None:
    try:
        async with pool.acquire(timeout=settings.acquire_timeout_seconds) as conn:
            role: str | None = await conn.fetchval(
                "SELECT role FROM public.profiles WHERE id = $1", profile_id,
                timeout=settings.acquire_timeout_seconds)
    except TimeoutError:
        raise DatabaseUnavailable("every database connection is busy; retry shortly") from None
    except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError) as exc:
        raise DatabaseUnavailable("database unreachable") from exc
    return role


async def resolve_caller(pool: asyncpg.Pool, profile_id: str, settings: Settings,
                         roles: RoleCache) -> Caller:
    """The caller with their role (through the cache), or None as role without a profile."""

    async def lookup(pid: str) -> str | None:
        return await caller_role(pool, pid, settings)

    return Caller(profile_id, await roles.role(profile_id, lookup))


def require_export_role(caller: Caller) -> None:
    """Refuse roles that may not export at all. Which clients a caller may export, the database
    decides (public.learner_export_scope)."""
    if caller.role is None:
        raise Forbidden("no profile for this token's subject")
    if caller.role not in EXPORT_ROLES:
        raise Forbidden(f"role {caller.role!r} may not export learners")


def issue_token(secret: str, subject: str, *, audience: str = "authenticated",
                ttl_seconds: int = 3600) -> str:
    """A token like Supabase's for local use (`learner-export token`, the demo, the tests)."""
    now = int(time.time())
    claims = {"sub": subject, "aud": audience, "role": "authenticated", "iat": now,
              "exp": now + ttl_seconds}
    return jwt.encode(claims, secret, algorithm="HS256")
