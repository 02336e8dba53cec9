"""`db migrate` on databases it did not make: a platform's own tables are left byte-equal, a
database of the first layout (everything in public) is upgraded, and `db check` says in
sentences what an adapter lacks."""

from __future__ import annotations

import contextlib
import csv
import io
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from learner_export import sql
from learner_export.db.migrate import migrate
from tests.conftest import (
    SERVICE_LOGIN_SQL,
    _admin,
    _with_database,
    export_bytes,
    query,
    run,
    service_role_of,
)

ROOT = Path(__file__).resolve().parents[2]
SQL_DIR = ROOT / "learner_export" / "sql"
SAMPLE_ADAPTER = SQL_DIR / "adapters" / "sample.sql"
OLD_LAYOUT = "f22a0a3"  # the last commit whose migrations kept everything in public

# A platform that grew its own tables: shapes the sample schema does not have.
PLATFORM_SQL = """
CREATE TYPE public.app_role AS ENUM ('student', 'staff', 'admin');
CREATE TABLE public.clients (id uuid PRIMARY KEY, name text NOT NULL, region text NOT NULL);
CREATE TABLE public.profiles (
    id uuid PRIMARY KEY,
    role public.app_role NOT NULL,
    tenant text NOT NULL,
    display_name text NOT NULL,
    client_id uuid REFERENCES public.clients (id),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX profiles_by_client ON public.profiles (client_id, created_at);
CREATE TABLE public.progress (profile_id uuid REFERENCES public.profiles (id), score numeric);
CREATE FUNCTION public.get_learner_export_batch(p uuid) RETURNS int LANGUAGE sql AS 'SELECT 1';
CREATE VIEW public.students AS SELECT id, display_name FROM public.profiles
    WHERE role = 'student';
GRANT SELECT ON public.profiles TO PUBLIC;
REVOKE EXECUTE ON FUNCTION public.get_learner_export_batch(uuid) FROM PUBLIC;
INSERT INTO public.clients VALUES ('11111111-1111-1111-1111-111111111111', 'A', 'eu');
INSERT INTO public.profiles (id, role, tenant, display_name, client_id) VALUES
    ('22222222-2222-2222-2222-222222222222', 'admin', 't', 'Ada', NULL),
    ('33333333-3333-3333-3333-333333333333', 'student', 't', 'Sam',
     '11111111-1111-1111-1111-111111111111');
"""

# Every object outside the service's schema, as the catalogue describes it: relations with
# their columns, constraints, indexes and grants; functions with their text, attributes and
# grants; types; schemas and their grants.
CATALOGUE_SQL = """
WITH ns AS (
    SELECT oid, nspname FROM pg_namespace
     WHERE nspname NOT IN ('learner_export', 'pg_catalog', 'information_schema', 'pg_toast')
       AND nspname NOT LIKE 'pg_temp%' AND nspname NOT LIKE 'pg_toast_temp%'
)
SELECT 'schema ' || ns.nspname || ' acl=' || coalesce(n.nspacl::text, '-')
  FROM ns JOIN pg_namespace n ON n.oid = ns.oid
UNION ALL
SELECT 'rel ' || ns.nspname || '.' || c.relname || ' kind=' || c.relkind::text
       || ' owner=' || c.relowner::regrole || ' acl=' || coalesce(c.relacl::text, '-')
       || ' rls=' || c.relrowsecurity
       || coalesce(' view=' || pg_get_viewdef(c.oid), '')
  FROM pg_class c JOIN ns ON ns.oid = c.relnamespace
UNION ALL
SELECT 'col ' || ns.nspname || '.' || c.relname || '.' || a.attname || ' '
       || format_type(a.atttypid, a.atttypmod) || ' notnull=' || a.attnotnull
       || ' default=' || coalesce(pg_get_expr(d.adbin, d.adrelid), '-')
       || ' acl=' || coalesce(a.attacl::text, '-')
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN ns ON ns.oid = c.relnamespace
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'con ' || ns.nspname || '.' || c.relname || '.' || k.conname || ' '
       || pg_get_constraintdef(k.oid)
  FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN ns ON ns.oid = c.relnamespace
UNION ALL
SELECT 'idx ' || pg_get_indexdef(i.indexrelid)
  FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid JOIN ns ON ns.oid = c.relnamespace
UNION ALL
SELECT 'fn ' || p.oid::regprocedure || ' owner=' || p.proowner::regrole
       || ' acl=' || coalesce(p.proacl::text, '-') || ' def=' || pg_get_functiondef(p.oid)
  FROM pg_proc p JOIN ns ON ns.oid = p.pronamespace WHERE p.prokind IN ('f', 'p')
UNION ALL
SELECT 'type ' || ns.nspname || '.' || t.typname || ' acl=' || coalesce(t.typacl::text, '-')
       || ' labels=' || coalesce((SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder)
                                    FROM pg_enum e WHERE e.enumtypid = t.oid), '-')
  FROM pg_type t JOIN ns ON ns.oid = t.typnamespace
 ORDER BY 1
"""


@contextlib.contextmanager
def empty_database(server: str) -> Iterator[str]:
    name = f"learner_export_migrate_{uuid.uuid4().hex[:12]}"
    run(_admin(server, f'CREATE DATABASE "{name}"'))
    try:
        yield _with_database(server, name)
    finally:
        run(_admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        run(_admin(server, f'DROP ROLE IF EXISTS "{name}_service"'))


def catalogue(url: str) -> list[str]:
    return [r[0] for r in query(url, CATALOGUE_SQL)]


async def _migrate(url: str, adapter: Path | None = None) -> list[str]:
    conn = await asyncpg.connect(url)
    try:
        return await migrate(conn, adapter, service_role=service_role_of(url))
    finally:
        await conn.close()


def cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "learner_export.cli.main", *args],
        env={**os.environ, "DATABASE_URL": url, "EXPORT_SERVICE_ROLE": service_role_of(url)},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def test_migrate_leaves_an_existing_platform_untouched(pg_server: str) -> None:
    with empty_database(pg_server) as url:
        run(_admin(url, PLATFORM_SQL))
        before = catalogue(url)
        data_before = query(url, "SELECT * FROM public.profiles ORDER BY id")

        result = cli(url, "db", "migrate")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Traceback" not in result.stderr

        assert catalogue(url) == before
        assert query(url, "SELECT * FROM public.profiles ORDER BY id") == data_before
        assert run(_migrate(url)) == []  # the second time, nothing is applied
        assert catalogue(url) == before


def test_the_catalogue_dump_sees_a_change_outside_the_schema(pg_server: str) -> None:
    """The comparison above can fail: a column default or a grant changed is seen."""
    with empty_database(pg_server) as url:
        run(_admin(url, PLATFORM_SQL))
        before = catalogue(url)
        run(_admin(url, "ALTER TABLE public.profiles ALTER tenant SET DEFAULT 'x'"))
        assert catalogue(url) != before
        changed = catalogue(url)
        run(
            _admin(url, "GRANT EXECUTE ON FUNCTION public.get_learner_export_batch(uuid) TO PUBLIC")
        )
        assert catalogue(url) != changed


def _old_file(path: str) -> str:
    try:
        return subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{OLD_LAYOUT}:{path}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"the first layout's SQL is not in this checkout's history: {exc}")


def _old_migrations() -> list[tuple[str, str]]:
    names = subprocess.run(
        ["git", "-C", str(ROOT), "ls-tree", "--name-only", OLD_LAYOUT, "sql/"],
        capture_output=True,
        text=True,
    ).stdout.split()
    files = sorted(n for n in names if n.endswith(".sql"))
    if not files:
        pytest.skip("the first layout's SQL is not in this checkout's history")
    return [(Path(n).name, _old_file(n)) for n in files]


async def _old_layout(url: str, learners: int) -> str:
    """A database as the first layout's runner left it: its migrations in
    public.schema_migrations, seeded with its own seeder, an admin and one audit row."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "CREATE TABLE public.schema_migrations (name text PRIMARY KEY,"
            " applied_at timestamptz DEFAULT now())"
        )
        for name, text in _old_migrations():
            async with conn.transaction():
                await conn.execute(text)
                await conn.execute("INSERT INTO public.schema_migrations (name) VALUES ($1)", name)
        async with conn.transaction():
            await conn.execute(_old_file("sql/seed/demo_data.sql"))
            await conn.execute("SELECT pg_temp.learner_export_seed($1, 3, 11)", learners)
        admin = str(uuid.uuid4())
        await conn.execute("INSERT INTO public.profiles (id, role) VALUES ($1, 'Admin')", admin)
        await conn.execute(
            "INSERT INTO public.export_audit (id, caller_id, request_id, outcome)"
            " VALUES ($1, $2, 'old-request', 'completed')",
            str(uuid.uuid4()),
            admin,
        )
        return admin
    finally:
        await conn.close()


def test_a_database_of_the_first_layout_is_upgraded(pg_server: str) -> None:
    with empty_database(pg_server) as url:
        admin = run(_old_layout(url, learners=250))
        old_functions = query(
            url,
            "SELECT proname FROM pg_proc WHERE pronamespace ="
            " 'public'::regnamespace AND proname LIKE '%learner_export%'",
        )
        assert old_functions  # the first layout's functions were there

        applied = run(_migrate(url, SAMPLE_ADAPTER))
        assert applied == [*(f.name for f in sql.migration_files()), "adapter sample.sql"]
        run(_admin(url, SERVICE_LOGIN_SQL))

        assert (
            query(
                url,
                "SELECT proname FROM pg_proc WHERE pronamespace ="
                " 'public'::regnamespace AND proname LIKE '%learner_export%'",
            )
            == []
        )
        assert query(
            url,
            "SELECT to_regclass('public.export_audit') IS NULL,"
            " to_regclass('public.schema_migrations') IS NULL",
        )[0] == (True, True)
        assert [
            r["request_id"]
            for r in query(url, "SELECT request_id FROM learner_export.export_audit")
        ] == ["old-request"]

        body, _ = run(export_bytes(url, admin, format="csv"))
        rows = list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"))))
        assert len(rows) == 250
        want = query(url, "SELECT id::text FROM public.learners ORDER BY created_at, id")
        assert [r["learner_id"] for r in rows] == [w[0] for w in want]
        assert run(_migrate(url, SAMPLE_ADAPTER)) == []


def test_db_check_names_what_a_database_without_an_adapter_lacks(pg_server: str) -> None:
    with empty_database(pg_server) as url:
        assert cli(url, "db", "migrate").returncode == 0
        result = cli(url, "db", "check")
        assert result.returncode == 1
        assert "Traceback" not in result.stdout + result.stderr
        for name in (
            "caller_role",
            "export_scope",
            "get_learner_export_batch",
            "count_learner_export",
            "learner_export_page_ends",
        ):
            assert f"learner_export.{name} is missing" in result.stdout
        assert "contract NOT met" in result.stdout


# The sample adapter with its page function changed: `extra` of a type no format supports.
def _adapter_with(tmp_path: Path, old: str, new: str) -> Path:
    text = SAMPLE_ADAPTER.read_text()
    assert old in text
    path = tmp_path / "adapter.sql"
    path.write_text(text.replace(old, new))
    return path


def _contract_columns(url: str) -> list[str]:
    return [
        r[0]
        for r in query(
            url,
            "SELECT unnest(proargnames[9:]) FROM pg_proc"
            " WHERE proname = 'get_learner_export_batch'"
            " AND pronamespace = 'learner_export'::regnamespace",
        )
    ]


@pytest.mark.parametrize(
    ("pg_type", "value"), [("jsonb", "'{}'::jsonb"), ("integer[]", "ARRAY[1]")]
)
def test_an_unsupported_column_is_refused_by_migrate_and_named_by_check(
    pg_server: str, tmp_path: Path, pg_type: str, value: str
) -> None:
    adapter = _adapter_with(
        tmp_path,
        "    notes                text\n)",
        f"    notes                text,\n    extra                {pg_type}\n)",
    )
    adapter.write_text(
        adapter.read_text().replace(
            "               l.notes\n", f"               l.notes, {value}\n"
        )
    )
    sentence = f"column extra of learner_export.get_learner_export_batch has type {pg_type}"
    with empty_database(pg_server) as url:
        run(_admin(url, (SQL_DIR / "sample" / "schema.sql").read_text()))
        assert cli(url, "db", "migrate", "--adapter", str(SAMPLE_ADAPTER)).returncode == 0
        before = _contract_columns(url)

        refused = cli(url, "db", "migrate", "--adapter", str(adapter))
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert "Traceback" not in refused.stdout + refused.stderr
        assert sentence in refused.stderr
        assert "nothing was changed" in refused.stderr
        assert _contract_columns(url) == before  # rolled back: the sample adapter stays

        # Applied by hand, past migrate: db check names it.
        run(_admin(url, "DROP FUNCTION learner_export.get_learner_export_batch"))
        run(_admin(url, adapter.read_text()))
        result = cli(url, "db", "check")
        assert result.returncode == 1, result.stdout
        assert "Traceback" not in result.stdout + result.stderr
        assert sentence in result.stdout


def test_a_function_without_security_definer_or_search_path_is_refused(
    pg_server: str, tmp_path: Path
) -> None:
    adapter = _adapter_with(
        tmp_path,
        "RETURNS text\nLANGUAGE sql\nSTABLE\nSECURITY DEFINER\nSET search_path = ''\n",
        "RETURNS text\nLANGUAGE sql\nSTABLE\n",
    )
    with empty_database(pg_server) as url:
        run(_admin(url, (SQL_DIR / "sample" / "schema.sql").read_text()))
        refused = cli(url, "db", "migrate", "--adapter", str(adapter))
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert "learner_export.caller_role is not SECURITY DEFINER" in refused.stderr
        assert "learner_export.caller_role lacks SET search_path = ''" in refused.stderr
        assert "export_scope is not" not in refused.stderr
        assert query(url, "SELECT to_regproc('learner_export.caller_role')")[0][0] is None

        # Applied by hand: db check says so, and serve refuses to start, in one sentence.
        assert cli(url, "db", "migrate").returncode == 0
        run(_admin(url, adapter.read_text()))
        result = cli(url, "db", "check")
        assert result.returncode == 1, result.stdout
        assert "learner_export.caller_role is not SECURITY DEFINER" in result.stdout
        assert "learner_export.caller_role lacks SET search_path = ''" in result.stdout
        assert "learner_export.export_scope is not" not in result.stdout

        serve = subprocess.run(
            [sys.executable, "-m", "learner_export.cli.main", "serve", "--port", "0"],
            env={**os.environ, "DATABASE_URL": url, "EXPORT_JWT_SECRET": "s" * 40},
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
        assert serve.returncode == 1, serve.stderr
        assert "Traceback" not in serve.stderr
        lines = [line for line in serve.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, serve.stderr
        assert "does not meet the export contract" in lines[0]
        assert "caller_role is not SECURITY DEFINER" in lines[0]


def test_db_migrate_refuses_a_missing_adapter_file(pg_server: str, tmp_path: Path) -> None:
    with empty_database(pg_server) as url:
        result = cli(url, "db", "migrate", "--adapter", str(tmp_path / "nope.sql"))
        assert result.returncode == 2
        assert "no adapter file" in result.stderr
        assert "Traceback" not in result.stderr
