"""The service's role is one per database (learner_export.db.role): a role is the whole
server's, so `db migrate` refuses one that is another database's too, records the name each
database chose, quotes it wherever it goes, and a login granted one database's role reaches
nothing in another."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from learner_export.contract import SERVICE_ROLE
from learner_export.db import role
from learner_export.db.migrate import migrate
from learner_export.demo import seed as demo
from tests.conftest import SERVICE_PASSWORD, _admin, _with_database, query, run

ROOT = Path(__file__).resolve().parents[2]
CALL = "SELECT learner_export.caller_role($1::uuid)"
NOBODY = "00000000-0000-0000-0000-000000000000"


@contextlib.contextmanager
def databases(server: str, count: int) -> Iterator[list[str]]:
    """Databases of this test's own, with the sample schema (no rows), not yet migrated."""
    names = [f"learner_export_role_{uuid.uuid4().hex[:10]}" for _ in range(count)]
    urls = [_with_database(server, n) for n in names]
    try:
        for name, url in zip(names, urls, strict=True):
            run(_admin(server, f'CREATE DATABASE "{name}"'))
            run(_sample(url))
        yield urls
    finally:
        for name in names:
            run(_admin(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextlib.contextmanager
def roles(server: str, *names: str) -> Iterator[None]:
    """Roles this test makes or has `db migrate` make, dropped after (they are the server's)."""
    try:
        yield
    finally:
        for name in names:
            quoted = '"' + name.replace('"', '""') + '"'
            run(_admin(server, f"DROP ROLE IF EXISTS {quoted}"))


async def _sample(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await demo.create_sample_schema(conn)
    finally:
        await conn.close()


async def _migrate(url: str, service_role: str | None = None) -> list[str]:
    conn = await asyncpg.connect(url)
    try:
        return await migrate(conn, demo.sample_adapter(), service_role=service_role)
    finally:
        await conn.close()


def cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPORT_")}
    return subprocess.run(
        [sys.executable, "-m", "learner_export.cli.main", *args],
        env={**env, "DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


@pytest.fixture
def default_role(pg_server: str) -> Iterator[str]:
    """learner_export_service, made by the test and dropped after; a server that already has
    it (a deployment's, or another database's) is not the test's to change."""
    if query(pg_server, "SELECT EXISTS (SELECT FROM pg_roles WHERE rolname = $1)", SERVICE_ROLE)[0][
        0
    ]:
        pytest.skip(f"{SERVICE_ROLE} exists on this server already")
    with roles(pg_server, SERVICE_ROLE):
        yield SERVICE_ROLE


def login(server: str, name: str, *granted: str) -> None:
    """A login role holding `granted` (the service's login, as an operator makes it)."""
    grants = "".join(f' GRANT "{g.replace(chr(34), chr(34) * 2)}" TO {name};' for g in granted)
    run(_admin(server, f"CREATE ROLE {name} LOGIN PASSWORD '{SERVICE_PASSWORD}';{grants}"))


def as_login(url: str, name: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{name}:{SERVICE_PASSWORD}@{rest.rpartition('@')[2]}"


def can_call(url: str) -> bool:
    try:
        query(url, CALL, NOBODY)
    except asyncpg.InsufficientPrivilegeError:
        return False
    return True


def schema_exists(url: str) -> bool:
    return bool(
        query(url, "SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = 'learner_export')")[0][
            0
        ]
    )


def recorded(url: str) -> str:
    return str(query(url, "SELECT name FROM learner_export.service_role")[0][0])


def holds_anything(url: str, role: str) -> bool:
    """Whether `role` holds any privilege on the schema learner_export or anything in it."""
    return bool(
        query(
            url,
            "SELECT EXISTS (SELECT FROM pg_namespace n, aclexplode(n.nspacl) a"
            "   WHERE n.nspname = 'learner_export' AND a.grantee = $1::regrole)"
            " OR EXISTS (SELECT FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,"
            "   aclexplode(c.relacl) a WHERE n.nspname = 'learner_export'"
            "   AND a.grantee = $1::regrole)"
            " OR EXISTS (SELECT FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace,"
            "   aclexplode(p.proacl) a WHERE n.nspname = 'learner_export'"
            "   AND a.grantee = $1::regrole)"
            " OR EXISTS (SELECT FROM pg_policy WHERE $1::regrole = ANY (polroles))",
            '"' + role.replace('"', '""') + '"',
        )[0][0]
    )


def test_the_default_role_of_two_databases_is_refused_in_the_second(
    pg_server: str, default_role: str
) -> None:
    own = f"le_second_{uuid.uuid4().hex[:8]}"
    with roles(pg_server, own), databases(pg_server, 2) as (first, second):
        assert run(_migrate(first))
        assert recorded(first) == SERVICE_ROLE

        refused = cli(second, "db", "migrate", "--adapter", "sample")
        assert refused.returncode == 1, refused.stdout + refused.stderr
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1, refused.stderr
        first_name = first.rpartition("/")[2]
        second_name = second.rpartition("/")[2]
        assert (
            f"the service's role {SERVICE_ROLE} already holds privileges or owns objects in the "
            f"database {first_name} of this server" in lines[0]
        )
        assert f"db migrate --service-role {SERVICE_ROLE}_{second_name}`" in lines[0]
        assert "Traceback" not in refused.stderr
        assert not schema_exists(second)  # nothing was changed

        # A name of the second's own: it migrates.
        done = cli(second, "db", "migrate", "--adapter", "sample", "--service-role", own)
        assert done.returncode == 0, done.stderr
        assert f"the service's role in this database: {own}" in done.stdout
        assert recorded(second) == own


def test_a_login_granted_one_databases_role_reaches_nothing_in_another(pg_server: str) -> None:
    tag = uuid.uuid4().hex[:8]
    role_a, role_b, app = f"le_a_{tag}", f"le_b_{tag}", f"le_app_{tag}"
    with roles(pg_server, app, role_a, role_b), databases(pg_server, 2) as (a, b):
        run(_migrate(a, role_a))
        migrated = cli(b, "db", "migrate", "--adapter", "sample", "--service-role", role_b)
        assert migrated.returncode == 0, migrated.stderr
        assert (recorded(a), recorded(b)) == (role_a, role_b)

        login(pg_server, app, role_a)
        assert can_call(as_login(a, app))
        assert not can_call(as_login(b, app))  # permission denied in b

        # Later migrates keep each database's name without being told.
        assert run(_migrate(a)) == []
        assert cli(b, "db", "migrate", "--adapter", "sample").returncode == 0
        assert (recorded(a), recorded(b)) == (role_a, role_b)
        assert not can_call(as_login(b, app))


def test_a_new_name_takes_everything_from_the_old_role(pg_server: str) -> None:
    tag = uuid.uuid4().hex[:8]
    old, new, app = f"le_old_{tag}", f"le_new_{tag}", f"le_app_{tag}"
    with roles(pg_server, app, old, new), databases(pg_server, 1) as (url,):
        run(_migrate(url, old))
        login(pg_server, app, old)
        assert can_call(as_login(url, app))

        assert run(_migrate(url, new)) == [f"service role {new} (replacing {old})"]
        assert recorded(url) == new
        assert not holds_anything(url, old)
        assert holds_anything(url, new)
        assert not can_call(as_login(url, app))
        run(_admin(url, f"GRANT {new} TO {app}"))
        assert can_call(as_login(url, app))


def test_a_database_migrated_before_names_were_chosen_moves_to_its_own(
    pg_server: str, default_role: str
) -> None:
    """No record (migrated with the old constant): the old role loses its grants on rename."""
    tag = uuid.uuid4().hex[:8]
    own = f"le_own_{tag}"
    with roles(pg_server, own), databases(pg_server, 1) as (url,):
        run(_migrate(url))
        query(url, "DELETE FROM learner_export.service_role")
        assert holds_anything(url, SERVICE_ROLE)
        assert run(_migrate(url, own)) == [f"service role {own} (replacing {SERVICE_ROLE})"]
        assert not holds_anything(url, SERVICE_ROLE)
        assert recorded(url) == own


def test_a_hostile_name_is_quoted(pg_server: str) -> None:
    tag = uuid.uuid4().hex[:6]
    hostile = f'we"ird {tag}; DROP SCHEMA public --'
    app = f"le_app_{tag}"
    with roles(pg_server, app, hostile), databases(pg_server, 1) as (url,):
        result = cli(url, "db", "migrate", "--adapter", "sample", "--service-role", hostile)
        assert result.returncode == 0, result.stderr
        assert recorded(url) == hostile
        assert query(url, "SELECT count(*) FROM pg_roles WHERE rolname = $1", hostile)[0][0] == 1
        assert query(url, "SELECT to_regnamespace('public') IS NOT NULL")[0][0]
        login(pg_server, app, hostile)
        assert can_call(as_login(url, app))


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("x" * 64, "is 64 bytes long: PostgreSQL would cut it to 63"),
        ("pg_service", "the name is reserved by PostgreSQL"),
        ("anon", "the name is reserved by PostgreSQL or is one of the API roles"),
        ("", "the service's role needs a name"),
        ("CURRENT_USER", "the name is reserved"),
    ],
    ids=["too-long", "pg_", "anon", "empty", "current_user"],
)
def test_a_name_that_cannot_be_a_role_is_refused_with_exit_2(
    pg_server: str, name: str, says: str
) -> None:
    with databases(pg_server, 1) as (url,):
        result = cli(url, "db", "migrate", "--service-role", name)
        assert result.returncode == 2, result.stdout + result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert says in result.stderr
        assert not schema_exists(url)


def test_the_owner_cannot_be_the_service_role(pg_server: str) -> None:
    with databases(pg_server, 1) as (url,):
        me = query(url, "SELECT current_user")[0][0]
        result = cli(url, "db", "migrate", "--service-role", me)
        assert result.returncode == 2, result.stderr
        assert "the role running db migrate" in result.stderr
        assert not schema_exists(url)


def test_db_check_reports_a_role_shared_with_another_database(pg_server: str) -> None:
    tag = uuid.uuid4().hex[:8]
    role_a, role_b = f"le_a_{tag}", f"le_b_{tag}"
    with roles(pg_server, role_a, role_b), databases(pg_server, 2) as (a, b):
        run(_migrate(a, role_a))
        run(_migrate(b, role_b))
        fine = cli(a, "db", "check")
        assert f"ok       the service's role {role_a} is this database's own" in fine.stdout

        # As a database migrated before names were chosen would be: b's grants to a's role.
        query(b, "UPDATE learner_export.service_role SET name = $1", role_a)
        query(b, f"GRANT USAGE ON SCHEMA learner_export TO {role_a}")
        shared = cli(b, "db", "check")
        assert shared.returncode == 1, shared.stdout
        a_name = a.rpartition("/")[2]
        assert (
            f"ERROR    the service's role {role_a} already holds privileges or owns objects in "
            f"the database {a_name} of this server" in shared.stdout
        )


async def _not_granted(url: str) -> str | None:
    conn = await asyncpg.connect(url)
    try:
        return await role.not_granted(conn)
    finally:
        await conn.close()


def test_serve_warns_a_login_that_does_not_hold_the_recorded_role(pg_server: str) -> None:
    """After a new name, the service's login still holds the old role: serve says so at start,
    naming the grant, rather than letting every export fail with permission denied."""
    tag = uuid.uuid4().hex[:8]
    old, new, app = f"le_old_{tag}", f"le_new_{tag}", f"le_app_{tag}"
    with roles(pg_server, app, old, new), databases(pg_server, 1) as (url,):
        run(_migrate(url, old))
        login(pg_server, app, old)
        assert run(_not_granted(as_login(url, app))) is None
        assert run(_not_granted(url)) is None  # the owner
        run(_migrate(url, new))
        said = run(_not_granted(as_login(url, app)))
        assert said == (
            f"the login {app} does not hold this database's service role {new}: exports will "
            f"be refused (permission denied) until `GRANT {new} TO {app}`"
        )

        env = {k: v for k, v in os.environ.items() if not k.startswith("EXPORT_")}
        serve = subprocess.Popen(
            [sys.executable, "-m", "learner_export.cli.main", "serve", "--port", "0"],
            env={**env, "DATABASE_URL": as_login(url, app), "EXPORT_JWT_SECRET": "s" * 40},
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
        )
        try:
            assert serve.stderr is not None
            seen = ""
            for line in serve.stderr:
                seen += line
                if (
                    "does not hold this database's service role" in line
                    or "Uvicorn running" in line
                ):
                    break
            assert f"does not hold this database's service role {new}" in seen, seen
        finally:
            serve.kill()  # the warning is all this test wants of it
            serve.wait(timeout=30)
