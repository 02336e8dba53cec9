"""`db migrate`: the schema learner_export brought up to date, and nothing outside it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import asyncpg

from learner_export import sql
from learner_export.contract import NAMES, ROWS_VIEW, _problems_of, read_functions, read_rows_view
from learner_export.contract.guard import CONTRACT_LOCK
from learner_export.db import role
from learner_export.errors import ContractNotMet

SCHEMA = "learner_export"
# How long `db migrate` waits for running exports to end before it changes the adapter.
WAIT_SECONDS = 30.0


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _checksum(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _line_of(text: str, position: str | None) -> str:
    """' at line N' for an error's 1-based character position in `text`, if it has one."""
    if not position or not position.isdigit():
        return ""
    return f" at line {text.count(chr(10), 0, int(position) - 1) + 1}"


async def _drop_contract(conn: asyncpg.Connection) -> None:
    """Drop the contract's bulk view and functions (every overload), so that the adapter
    re-creates them with whatever result columns it now has: CREATE OR REPLACE cannot change a
    result type (and the view depends on export_scope())."""
    found = await conn.fetch(
        "SELECT p.oid::regprocedure::text FROM pg_catalog.pg_proc AS p"
        " JOIN pg_catalog.pg_namespace AS n ON n.oid = p.pronamespace"
        " WHERE n.nspname = $1 AND p.proname = ANY ($2::text[])",
        SCHEMA,
        list(NAMES),
    )
    try:
        await conn.execute(f"DROP VIEW IF EXISTS {SCHEMA}.{ROWS_VIEW}")
        if not found:
            return
        # One statement: functions that depend on one another go together; anything else
        # that depends on them stops the migration (no CASCADE into the platform's objects).
        await conn.execute("DROP FUNCTION " + ", ".join(r[0] for r in found))
    except asyncpg.DependentObjectsStillExistError as exc:
        raise ContractNotMet(
            [
                "the adapter's old functions cannot be replaced: "
                f"{exc.args[0] if exc.args else exc}"
                + (f" ({exc.detail})" if getattr(exc, "detail", None) else "")
                + "; drop or change what depends on them first"
            ]
        ) from None


async def _apply_adapter(conn: asyncpg.Connection, text: str, name: str, wait: float) -> None:
    """Re-create the contract's functions from the adapter, check them, or raise ContractNotMet
    (the caller's transaction then rolls back: the old adapter stays as it was)."""
    # Running exports hold the contract shared: they finish on the columns they began with.
    await conn.execute(f"SET LOCAL lock_timeout = '{int(wait * 1000)}ms'")
    try:
        await conn.execute(f"SELECT pg_catalog.pg_advisory_xact_lock(({CONTRACT_LOCK}))")
    except asyncpg.LockNotAvailableError:
        raise ContractNotMet(
            [
                f"exports still running after {wait:g} s hold the export contract; the adapter "
                "was not applied: run `db migrate` again when they have ended"
            ]
        ) from None
    await conn.execute("SET LOCAL lock_timeout = 0")
    await _drop_contract(conn)
    try:
        await conn.execute(text)
    except asyncpg.PostgresError as exc:
        raise ContractNotMet(
            [
                f"the adapter {name} failed{_line_of(text, getattr(exc, 'position', None))}: "
                f"{exc.args[0] if exc.args else exc} (SQLSTATE {exc.sqlstate}); nothing was "
                "changed"
            ]
        ) from None
    problems = _problems_of(await read_functions(conn), await read_rows_view(conn))[0]
    if problems:
        raise ContractNotMet(
            [f"the adapter {name} does not meet the contract; nothing was changed:", *problems]
        )


async def migrate(
    conn: asyncpg.Connection,
    adapter: Path | None = None,
    *,
    wait: float = WAIT_SECONDS,
    service_role: str | None = None,
) -> list[str]:
    """Bring the schema learner_export up to date; nothing outside it is created or changed.

    The numbered migrations (tables: append-only) not yet recorded run in order, each in its
    own transaction with its record. The adapter (the contract's functions, written once and
    re-applied whenever its text changes) runs when its checksum differs from the one recorded:
    in one transaction, its old functions are dropped, the new ones created and checked against
    the contract, and the lockdown applied, so that a running service never sees a broken or
    unguarded contract (ContractNotMet says why it was refused). Then the lockdown revokes every
    grant on the schema and gives the service's role what it needs. An advisory lock keeps two
    migrating processes from racing. Returns what was applied.

    The service's role is `service_role`, else the one this database recorded, else
    SERVICE_ROLE (learner_export.db.role): checked before anything changes (ServiceRoleInvalid,
    or ServiceRoleRefused when it is another database's too), created if missing, recorded, and
    granted to in the lockdown's transaction, in which a role it replaces loses its grants here.
    """
    applied: list[str] = []
    await conn.execute("SELECT pg_advisory_lock(hashtext('learner-export migrations'))")
    try:
        choice = await role.choose(conn, service_role)
        await conn.execute(
            f"CREATE SCHEMA IF NOT EXISTS {SCHEMA};"
            f" REVOKE ALL ON SCHEMA {SCHEMA} FROM PUBLIC;"
            f" CREATE TABLE IF NOT EXISTS {SCHEMA}.schema_migrations ("
            " name text PRIMARY KEY, checksum text NOT NULL DEFAULT '',"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {
            r["name"]: r["checksum"]
            for r in await conn.fetch(f"SELECT name, checksum FROM {SCHEMA}.schema_migrations")
        }
        for resource in sql.migration_files():
            if resource.name in done:
                continue
            text = sql.read(resource)
            async with conn.transaction():
                await conn.execute(text)
                await conn.execute(
                    f"INSERT INTO {SCHEMA}.schema_migrations (name, checksum) VALUES ($1, $2)",
                    resource.name,
                    _checksum(text),
                )
            applied.append(resource.name)
        lockdown = sql.read(sql.LOCKDOWN)
        if adapter is not None:
            text = _read(adapter)
            key = "adapter"
            if done.get(key) != _checksum(text):
                async with conn.transaction():
                    await _apply_adapter(conn, text, adapter.name, wait)
                    await conn.execute(
                        f"INSERT INTO {SCHEMA}.schema_migrations (name, checksum) VALUES ($1, $2)"
                        " ON CONFLICT (name) DO UPDATE SET checksum = EXCLUDED.checksum,"
                        " applied_at = now()",
                        key,
                        _checksum(text),
                    )
                    await role.settle(conn, choice, lockdown)
                applied.append(f"adapter {adapter.name}")
        async with conn.transaction():
            await role.settle(conn, choice, lockdown)
        if choice.old is not None:
            applied.append(f"service role {choice.name} (replacing {choice.old})")
    finally:
        await conn.execute("SELECT pg_advisory_unlock(hashtext('learner-export migrations'))")
    return applied
