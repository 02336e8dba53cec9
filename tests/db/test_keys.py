"""Keys for scripts: made, listed and revoked with the CLI, used with curl as `Authorization:
Bearer lex_...`; an export as the key's owner, named in the audit trail, refused (401, JSON) once
the key is revoked or expired or its owner is demoted or removed."""

from __future__ import annotations

import hashlib
import subprocess
import uuid
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from tests.conftest import Database, LiveServer, query, run, service_url
from tests.e2e.test_cli_export import cli, cli_env


def keys_cli(database: Database, *args: str) -> subprocess.CompletedProcess[bytes]:
    return cli("keys", *args, env=cli_env(DATABASE_URL=database.url))


def new_key(database: Database, owner: str, name: str, *extra: str) -> str:
    result = keys_cli(database, "create", "--owner", owner, "--name", name, *extra)
    assert result.returncode == 0, result.stderr
    key = result.stdout.decode().strip()
    assert key.startswith("lex_") and len(key) == 47
    assert f"key '{name}'".encode() in result.stderr
    assert b"shown only now" in result.stderr
    return key


def curl(url: str, key: str) -> tuple[int, bytes]:
    """GET url with curl (the real client), the key as the bearer token: status and body."""
    result = subprocess.run(
        ["curl", "-sS", "-H", f"Authorization: Bearer {key}", "-w", "\n%{http_code}", url],
        capture_output=True,
        timeout=60,
        check=True,
    )
    body, _, status = result.stdout.rpartition(b"\n")
    return int(status), body


def profile(database: Database, role: str) -> str:
    ident = str(uuid.uuid4())
    query(database.url, "INSERT INTO public.profiles (id, role) VALUES ($1::uuid, $2)", ident, role)
    return ident


def audit_rows(database: Database, key_name: str) -> list[dict[str, Any]]:
    rows = query(
        database.url,
        "SELECT caller_id::text AS caller_id, outcome, api_key_id::text AS api_key_id,"
        " api_key_name FROM learner_export.export_audit WHERE api_key_name = $1"
        " ORDER BY started_at",
        key_name,
    )
    return [dict(r) for r in rows]


def test_a_script_exports_with_its_own_key_until_it_is_revoked(
    live: LiveServer, database: Database
) -> None:
    name = f"nightly-{uuid.uuid4().hex[:6]}"
    key = new_key(database, database.admin_id, name, "--expires", "90d")
    url = f"{live.url}/v1/exports/learners?format=csv&limit=50"

    status, body = curl(url, key)
    assert status == 200, body
    # The owner's export: the same bytes the owner's own token gets (time stamps aside).
    with live.client() as client:
        assert body == client.get(url).content
    assert body.count(b"\r\n") >= 51

    # A refused request made with the key is recorded with the key's name too.
    status, refused = curl(f"{live.url}/v1/exports/learners?format=pdf", key)
    assert status == 400, refused

    listed = keys_cli(database, "list", "--owner", database.admin_id)
    assert listed.returncode == 0, listed.stderr
    (line,) = [x for x in listed.stdout.decode().splitlines() if f" {name} " in x]
    assert " active" in line and key[:12] + "..." in line and key not in line
    key_id = line.split()[0]
    assert line.split()[-2:][0] != "-"  # last used: just now

    rows = audit_rows(database, name)
    assert [r["outcome"] for r in rows] == ["completed", "denied"]
    assert {(r["caller_id"], r["api_key_id"]) for r in rows} == {(database.admin_id, key_id)}

    revoked = keys_cli(database, "revoke", name)
    assert revoked.returncode == 0, revoked.stderr
    assert revoked.stdout.decode() == (
        f"revoked key '{name}' ({key_id}) of profile {database.admin_id}\n"
    )
    status, body = curl(url, key)
    assert status == 401
    assert orjson.loads(body) == {
        "error": "unauthorized",
        "detail": f"key '{name}' has been revoked",
    }
    again = keys_cli(database, "list", "--owner", database.admin_id)
    assert any(f" {name} " in x and "revoked 20" in x for x in again.stdout.decode().splitlines())


def test_an_expired_key_is_refused(live: LiveServer, database: Database) -> None:
    name = f"expiring-{uuid.uuid4().hex[:6]}"
    key = new_key(database, database.admin_id, name, "--expires", "1m")
    url = f"{live.url}/v1/exports/learners?format=jsonl&limit=3"
    assert curl(url, key)[0] == 200
    # A minute later (the clock moved on by the database's own means):
    query(
        database.url,
        "UPDATE learner_export.api_keys SET expires_at = now() - interval '1 second'"
        " WHERE name = $1",
        name,
    )
    status, body = curl(url, key)
    assert status == 401
    assert orjson.loads(body)["detail"] == f"key '{name}' has expired; ask an admin for a new one"
    listed = keys_cli(database, "list").stdout.decode()
    assert any(f" {name} " in x and x.rstrip().endswith("expired") for x in listed.splitlines())


@pytest.mark.parametrize("change", ["demoted", "removed"])
def test_a_key_stops_when_its_owner_is_demoted_or_removed(
    live: LiveServer, database: Database, change: str
) -> None:
    owner = profile(database, "Admin")
    name = f"owner-{change}"
    key = new_key(database, owner, name)
    url = f"{live.url}/v1/exports/learners?format=csv&limit=5"
    assert curl(url, key)[0] == 200
    if change == "demoted":
        query(database.url, "UPDATE public.profiles SET role = 'Student' WHERE id = $1", owner)
        detail = f"the owner of key '{name}' no longer has the role it was made for; ask an admin"
    else:
        query(database.url, "DELETE FROM public.profiles WHERE id = $1", owner)
        detail = f"the owner of key '{name}' no longer exists"
    status, body = curl(url, key)
    assert status == 401
    assert orjson.loads(body)["detail"].startswith(detail)


def test_only_the_keys_hash_is_stored(database: Database) -> None:
    name = f"hashed-{uuid.uuid4().hex[:6]}"
    key = new_key(database, database.admin_id, name)
    (row,) = query(
        database.url,
        "SELECT to_jsonb(k) AS row FROM learner_export.api_keys k WHERE name = $1",
        name,
    )
    stored = row["row"]
    assert key[12:] not in stored  # nothing past the shown prefix, in any column
    assert bytes.fromhex(orjson.loads(stored)["secret_sha256"][2:]) == (
        hashlib.sha256(key.encode()).digest()
    )


@pytest.mark.parametrize(
    ("key", "detail"),
    [
        ("lex_" + "A" * 43, "unknown key"),
        ("lex_short", "malformed key (a key is lex_ and 43 characters)"),
        ("lex_" + "A" * 42 + "'", "malformed key (a key is lex_ and 43 characters)"),
    ],
)
def test_unknown_or_malformed_keys_get_401(live: LiveServer, key: str, detail: str) -> None:
    status, body = curl(f"{live.url}/v1/exports/learners", key)
    assert (status, orjson.loads(body)) == (401, {"error": "unauthorized", "detail": detail})


def test_a_key_cannot_make_browser_links(live: LiveServer, database: Database) -> None:
    key = new_key(database, database.admin_id, f"links-{uuid.uuid4().hex[:6]}")
    response = httpx.post(
        f"{live.url}/v1/exports/learners/links",
        json={"format": "csv"},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 401
    assert "cannot make download links" in response.json()["detail"]


def test_the_service_role_can_read_keys_but_not_make_or_revive_them(
    database: Database, live: LiveServer
) -> None:
    name = f"guarded-{uuid.uuid4().hex[:6]}"
    new_key(database, database.admin_id, name)
    keys_cli(database, "revoke", name)
    as_service = service_url(database)

    async def attempt(statement: str) -> str:
        conn = await asyncpg.connect(as_service)
        try:
            await conn.execute(statement)
        except asyncpg.InsufficientPrivilegeError:
            return "denied"
        finally:
            await conn.close()
        return "done"

    assert (
        run(attempt(f"UPDATE learner_export.api_keys SET revoked_at = NULL WHERE name = '{name}'"))
        == "denied"
    )
    assert run(attempt("DELETE FROM learner_export.api_keys")) == "denied"
    assert (
        run(
            attempt(
                "INSERT INTO learner_export.api_keys (id, name, owner_id, owner_role,"
                " secret_sha256, prefix, expires_at) VALUES (gen_random_uuid(), 'x',"
                " gen_random_uuid(), 'Admin', sha256('x'), 'lex_', now() + interval '1 day')"
            )
        )
        == "denied"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["create", "--owner", str(uuid.UUID(int=7)), "--name", "x"], b"no profile"),
        (["create", "--owner", "ADMIN", "--name", "x", "--expires", "2w"], b"--expires takes"),
        (["create", "--owner", "ADMIN", "--name", "bad name"], b"a key's name is 1 to 64"),
        (["revoke", "no-such-key"], b"no key 'no-such-key'"),
    ],
)
def test_key_commands_refuse_in_one_sentence(
    database: Database, args: list[str], message: bytes
) -> None:
    result = keys_cli(database, *(a.replace("ADMIN", database.admin_id) for a in args))
    assert result.returncode in (1, 2)
    assert message in result.stderr
    assert result.stderr.count(b"\n") == 1 and b"Traceback" not in result.stderr


def test_key_commands_without_a_database(database: Database) -> None:
    # (`database` only marks this test as one that runs the CLI; DATABASE_URL is left unset.)
    result = cli("keys", "list", env=cli_env())
    assert result.returncode == 2
    assert (
        result.stderr
        == b"learner-export: DATABASE_URL is not set (keys live in the service's schema there)\n"
    )
