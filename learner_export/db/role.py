"""The service's role: one per database, its name the operator's to choose (`db migrate
--service-role NAME`), recorded in the database (migration 005) so that later migrates,
`db check` and the service use it without being told again.

A role is the whole server's, not a database's: a login granted a role that the export
functions of two databases are granted to may call both. So `db migrate` refuses a role that
already holds privileges or owns objects in another database of the server (pg_shdepend says
which), and the name is only ever used quoted (format('%I') in sql/lockdown.sql).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import asyncpg

from learner_export.contract import SCHEMA, SERVICE_ROLE
from learner_export.errors import ServiceRoleInvalid, ServiceRoleRefused

# What a name longer than this becomes in PostgreSQL: silently cut, so refused instead.
MAX_BYTES = 63
# Names PostgreSQL reserves, and the roles the lockdown revokes everything from (Supabase's).
RESERVED = frozenset(
    {
        "public",
        "none",
        "current_user",
        "session_user",
        "current_role",
        "anon",
        "authenticated",
        "service_role",
        "authenticator",
    }
)

_RECORD = f"{SCHEMA}.service_role"

# Whether the record exists, and whether this role may read it (from the catalogue: to_regclass
# is refused to a role without USAGE on the schema).
_RECORD_STATE = f"""
SELECT count(*) > 0 AS exists,
       coalesce(bool_and(pg_catalog.has_schema_privilege(n.oid, 'USAGE')
                         AND pg_catalog.has_table_privilege(c.oid, 'SELECT')), false) AS readable
  FROM pg_catalog.pg_class AS c
  JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
 WHERE n.nspname = '{SCHEMA}' AND c.relname = 'service_role'
"""

# The other databases of the server where the role holds a privilege (an ACL entry, default
# privileges included), owns an object, or is named by a row-level security policy.
_OTHER_DATABASES = """
SELECT DISTINCT d.datname::text
  FROM pg_catalog.pg_shdepend AS s
  JOIN pg_catalog.pg_database AS d ON d.oid = s.dbid
 WHERE s.refclassid = 'pg_catalog.pg_authid'::regclass
   AND s.refobjid = (SELECT r.oid FROM pg_catalog.pg_roles AS r WHERE r.rolname = $1)
   AND s.deptype IN ('a', 'o', 'r')
   AND d.datname <> pg_catalog.current_database()
 ORDER BY 1
"""


@dataclass(frozen=True, slots=True)
class Choice:
    """The role `db migrate` grants to, and the one it replaces here (None: no change)."""

    name: str
    old: str | None = None


def invalid(name: str) -> str | None:
    """Why `name` cannot be the service's role, in one sentence; None when it can."""
    shown = name[:80].encode("unicode_escape").decode("ascii")
    if not name.strip():
        return "the service's role needs a name (--service-role NAME)"
    if "\x00" in name:
        return f"the service's role {shown!r} holds a NUL character, which no role name may"
    if len(name.encode()) > MAX_BYTES:
        return (
            f"the service's role {shown!r} is {len(name.encode())} bytes long: PostgreSQL would "
            f"cut it to {MAX_BYTES}; choose a shorter name"
        )
    if name.lower() in RESERVED or name.lower().startswith("pg_"):
        return (
            f"the service's role cannot be {shown!r}: the name is reserved by PostgreSQL or "
            "is one of the API roles the lockdown revokes everything from"
        )
    return None


async def recorded(conn: asyncpg.Connection) -> str | None:
    """The name this database recorded at its last `db migrate`; None when it recorded none (a
    database migrated before the name was chosen used SERVICE_ROLE) or this role may not read
    it."""
    state = await conn.fetchrow(_RECORD_STATE)
    if not state["exists"] or not state["readable"]:
        return None
    name: str | None = await conn.fetchval(f"SELECT name FROM {_RECORD}")
    return name


# Who holds USAGE on the schema besides its owner: readable by anyone, unlike the record.
_SCHEMA_USERS = f"""
SELECT r.rolname::text
  FROM pg_catalog.pg_namespace AS n, pg_catalog.aclexplode(n.nspacl) AS a
  JOIN pg_catalog.pg_roles AS r ON r.oid = a.grantee
 WHERE n.nspname = '{SCHEMA}' AND a.privilege_type = 'USAGE' AND a.grantee <> n.nspowner
"""


async def in_use(conn: asyncpg.Connection) -> tuple[str, bool]:
    """The service's role of this database, and whether the database recorded it. Unrecorded
    (migrated before the name was chosen) it is SERVICE_ROLE; unreadable by this role (the
    record is the owner's and the service's), it is the one role that may use the schema."""
    name = await recorded(conn)
    if name is not None:
        return name, True
    state = await conn.fetchrow(_RECORD_STATE)
    if state["exists"]:
        users = [r[0] for r in await conn.fetch(_SCHEMA_USERS)]
        if len(users) == 1:
            return users[0], True
    return SERVICE_ROLE, False


async def other_databases(conn: asyncpg.Connection, name: str) -> list[str]:
    """The other databases of this server where the role holds privileges or owns objects."""
    return [r[0] for r in await conn.fetch(_OTHER_DATABASES, name)]


def suggestion(database: str) -> str:
    """A name of this database's own, written without quotes."""
    tail = re.sub(r"[^a-z0-9_]+", "_", database.lower()).strip("_") or "db"
    return f"{SERVICE_ROLE}_{tail}"[:MAX_BYTES]


def shared_sentence(name: str, databases: list[str], database: str) -> str:
    """The one sentence saying that the role is another database's too, and what to do."""
    listed = ", ".join(databases[:5]) + (
        f" and {len(databases) - 5} more" if len(databases) > 5 else ""
    )
    return (
        f"the service's role {name} already holds privileges or owns objects in the "
        f"database{'s' if len(databases) > 1 else ''} {listed} of this server, and a role is "
        "the whole server's (a login granted it here would reach the export functions there "
        "too): choose a name of this database's own, e.g. "
        f"`learner-export db migrate --service-role {suggestion(database)}`"
    )


async def choose(conn: asyncpg.Connection, given: str | None) -> Choice:
    """The role this migrate grants to: `given`, else the recorded one, else SERVICE_ROLE;
    ServiceRoleInvalid when the name cannot be one, ServiceRoleRefused when the role is another
    database's too. Reads only: nothing is changed before it answers."""
    previous = await recorded(conn)
    if previous is None and await conn.fetchval(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_class AS c"
        " JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace"
        " WHERE n.nspname = $1 AND c.relname = 'export_audit')",
        SCHEMA,
    ):
        previous = SERVICE_ROLE  # migrated before the name was recorded: the old constant
    name = given if given is not None else (previous or SERVICE_ROLE)
    if (why := invalid(name)) is not None:
        raise ServiceRoleInvalid(why)
    row = await conn.fetchrow(
        "SELECT r.rolsuper, r.rolbypassrls, r.rolname = current_user AS myself"
        " FROM pg_catalog.pg_roles AS r WHERE r.rolname = $1",
        name,
    )
    if row is not None and (row["rolsuper"] or row["rolbypassrls"] or row["myself"]):
        raise ServiceRoleInvalid(
            f"the service's role cannot be {name}: it is "
            + ("the role running db migrate" if row["myself"] else "a superuser or bypasses RLS")
            + ", and the service's role must hold nothing but what db migrate grants it"
        )
    databases = await other_databases(conn, name)
    if databases:
        database: str = await conn.fetchval("SELECT pg_catalog.current_database()")
        raise ServiceRoleRefused(shared_sentence(name, databases, database))
    return Choice(name, previous if previous is not None and previous != name else None)


async def settle(conn: asyncpg.Connection, choice: Choice, lockdown: str) -> None:
    """In the caller's transaction: the role created if missing, its name recorded, and the
    lockdown applied to it (the old role, if any, loses everything in the schema)."""
    await conn.execute(
        "SELECT pg_catalog.set_config('learner_export.service_role', $1, true),"
        " pg_catalog.set_config('learner_export.old_service_role', $2, true)",
        choice.name,
        choice.old or "",
    )
    if not await conn.fetchval(
        "SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = $1)", choice.name
    ):
        # Made NOLOGIN: operators grant it to the login role the service connects as.
        await conn.execute(
            await conn.fetchval(
                "SELECT pg_catalog.format('CREATE ROLE %I NOLOGIN', $1::text)", choice.name
            )
        )
    await conn.execute(
        f"INSERT INTO {_RECORD} (name) VALUES ($1)"
        " ON CONFLICT (only_row) DO UPDATE SET name = EXCLUDED.name",
        choice.name,
    )
    await conn.execute(lockdown)


_GRANTED = """
SELECT current_user::text AS login,
       pg_catalog.quote_ident(current_user) AS login_quoted,
       pg_catalog.quote_ident($1) AS quoted,
       r.rolsuper OR r.rolbypassrls AS above,
       coalesce(pg_catalog.pg_has_role(current_user, s.oid, 'USAGE'), false) AS holds,
       coalesce((SELECT pg_catalog.pg_has_role(current_user, n.nspowner, 'USAGE')
                   FROM pg_catalog.pg_namespace AS n WHERE n.nspname = $2), false) AS owner
  FROM pg_catalog.pg_roles AS r
  LEFT JOIN pg_catalog.pg_roles AS s ON s.rolname = $1
 WHERE r.rolname = current_user
"""


async def not_granted(conn: asyncpg.Connection) -> str | None:
    """One sentence when the login connected neither holds this database's service role nor
    owns the schema (nor is a superuser): its exports would be refused; None when it may
    export. What `serve` warns at start, after a new name for instance."""
    name, _ = await in_use(conn)
    row = await conn.fetchrow(_GRANTED, name, SCHEMA)
    if row is None or row["above"] or row["holds"] or row["owner"]:
        return None
    return (
        f"the login {row['login']} does not hold this database's service role {name}: exports "
        f"will be refused (permission denied) until `GRANT {row['quoted']} TO "
        f"{row['login_quoted']}`"
    )
