"""Safe on Supabase: with the API roles and default privileges Supabase sets up, the service's
schema answers "permission denied" to `anon` and `authenticated`, whatever they call; the sample
tables `db seed` makes are closed to them too; the shipped Supabase adapter meets the contract
as the service's login; `db check` warns about what Supabase's linter would, and about FORCE
ROW LEVEL SECURITY that hides rows from the adapter."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from learner_export import sql
from learner_export.config import Settings
from learner_export.contract import FUNCTIONS, SCHEMA
from learner_export.demo import seed as demo
from tests.conftest import (
    SERVICE_LOGIN_SQL,
    Database,
    _admin,
    _with_database,
    run,
    service_role_of,
)

API_ROLES = ("anon", "authenticated", "service_role")
ROOT = Path(__file__).resolve().parents[2]
SUPABASE_ADAPTER = Path(str(sql.SUPABASE_ADAPTER))

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
        settings = Settings(database_url=url, service_role=service_role_of(url))
        admin = run(demo.prepare_demo(url, settings, learners=300, clients=3, data_seed=5))
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


# Supabase's linter, as far as security goes, on what the service and `db seed` create: tables in
# an exposed schema without row-level security (ERROR), SECURITY DEFINER functions in an
# exposed schema that anon or authenticated may execute (WARN), functions there with a mutable
# search_path (WARN); and any table an API role may read or write.
LINT_SQL = """
SELECT 'rls_disabled_in_public ' || c.oid::regclass::text
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relrowsecurity
UNION ALL
SELECT 'security_definer_function_executable ' || p.oid::regprocedure::text || ' by ' || r.rolname
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace, pg_roles r
 WHERE n.nspname = 'public' AND p.prosecdef AND r.rolname IN ('anon', 'authenticated')
   AND has_function_privilege(r.oid, p.oid, 'EXECUTE')
UNION ALL
SELECT 'function_search_path_mutable ' || p.oid::regprocedure::text
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = 'public' AND p.proconfig IS NULL
UNION ALL
SELECT 'table_granted ' || c.oid::regclass::text || ' to ' || r.rolname
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, pg_roles r
 WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND c.relkind IN ('r', 'p', 'v')
   AND r.rolname IN ('anon', 'authenticated')
   AND has_table_privilege(r.oid, c.oid, 'SELECT, INSERT, UPDATE, DELETE')
"""


def _lint(url: str) -> list[str]:
    async def go() -> list[str]:
        conn = await asyncpg.connect(url)
        try:
            return [r[0] for r in await conn.fetch(LINT_SQL)]
        finally:
            await conn.close()

    found: list[str] = run(go())
    return found


def test_the_sample_tables_are_closed_to_the_api_roles(supabase: Database) -> None:
    """`db seed`'s tables under Supabase's default privileges: RLS on, no grant to anon or
    authenticated, so the sample profiles the sample adapter trusts cannot be forged."""
    assert _lint(supabase.url) == []
    for role in ("anon", "authenticated"):
        for statement in (
            "SELECT * FROM public.profiles",
            "SELECT * FROM public.learners",
            "UPDATE public.profiles SET role = 'Admin'",
            f"INSERT INTO public.profiles (id, role) VALUES ('{uuid.uuid4()}', 'Admin')",
        ):
            outcome = run(_as(supabase.url, role, supabase.admin_id, statement, ()))
            assert isinstance(outcome, asyncpg.InsufficientPrivilegeError), (role, statement)


@pytest.fixture(scope="module")
def platform(pg_server: str) -> Iterator[Database]:
    """A Supabase-shaped platform (auth.users, profiles with lower-case roles, organizations,
    a staff join table) under Supabase's roles and default privileges, with the shipped Supabase
    adapter applied by `db migrate`."""
    name = f"learner_export_platform_{uuid.uuid4().hex[:12]}"
    run(_admin(pg_server, ROLES_SQL))
    run(_admin(pg_server, f'CREATE DATABASE "{name}"'))
    url = _with_database(pg_server, name)
    try:
        run(_admin(url, DEFAULT_PRIVILEGES_SQL))
        run(_admin(url, (ROOT / "tests" / "schemas" / "supabase_like.sql").read_text()))
        migrate = _cli(url, "db", "migrate", "--adapter", str(SUPABASE_ADAPTER))
        assert migrate.returncode == 0, migrate.stderr
        run(_admin(url, SERVICE_LOGIN_SQL))
        yield Database(url, str(uuid.UUID(hashlib.md5(b"user/1201").hexdigest())))
    finally:
        run(_admin(pg_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "learner_export.cli.main", *args],
        # Each database its own service role, as `db migrate` requires of a shared server.
        env={**os.environ, "DATABASE_URL": url, "EXPORT_SERVICE_ROLE": service_role_of(url)},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def test_the_supabase_adapter_meets_the_contract_as_the_service_login(platform: Database) -> None:
    result = _cli(platform.service_url, "db", "check", "--as", platform.admin_id)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "contract met: 0 error(s)" in result.stdout
    assert "keyset (joined_at, learner_id)" in result.stdout
    assert "the first 1,200 rows (of 1,200)" in result.stdout
    assert "WARNING" not in result.stdout.replace(
        "WARNING  this role", ""
    )  # nothing but, at most, the login role's own note


def test_db_check_warns_about_a_security_definer_function_the_api_may_call(
    platform: Database,
) -> None:
    run(
        _admin(
            platform.url,
            "CREATE FUNCTION public.export_helper(p uuid) RETURNS text LANGUAGE sql"
            " SECURITY DEFINER SET search_path = '' AS $$ SELECT p::text $$",
        )
    )
    try:
        result = _cli(platform.service_url, "db", "check")
        assert "WARNING  public.export_helper(p uuid) is SECURITY DEFINER" in result.stdout, (
            result.stdout
        )
        assert "anon, authenticated may execute it" in result.stdout
    finally:
        run(_admin(platform.url, "DROP FUNCTION public.export_helper(uuid)"))


def test_db_check_finds_force_rls_that_hides_rows_from_the_adapter(pg_server: str) -> None:
    """FORCE ROW LEVEL SECURITY on a child table, owned (with the functions) by a role that is
    no superuser: the functions read none of its rows, and exports would say zero."""
    name = f"learner_export_force_{uuid.uuid4().hex[:12]}"
    run(
        _admin(
            pg_server,
            "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'platform_owner')"
            " THEN CREATE ROLE platform_owner NOLOGIN; END IF; END $$",
        )
    )
    run(_admin(pg_server, f'CREATE DATABASE "{name}"'))
    url = _with_database(pg_server, name)
    try:
        run(_admin(url, (ROOT / "tests" / "schemas" / "supabase_like.sql").read_text()))
        assert _cli(url, "db", "migrate", "--adapter", str(SUPABASE_ADAPTER)).returncode == 0
        run(
            _admin(
                url,
                "GRANT USAGE ON SCHEMA auth, learner_export TO platform_owner;"
                " GRANT CREATE ON SCHEMA learner_export TO platform_owner;"
                " GRANT SELECT ON ALL TABLES IN SCHEMA public, auth TO platform_owner;"
                " ALTER TABLE public.course_progress OWNER TO platform_owner;"
                " ALTER TABLE public.course_progress ENABLE ROW LEVEL SECURITY;"
                " ALTER TABLE public.course_progress FORCE ROW LEVEL SECURITY;"
                " DO $$ DECLARE f regprocedure; BEGIN FOR f IN SELECT oid::regprocedure"
                " FROM pg_proc WHERE pronamespace = 'learner_export'::regnamespace LOOP"
                " EXECUTE format('ALTER FUNCTION %s OWNER TO platform_owner', f); END LOOP;"
                " END $$;",
            )
        )
        result = _cli(url, "db", "check")
        assert result.returncode == 1, result.stdout
        assert (
            "public.course_progress has FORCE ROW LEVEL SECURITY and no policy for its owner "
            "platform_owner" in result.stdout
        )
        run(
            _admin(
                url,
                "CREATE POLICY owner_reads ON public.course_progress TO platform_owner"
                " USING (true)",
            )
        )
        assert "FORCE ROW LEVEL SECURITY" not in _cli(url, "db", "check").stdout
    finally:
        run(_admin(pg_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
