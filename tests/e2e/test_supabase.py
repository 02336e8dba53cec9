"""Safe on Supabase: with the API roles and default privileges Supabase sets up, the service's
schema answers "permission denied" to `anon` and `authenticated`, whatever they call."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest

from learner_export.config import Settings
from learner_export.contract import FUNCTIONS, SCHEMA
from learner_export.demo import seed as demo
from tests.conftest import SERVICE_LOGIN_SQL, Database, _admin, _with_database, run

API_ROLES = ("anon", "authenticated", "service_role")

# Cluster-wide roles: made once, shared by every database of the server.
ROLES_SQL = (
    "DO $$ BEGIN "
    + " ".join(
        f"IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{r}') THEN CREATE ROLE {r} NOLOGIN;"
        " END IF;"
        for r in API_ROLES
    )
    + " END $$;"
)

# As Supabase sets them, for the migrating role and without FOR ROLE; the global default (no
# schema) too, so that whatever the service creates anywhere starts out granted to the API roles.
DEFAULT_PRIVILEGES_SQL = """
GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON TABLES TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public
    GRANT ALL ON FUNCTIONS TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public
    GRANT ALL ON SEQUENCES TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES GRANT ALL ON TABLES TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES GRANT ALL ON FUNCTIONS TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES GRANT ALL ON SEQUENCES TO anon, authenticated, service_role;
"""


@pytest.fixture(scope="module")
def supabase(pg_server: str) -> Iterator[Database]:
    """A fresh database with Supabase's API roles and default privileges, then the sample step
    and `db migrate` with the sample adapter."""
    name = f"learner_export_supabase_{uuid.uuid4().hex[:12]}"
    run(_admin(pg_server, ROLES_SQL))
    run(_admin(pg_server, f'CREATE DATABASE "{name}"'))
    url = _with_database(pg_server, name)
    try:
        run(_admin(url, DEFAULT_PRIVILEGES_SQL))
        admin = run(
            demo.prepare_demo(url, Settings(database_url=url), learners=300, clients=3, data_seed=5)
        )
        run(_admin(url, SERVICE_LOGIN_SQL))
        yield Database(url, admin)
    finally:
        run(_admin(pg_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _call(name: str) -> str:
    """A call of a contract function with every parameter NULL but the caller."""
    want = next(f for f in FUNCTIONS if f.name == name)
    args = ", ".join("$1" if n == "p_caller" else "NULL" for n, _ in want.parameters)
    return f"SELECT * FROM {SCHEMA}.{name}({args})"


def _statements() -> list[tuple[str, str, tuple[Any, ...]]]:
    """Every way in: each contract function, the audit trail (read, write, change) and the
    bookkeeping; (label, statement, arguments)."""
    audit = f"{SCHEMA}.export_audit"
    return [
        *((f.name, _call(f.name), ("caller",)) for f in FUNCTIONS),
        ("select audit", f"SELECT * FROM {audit}", ()),
        (
            "insert audit",
            f"INSERT INTO {audit} (id, request_id, outcome) VALUES ($1, 'forged', 'completed')",
            (str(uuid.uuid4()),),
        ),
        ("update audit", f"UPDATE {audit} SET outcome = 'completed'", ()),
        ("select migrations", f"SELECT * FROM {SCHEMA}.schema_migrations", ()),
        ("update migrations", f"UPDATE {SCHEMA}.schema_migrations SET checksum = ''", ()),
    ]


async def _as(
    url: str, role: str, admin_id: str, statement: str, args: tuple[Any, ...]
) -> BaseException | list[asyncpg.Record]:
    """Run one statement as `role`, with the JWT claims PostgREST would set for the admin."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"SET ROLE {role}")
        claims = json.dumps({"sub": admin_id, "role": role})
        await conn.execute("SELECT set_config('request.jwt.claims', $1, false)", claims)
        await conn.execute("SELECT set_config('request.jwt.claim.sub', $1, false)", admin_id)
        values = tuple(admin_id if a == "caller" else a for a in args)
        try:
            return list(await conn.fetch(statement, *values))
        except asyncpg.PostgresError as exc:
            refused: BaseException = exc
            return refused
    finally:
        await conn.close()


@pytest.mark.parametrize("role", ["anon", "authenticated"])
def test_api_roles_are_refused_everywhere(supabase: Database, role: str) -> None:
    outcomes = {
        label: run(_as(supabase.url, role, supabase.admin_id, statement, args))
        for label, statement, args in _statements()
    }
    allowed = {
        label: o
        for label, o in outcomes.items()
        if not isinstance(o, asyncpg.InsufficientPrivilegeError)
    }
    assert not allowed, f"{role} was not refused: {allowed}"
    assert all("permission denied" in str(o) for o in outcomes.values())


def test_the_admin_can_still_export_as_the_service_role(supabase: Database) -> None:
    """The lockdown refuses the API roles, not the service: its login role reads every row."""

    async def count() -> int:
        conn = await asyncpg.connect(supabase.service_url)
        try:
            value: int = await conn.fetchval(
                f"SELECT {SCHEMA}.count_learner_export($1::uuid)", supabase.admin_id
            )
            return value
        finally:
            await conn.close()

    assert run(count()) == 300


def test_no_grant_on_the_schema_reaches_the_api_roles(supabase: Database) -> None:
    async def grants() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(supabase.url)
        try:
            return list(
                await conn.fetch(
                    "SELECT c.relname AS object, a.grantee::regrole::text AS grantee"
                    "  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,"
                    "       aclexplode(c.relacl) a"
                    " WHERE n.nspname = $1 AND a.grantee IN (SELECT oid FROM pg_roles"
                    "       WHERE rolname = ANY ($2::text[]))"
                    " UNION ALL"
                    " SELECT p.proname, CASE WHEN a.grantee = 0 THEN 'PUBLIC'"
                    "        ELSE a.grantee::regrole::text END"
                    "  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace,"
                    "       aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a"
                    " WHERE n.nspname = $1 AND (a.grantee = 0 OR a.grantee IN (SELECT oid"
                    "       FROM pg_roles WHERE rolname = ANY ($2::text[])))",
                    SCHEMA,
                    list(API_ROLES),
                )
            )
        finally:
            await conn.close()

    assert [dict(r) for r in run(grants())] == []


def test_db_check_says_the_contract_is_met(supabase: Database) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "learner_export.cli.main", "db", "check"],
        env={**os.environ, "DATABASE_URL": supabase.url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "contract met" in result.stdout
    assert "Traceback" not in result.stderr
