"""The contract's second day: adapters changed under a running service (no restart), adapters
that break the contract's promises about rows (the export is cut, the audit says why, `db check`
names the cause), a keyset time column in the operator's words, and `db check` as the service's
least-privilege login."""

from __future__ import annotations

import csv
import io
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.conftest import (
    SERVICE_PASSWORD,
    Database,
    LiveServer,
    fresh_database,
    query,
    service_role_of,
    wait_for,
)

ROOT = Path(__file__).resolve().parents[2]
# The sample adapter without its bulk view: the edits below change the page function, and the
# view would have to follow each of them (tests/db/test_bulk.py tests the view).
SAMPLE = (
    (ROOT / "learner_export" / "sql" / "adapters" / "sample.sql")
    .read_text()
    .split("\n-- Optional: every row of the export at once")[0]
)
LEARNERS = 2000

# The sample adapter's page function, as the changes below edit it.
NOTES_COLUMN = "    notes                text\n)"
NOTES_VALUE = "               l.notes\n"
STARS_COLUMN = "    job_readiness_stars  smallint,\n"
STARS_VALUE = "               l.job_readiness_stars,\n"
CREATED_COLUMN = "    created_at           timestamptz,\n"
ENDS_RESULT = "RETURNS TABLE (created_at timestamptz, learner_id uuid)"
PROGRESS_JOIN = "                 WHERE m.learner_id = l.id) AS p\n"
# The count without a scope or filter (an admin's export): its first branch.
COUNT_STAR = (
    "        RETURN (SELECT pg_catalog.count(*)\n                  FROM public.learners AS k\n"
)


def changed(*edits: tuple[str, str]) -> str:
    """The sample adapter with these (old, new) edits, each of text that must be there."""
    text = SAMPLE
    for old, new in edits:
        assert old in text, f"the sample adapter no longer has {old!r}"
        text = text.replace(old, new, 1)
    return text


def cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "learner_export.cli.main", *args],
        env={**os.environ, "DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
    )


def migrate(url: str, tmp_path: Path, text: str, *extra: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / f"adapter-{abs(hash(text))}.sql"
    path.write_text(text)
    return cli(url, "db", "migrate", "--adapter", str(path), *extra)


@pytest.fixture
def own(pg_server: str) -> Iterator[Database]:
    """A database of this test's own: its adapter is changed."""
    with fresh_database(pg_server, LEARNERS, 5, seed=19) as database:
        yield database


def header(server: LiveServer, **params: str) -> list[str]:
    with server.client() as client:
        r = client.get("/v1/exports/learners", params={"format": "csv", **params})
    assert r.status_code == 200, r.text
    rows = list(csv.reader(io.StringIO(r.text)))
    assert len(rows) == LEARNERS + 1
    return rows[0]


def columns_in_openapi(server: LiveServer) -> str:
    with httpx.Client(base_url=server.url) as client:
        spec = client.get("/openapi.json").json()
    params = spec["paths"]["/v1/exports/learners"]["get"]["parameters"]
    return str(next(p["description"] for p in params if p["name"] == "columns"))


def test_changed_adapters_reach_a_running_service_without_a_restart(
    own: Database, start_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    server = start_server(db=own)
    first = header(server)
    assert first[-1] == "notes" and "job_readiness_stars" in first

    # Renamed.
    renamed = changed((NOTES_COLUMN, "    remarks              text\n)"))
    result = migrate(own.url, tmp_path, renamed)
    assert result.returncode == 0, result.stderr
    assert header(server)[-1] == "remarks"
    with server.client() as client:
        r = client.get("/v1/exports/learners", params={"columns": "learner_id,remarks"})
        assert r.status_code == 200 and r.text.startswith("learner_id,remarks\r\n")
        old = client.get("/v1/exports/learners", params={"columns": "notes"})
        assert old.status_code == 400 and "unknown column(s) notes" in old.text
    assert "`remarks`" in columns_in_openapi(server)
    assert "`notes`" not in columns_in_openapi(server)

    # Added.
    added = changed(
        (NOTES_COLUMN, "    notes                text,\n    cohort               text\n)"),
        (NOTES_VALUE, "               l.notes,\n               'cohort ' || l.client_id\n"),
    )
    assert migrate(own.url, tmp_path, added).returncode == 0
    assert header(server)[-2:] == ["notes", "cohort"]

    # Dropped.
    dropped = changed((STARS_COLUMN, ""), (STARS_VALUE, ""))
    assert migrate(own.url, tmp_path, dropped).returncode == 0
    assert "job_readiness_stars" not in header(server)

    # Retyped: smallint to text; JSON Lines then carries a string, not a number.
    retyped = changed(
        (STARS_COLUMN, "    job_readiness_stars  text,\n"),
        (STARS_VALUE, "               l.job_readiness_stars || ' stars',\n"),
    )
    assert migrate(own.url, tmp_path, retyped).returncode == 0
    with server.client() as client:
        r = client.get(
            "/v1/exports/learners",
            params={"format": "jsonl", "columns": "job_readiness_stars", "limit": "50"},
        )
    values = [orjson.loads(line)["job_readiness_stars"] for line in r.content.splitlines()]
    assert any(v is not None for v in values)
    assert all(v is None or (isinstance(v, str) and v.endswith(" stars")) for v in values)

    # A broken adapter never reaches the running service: refused, and the last one serves.
    broken = changed((CREATED_COLUMN, ""))  # the keyset column gone
    refused = migrate(own.url, tmp_path, broken)
    assert refused.returncode == 1
    assert "lacks the keyset column created_at" in refused.stderr
    assert "Traceback" not in refused.stderr
    with server.client() as client:
        r = client.get("/v1/exports/learners", params={"format": "jsonl", "limit": "1"})
    assert r.status_code == 200
    assert isinstance(orjson.loads(r.content)["job_readiness_stars"], str | None)
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/readyz").status_code == 200


def _fatten(url: str) -> None:
    """40 MB of notes: more than the sockets between the service and a client that stops
    reading hold, so that an export stays open."""
    query(url, "UPDATE public.learners SET notes = repeat('n', 20000)")


def _migrate_waiting(url: str) -> bool:
    """Whether a `db migrate` waits for the contract's lock."""
    return bool(
        query(
            url,
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )[0][0]
    )


def test_an_export_streaming_during_a_migrate_finishes_on_its_columns(
    own: Database, start_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    _fatten(own.url)
    server = start_server(db=own, page_size=50, first_page_size=10, chunk_bytes=1024)
    renamed = changed((NOTES_COLUMN, "    remarks              text\n)"))
    done: list[subprocess.CompletedProcess[str]] = []
    with (
        server.client() as client,
        client.stream("GET", "/v1/exports/learners", params={"format": "csv"}) as response,
    ):
        assert response.status_code == 200
        chunks = response.iter_bytes()
        body = next(chunks)
        migrating = threading.Thread(
            target=lambda: done.append(migrate(own.url, tmp_path, renamed, "--wait", "60"))
        )
        migrating.start()
        # The migrate waits for this export (it holds the contract) ...
        assert wait_for(lambda: _migrate_waiting(own.url), timeout=60)
        assert migrating.is_alive()
        # ... and a new export meanwhile is told why, in a sentence, not "unreachable".
        with server.client() as other:
            r = other.get("/v1/exports/learners", params={"limit": "1"})
        assert r.status_code == 503
        assert r.json()["error"] == "contract_changed"
        assert "db migrate" in r.json()["detail"]
        assert r.headers["Retry-After"] == "1"
        body += b"".join(chunks)
    rows = list(csv.reader(io.StringIO(body.decode())))
    assert rows[0][-1] == "notes"
    assert len(rows) == LEARNERS + 1
    migrating.join(timeout=60)
    assert done and done[0].returncode == 0, done and done[0].stderr
    assert header(server)[-1] == "remarks"


def test_migrate_gives_up_on_exports_that_do_not_end(
    own: Database, start_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    _fatten(own.url)
    server = start_server(db=own, page_size=50, first_page_size=10, chunk_bytes=1024)
    renamed = changed((NOTES_COLUMN, "    remarks              text\n)"))
    with (
        server.client() as client,
        client.stream("GET", "/v1/exports/learners", params={"format": "csv"}) as response,
    ):
        chunks = response.iter_bytes()  # held: a dropped iterator closes the response
        next(chunks)
        result = migrate(own.url, tmp_path, renamed, "--wait", "1")
    assert result.returncode == 1
    assert "exports still running after 1 s" in result.stderr
    assert "Traceback" not in result.stderr
    assert header(server)[-1] == "notes"


def _learner_from(url: str, position: int) -> tuple[str, int]:
    """The first learner from this position on with two modules or more, and its position."""
    rows = query(
        url,
        "SELECT l.id::text, l.pos FROM (SELECT k.id, row_number() OVER"
        " (ORDER BY k.created_at, k.id) - 1 AS pos FROM public.learners AS k) AS l"
        " WHERE l.pos >= $1 AND (SELECT count(*) FROM public.learner_module_progress AS m"
        "                         WHERE m.learner_id = l.id) >= 2"
        " ORDER BY l.pos LIMIT 1",
        position,
    )
    return str(rows[0][0]), int(rows[0][1])


def _audit(url: str, export_id: str) -> tuple[str, str]:
    row = query(
        url, "SELECT outcome, detail FROM learner_export.export_audit WHERE id = $1", export_id
    )[0]
    return row[0], row[1]


def test_a_non_unique_keyset_cuts_the_export_and_db_check_names_it(
    own: Database,
    start_server: Callable[..., LiveServer],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # One learner, some 1,000 rows in, joined to its progress rows without aggregating: that
    # learner comes out once per module.
    twice, position = _learner_from(own.url, 1000)
    repeating = changed(
        (
            PROGRESS_JOIN,
            PROGRESS_JOIN + "          LEFT JOIN public.learner_module_progress AS dup"
            f" ON dup.learner_id = l.id AND l.id = '{twice}'::uuid\n",
        )
    )
    assert migrate(own.url, tmp_path, repeating).returncode == 0  # the signature is right
    server = start_server(db=own, page_size=100, first_page_size=10)
    want = [r[0] for r in query(own.url, "SELECT id::text FROM public.learners ORDER BY 1")]
    caplog.set_level(logging.ERROR, logger="learner_export")
    with (
        server.client() as client,
        client.stream(
            "GET", "/v1/exports/learners", params={"format": "jsonl", "columns": "learner_id"}
        ) as response,
    ):
        assert response.status_code == 200
        export_id = response.headers["X-Export-Id"]
        got: list[bytes] = []
        with pytest.raises(httpx.RemoteProtocolError):
            for chunk in response.iter_bytes():
                got.append(chunk)
    ids = [orjson.loads(line)["learner_id"] for line in b"".join(got).splitlines()]
    # Cut before the bad row: whole pages of distinct learners, none of them twice.
    assert len(ids) == len(set(ids)) and 0 < len(ids) <= position and len(ids) % 100 == 10
    assert twice not in ids and set(ids) < set(want)
    outcome, detail = _audit(own.url, export_id)
    assert outcome == "failed"
    assert "get_learner_export_batch returned the key" in detail and "twice" in detail
    assert any(
        "learner_export.get_learner_export_batch returned the key" in r.getMessage()
        for r in caplog.records
    )

    result = cli(own.service_url, "db", "check", "--as", own.admin_id)
    assert result.returncode == 1, result.stdout
    assert "the keyset is not unique" in result.stdout
    assert f"{twice}) more than once" in result.stdout
    assert "count_learner_export counts" in result.stdout


def test_a_count_that_disagrees_with_the_pages_cuts_the_export(
    own: Database, start_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    overcounting = changed((COUNT_STAR, COUNT_STAR.replace("count(*)", "count(*) + 1")))
    assert migrate(own.url, tmp_path, overcounting).returncode == 0
    server = start_server(db=own)
    with (
        server.client() as client,
        client.stream(
            "GET",
            "/v1/exports/learners",
            params={"format": "csv"},
            headers={"Prefer": "count=exact"},
        ) as response,
    ):
        assert response.headers["X-Total-Count"] == str(LEARNERS + 1)
        with pytest.raises(httpx.RemoteProtocolError):
            for _ in response.iter_bytes():
                pass
        export_id = response.headers["X-Export-Id"]
    outcome, detail = _audit(own.url, export_id)
    assert outcome == "failed"
    assert f"hold fewer rows ({LEARNERS:,} so far)" in detail
    result = cli(own.service_url, "db", "check", "--as", own.admin_id)
    assert result.returncode == 1
    assert f"count_learner_export counts {LEARNERS + 1:,} rows" in result.stdout


def test_db_check_passes_as_the_least_privileged_login(own: Database) -> None:
    result = cli(own.service_url, "db", "check", "--as", own.admin_id)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "contract met: 0 error(s)" in result.stdout
    assert f"the first {LEARNERS:,} rows (of {LEARNERS:,})" in result.stdout
    assert "pages are read through an index" in result.stdout
    assert f"this role holds {service_role_of(own.url)}" in result.stdout
    assert "permission denied" not in result.stdout

    # Without a caller, the rows are not checked, and it says how to.
    bare = cli(own.service_url, "db", "check")
    assert bare.returncode == 0
    assert "give `db check --as <profile id>`" in bare.stdout

    # A login without the service's role: the catalogue is checked, and it says which checks
    # need the service's login or the owner.
    query(
        own.url,
        "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'learner_export_stranger')"
        " THEN CREATE ROLE learner_export_stranger LOGIN; END IF;"
        f" ALTER ROLE learner_export_stranger PASSWORD '{SERVICE_PASSWORD}'; END $$",
    )
    stranger = own.service_url.replace("learner_export_app:", "learner_export_stranger:")
    lacking = cli(stranger, "db", "check", "--as", own.admin_id)
    assert "Traceback" not in lacking.stdout + lacking.stderr
    assert "all 5 functions of the contract exist" in lacking.stdout
    assert "the rows were not checked: this role may not execute the contract's functions" in (
        lacking.stdout
    )
    assert f"this role does not hold {service_role_of(own.url)}" in lacking.stdout


def test_db_check_finds_a_missing_keyset_index_whatever_the_size(
    own: Database, tmp_path: Path
) -> None:
    query(own.url, "DROP INDEX public.learners_export_keyset")
    query(own.url, "DROP INDEX public.learners_client_keyset")
    query(own.url, "ANALYZE public.learners")
    result = cli(own.service_url, "db", "check", "--as", own.admin_id)
    assert result.returncode == 1, result.stdout
    assert "pages are not read through an index" in result.stdout


def test_a_keyset_time_column_in_the_operators_words(
    own: Database, start_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    joined = changed(
        (CREATED_COLUMN, "    joined_at            timestamptz,\n"),
        (ENDS_RESULT, "RETURNS TABLE (joined_at timestamptz, learner_id uuid)"),
    ) + (
        "\nCREATE FUNCTION learner_export.scope_unit()"
        " RETURNS TABLE (singular text, plural text)"
        " LANGUAGE sql IMMUTABLE SET search_path = ''"
        " AS $$ SELECT 'organisation', 'organisations' $$;\n"
    )
    result = migrate(own.url, tmp_path, joined)
    assert result.returncode == 0, result.stderr
    server = start_server(db=own, page_size=300, first_page_size=20)
    names = header(server)
    assert "joined_at" in names and "created_at" not in names

    with server.client() as client:
        r = client.get(
            "/v1/exports/learners",
            params={"format": "csv", "columns": "learner_id,joined_at", "cursor": "true"},
        )
        assert r.status_code == 200
        rows = list(csv.DictReader(io.StringIO(r.text)))
        want = query(
            own.url, "SELECT id::text, created_at FROM public.learners ORDER BY created_at, id"
        )
        assert [row["learner_id"] for row in rows] == [w[0] for w in want]
        # Resuming after a row in the middle goes on with the next one.
        resumed = client.get(
            "/v1/exports/learners",
            params={"format": "csv", "columns": "learner_id", "after": rows[999]["_cursor"]},
        )
        assert resumed.text.splitlines()[1] == rows[1000]["learner_id"]
        assert (
            client.get("/v1/exports/learners", params={"columns": "created_at"}).status_code == 400
        )
        audit_id = r.headers["X-Export-Id"]
        # The HTTP parameters keep their names, and take the operator's words too.
        client_id, since = query(
            own.url,
            "SELECT client_id::text, min(created_at) + (max(created_at) - min(created_at)) / 2"
            " FROM public.learners GROUP BY client_id ORDER BY 1 LIMIT 1",
        )[0]
        want_ids = [
            w[0]
            for w in query(
                own.url,
                "SELECT id::text FROM public.learners WHERE client_id = $1 AND created_at >= $2"
                " ORDER BY created_at, id",
                client_id,
                since,
            )
        ]
        for names in (("client_id", "created_from"), ("organisation_id", "joined_from")):
            scoped = client.get(
                "/v1/exports/learners",
                params={
                    "format": "csv",
                    "columns": "learner_id",
                    names[0]: client_id,
                    names[1]: since.isoformat(),
                },
            )
            assert scoped.status_code == 200, scoped.text
            assert scoped.text.splitlines()[1:] == want_ids
            assert scoped.headers["X-Export-Scope-Unit"] == "organisation"
            assert (
                "filename*=UTF-8''learners-organisation-" in scoped.headers["Content-Disposition"]
            )
    spec = httpx.get(server.url + "/openapi.json").json()
    described = {
        p["name"]: p["description"]
        for p in spec["paths"]["/v1/exports/learners"]["get"]["parameters"]
    }
    assert described["created_from"].startswith("joined_at on or after")
    assert "organisations" in described["client_id"]
    assert "also `organisation_id`" in described["client_id"]
    assert "also `joined_from`" in described["created_from"]
    filters = query(
        own.url, "SELECT filters FROM learner_export.export_audit WHERE id = $1", audit_id
    )[0][0]
    assert '"scope_unit": "organisation"' in filters and '"keyset": "joined_at"' in filters

    check = cli(own.service_url, "db", "check", "--as", own.admin_id)
    assert check.returncode == 0, check.stdout
    assert "keyset (joined_at, learner_id)" in check.stdout


def test_a_contract_broken_by_hand_is_said_in_sentences_not_as_unreachable(
    own: Database, start_server: Callable[..., LiveServer]
) -> None:
    server = start_server(db=own)
    # Past migrate (which would refuse it): the page function loses its keyset column.
    query(own.url, "DROP FUNCTION learner_export.get_learner_export_batch")
    query(
        own.url,
        "CREATE FUNCTION learner_export.get_learner_export_batch(p_caller uuid,"
        " p_client_ids uuid[], p_created_from timestamptz, p_created_to timestamptz,"
        " p_active boolean, p_after_created_at timestamptz, p_after_id uuid,"
        " p_page_size integer) RETURNS TABLE (learner_id uuid, name text)"
        " LANGUAGE sql STABLE SECURITY DEFINER SET search_path = ''"
        " AS $$ SELECT NULL::uuid, NULL::text WHERE false $$",
    )
    with server.client() as client:
        r = client.get("/v1/exports/learners")
        ready = client.get("/readyz")
    assert r.status_code == 503
    assert r.json()["error"] == "contract_not_met"
    assert "lacks the keyset column created_at" in str(r.json()["detail"])
    assert "unreachable" not in r.text
    assert ready.status_code == 503
    assert "does not offer the export contract" in ready.json()["detail"]
    assert "lacks the keyset column created_at" in ready.json()["detail"]
