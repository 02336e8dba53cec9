"""The bulk pass: after the first page, the rest of an export read in one statement from the
adapter's bulk view (learner_export.learner_export_rows). It must give the bytes the page walk
gives, in every format, whatever the filters, scope, cursor and limit; it is guarded as pages
are; a view that misses the contract is refused by `db migrate`; and only the service's role
may read it."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq
import pytest

from learner_export import db
from learner_export.errors import ContractBreach
from tests.conftest import (
    Database,
    export_bytes,
    fresh_database,
    make_settings,
    query,
    run,
    service_role_of,
    sheets,
    snapshot_pages,
)

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = (ROOT / "learner_export" / "sql" / "adapters" / "sample.sql").read_text()
VIEW_START = "CREATE OR REPLACE VIEW learner_export.learner_export_rows AS"
# The view's aggregate of progress, as the sample adapter writes it.
PROGRESS = """  LEFT JOIN (SELECT m.learner_id,
                    pg_catalog.count(*)::integer AS total,
                    pg_catalog.count(m.completed_at)::integer AS completed
               FROM public.learner_module_progress AS m
              GROUP BY m.learner_id) AS p ON p.learner_id = l.id"""


def _same(fmt: str, bulk: bytes, pages: bytes) -> None:
    if fmt == "xlsx":
        assert sheets(bulk) == sheets(pages)
    elif fmt == "parquet":
        assert pq.read_table(io.BytesIO(bulk)).equals(pq.read_table(io.BytesIO(pages)))
    else:
        assert bulk == pages


def both(url: str, caller: str, **params: Any) -> tuple[bytes, bytes]:
    """The export read with the bulk pass, and read page by page."""
    with_bulk, _ = run(export_bytes(url, caller, **params))
    paged, _ = run(export_bytes(url, caller, bulk_pass=False, **params))
    return with_bulk, paged


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "xlsx", "parquet"])
def test_the_bulk_pass_gives_the_bytes_of_the_page_walk(
    database: Database, seeded: str, fmt: str
) -> None:
    with_bulk, paged = both(database.url, seeded, format=fmt)
    _same(fmt, with_bulk, paged)
    if fmt in ("csv", "jsonl"):
        lines = with_bulk.count(b"\n")
        assert lines >= 4000  # every learner of the seed (line breaks in notes add more)


@pytest.mark.parametrize(
    "params",
    [
        {"active": True, "created_from": "2022-01-01", "created_to": "2025-06-01"},
        {"limit": 777, "cursor": True, "tz": "UTC"},
        {"limit": 101},  # one row past the first page
        {"limit": 100},  # exactly the first page: no bulk pass at all
        {"columns": "learner_id,notes,progress_percent", "escape_formulas": False},
    ],
)
def test_filters_limit_and_cursor_agree(
    database: Database, seeded: str, params: dict[str, Any]
) -> None:
    with_bulk, paged = both(database.url, seeded, format="csv", **params)
    assert with_bulk == paged
    if "limit" in params:
        rows = list(csv.reader(io.StringIO(with_bulk.decode(), newline="")))
        assert len(rows) == params["limit"] + 1  # the header and the rows asked for


def test_xlsx_sheets_split_alike(database: Database, seeded: str) -> None:
    """Rows numbered across the first page and the bulk pass: sheets of 700 rows."""
    with_bulk, paged = both(database.url, seeded, format="xlsx", sheet_rows=701)
    assert sheets(with_bulk) == sheets(paged)
    assert len(sheets(with_bulk)) >= 5


def test_a_resumed_export_continues_where_the_cursor_points(
    database: Database, seeded: str
) -> None:
    first, _ = run(export_bytes(database.url, seeded, format="jsonl", cursor=True, limit=1500))
    last = first.rstrip(b"\n").rsplit(b"\n", 1)[1]
    after = orjson.loads(last)["_cursor"]
    with_bulk, paged = both(database.url, seeded, format="jsonl", after=after)
    assert with_bulk == paged
    whole, _ = run(export_bytes(database.url, seeded, format="jsonl", cursor=True))
    resumed, _ = run(export_bytes(database.url, seeded, format="jsonl", after=after, cursor=True))
    assert first + resumed == whole


@pytest.fixture
def staff(database: Database) -> Iterator[tuple[str, list[str]]]:
    """A Staff profile assigned to two clients."""
    clients = [r["id"] for r in query(database.url, "SELECT id FROM public.clients ORDER BY id")]
    who = str(uuid.uuid4())
    query(database.url, "INSERT INTO public.profiles (id, role) VALUES ($1, 'Staff')", who)
    for client in clients[:2]:
        query(
            database.url,
            "INSERT INTO public.staff_client_assignments (staff_id, client_id) VALUES ($1, $2)",
            who,
            client,
        )
    yield who, clients[:2]
    query(database.url, "DELETE FROM public.staff_client_assignments WHERE staff_id = $1", who)
    query(database.url, "DELETE FROM public.profiles WHERE id = $1", who)


def test_the_bulk_pass_keeps_the_callers_scope(
    database: Database, staff: tuple[str, list[str]]
) -> None:
    who, clients = staff
    with_bulk, paged = both(database.url, who, format="jsonl", columns="learner_id,client_id")
    assert with_bulk == paged
    rows = [orjson.loads(line) for line in with_bulk.splitlines()]
    expected = query(
        database.url,
        "SELECT id FROM public.learners WHERE client_id = ANY ($1::uuid[]) ORDER BY created_at, id",
        clients,
    )
    assert [r["learner_id"] for r in rows] == [str(r["id"]) for r in expected]
    assert len(rows) > 100  # past the first page: the bulk pass ran
    one, _ = both(database.url, who, format="jsonl", client_id=clients[1], columns="client_id")
    assert {orjson.loads(line)["client_id"] for line in one.splitlines()} == {clients[1]}


def test_the_bulk_pass_outlives_a_pages_statement_timeout(
    big_database: Database,
) -> None:
    """The bulk pass is one statement that lasts as long as the export: a page's
    statement_timeout (200 ms here, which every page of 300 rows meets) must not cut it; the
    export's own deadline bounds it."""
    url, admin = big_database.url, big_database.admin_id

    async def export(**overrides: Any) -> int:
        settings = make_settings(url, page_size=300, first_page_size=100, **overrides)
        conn = await db.connect(settings, url)
        pages, _ = await snapshot_pages(conn, url, settings, admin, format="csv")
        try:
            await pages.open()
            rows = 0
            async for page in pages.pages():
                rows += page.rows
            return rows
        finally:
            await pages.close()
            await conn.close()

    learners = query(url, "SELECT count(*) AS n FROM public.learners")[0]["n"]
    assert run(export(statement_timeout_ms=200, bulk_pass=False)) == learners
    assert run(export(statement_timeout_ms=200)) == learners


async def _export(url: str, caller: str, fmt: str = "csv", **overrides: Any) -> tuple[bytes, int]:
    """An export's CSV (or `fmt`) read with these settings, and the connections it used; what
    arrived before a failure is in the exception's `received` note."""
    settings = make_settings(url, page_size=300, first_page_size=100, **overrides)
    conn = await db.connect(settings, url)
    pages, _ = await snapshot_pages(conn, url, settings, caller, format=fmt)
    received: list[bytes] = []
    try:
        await pages.open()
        async for page in pages.pages():
            received.append(bytes(page.data))
        return b"".join(received), pages.connections
    except Exception as exc:
        exc.add_note(b"".join(received).decode())
        raise
    finally:
        await pages.close()
        await conn.close()


@pytest.mark.parametrize("fmt", ["csv", "xlsx"])
def test_a_large_bulk_pass_is_read_in_ranges_at_once(
    database: Database, seeded: str, fmt: str
) -> None:
    """Two connections read the rest of the export in two key ranges; the second is rendered
    and sorted meanwhile and sent after the first. With ranges larger than the export allows,
    one connection reads it all. Either way, the rows of the page walk."""
    url = database.url
    paged, _ = run(_export(url, seeded, fmt, bulk_pass=False))
    ranges, used = run(_export(url, seeded, fmt))
    assert used == 2
    whole, alone = run(_export(url, seeded, fmt, bulk_range_min_rows=1_000_000))
    assert alone == 1
    assert ranges == whole == paged
    if fmt == "csv":
        assert len(list(csv.reader(io.StringIO(ranges.decode(), newline="")))) >= 4000


@pytest.fixture
def own(pg_server: str) -> Iterator[Database]:
    """A database of this test's own: its bulk view is changed."""
    with fresh_database(pg_server, 600, 4, seed=23) as database:
        yield database


def test_a_view_that_repeats_learners_cuts_the_export(own: Database) -> None:
    # Progress joined without its aggregate: a row per module, keys repeated.
    query(
        own.url,
        SAMPLE[SAMPLE.index(VIEW_START) :].replace(
            PROGRESS,
            "  LEFT JOIN (SELECT m.learner_id, 1 AS total, 1 AS completed"
            " FROM public.learner_module_progress AS m) AS p ON p.learner_id = l.id",
        ),
    )
    with pytest.raises(ContractBreach) as cut:
        run(export_bytes(own.url, own.admin_id, format="csv"))
    assert "learner_export.learner_export_rows returned the key" in str(cut.value)
    assert "twice" in str(cut.value)
    paged, _ = run(export_bytes(own.url, own.admin_id, format="csv", bulk_pass=False))
    assert paged.count(b"\r\n") >= 601

    # Fewer rows left than the bulk pass needs: read page by page, and the view is not read.
    async def few() -> bytes:
        settings = make_settings(own.url, page_size=300, first_page_size=100, bulk_min_rows=501)
        conn = await db.connect(settings, own.url)
        pages, _ = await snapshot_pages(conn, own.url, settings, own.admin_id)
        try:
            await pages.open()
            return b"".join([bytes(p.data) async for p in pages.pages()])
        finally:
            await pages.close()
            await conn.close()

    assert run(few()).count(b"\n") >= 600


def test_a_breach_in_a_held_range_cuts_the_export_after_the_ranges_before_it(
    own: Database,
) -> None:
    """The view repeats its last learner, a row of the second range: the first range is sent
    whole, then the export is cut there, naming the view, and never ends like a whole file."""
    last = query(
        own.url, "SELECT id FROM public.learners ORDER BY created_at DESC, id DESC LIMIT 1"
    )[0]["id"]
    view = SAMPLE[SAMPLE.index(VIEW_START) :].rstrip().rstrip(";")
    body = view[len(VIEW_START) :]
    query(
        own.url,
        f"{VIEW_START} SELECT * FROM ({body}) AS v"
        f" UNION ALL SELECT * FROM ({body}) AS v WHERE v.learner_id = '{last}'",
    )
    with pytest.raises(ContractBreach) as cut:
        run(_export(own.url, own.admin_id))
    assert "learner_export.learner_export_rows returned the key" in str(cut.value)
    assert "twice" in str(cut.value)
    (received,) = cut.value.__notes__
    paged, _ = run(_export(own.url, own.admin_id, bulk_pass=False))
    # What arrived before the cut is the export's start, past the first range's end.
    assert paged.startswith(received.encode())
    assert len(received) > len(paged) // 2


def test_a_null_key_in_an_early_range_cuts_the_export(own: Database) -> None:
    """The view gives a learner of the first range a NULL time: that row sorts after every
    range's end, so the last range must take it and the guard refuse it; a bounded range must
    not drop it unseen."""
    early = query(
        own.url, "SELECT id FROM public.learners ORDER BY created_at, id OFFSET 150 LIMIT 1"
    )[0]["id"]
    view = SAMPLE[SAMPLE.index(VIEW_START) :].rstrip().rstrip(";")
    body = view[len(VIEW_START) :].replace(
        "       l.created_at,\n",
        f"       CASE WHEN l.id = '{early}' THEN NULL ELSE l.created_at END AS created_at,\n",
        1,
    )
    query(own.url, f"{VIEW_START}{body}")
    with pytest.raises(ContractBreach) as cut:
        run(_export(own.url, own.admin_id))
    assert "learner_export.learner_export_rows returned a row whose keyset is NULL" in str(
        cut.value
    )
    (received,) = cut.value.__notes__
    # What arrived is the export without that learner, into the last range; never that row.
    paged, _ = run(_export(own.url, own.admin_id, bulk_pass=False))
    others = [r for r in csv.reader(io.StringIO(paged.decode(), newline="")) if r[0] != str(early)]
    sent = list(csv.reader(io.StringIO(received, newline="")))
    assert sent == others[: len(sent)]
    assert len(sent) > len(others) // 2


def _migrate(url: str, tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "adapter.sql"
    path.write_text(text)
    return subprocess.run(
        [sys.executable, "-m", "learner_export.cli.main", "db", "migrate", "--adapter", str(path)],
        env={**os.environ, "DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


@pytest.mark.parametrize(
    ("edit", "sentence"),
    [
        (
            (
                "       l.notes\n  FROM public.learners AS l",
                "       l.notes AS remarks\n  FROM public.learners AS l",
            ),
            "must have the columns of get_learner_export_batch",
        ),
        (
            (VIEW_START, VIEW_START.replace(" AS", " WITH (security_invoker = true) AS")),
            "is security_invoker",
        ),
    ],
)
def test_migrate_refuses_a_view_that_misses_the_contract(
    own: Database, tmp_path: Path, edit: tuple[str, str], sentence: str
) -> None:
    old, new = edit
    assert old in SAMPLE
    before = query(own.url, "SELECT 'learner_export.learner_export_rows'::regclass::oid")
    done = _migrate(own.url, tmp_path, SAMPLE.replace(old, new, 1))
    assert done.returncode == 1
    assert sentence in done.stderr and "Traceback" not in done.stderr
    assert "nothing was changed" in done.stderr
    after = query(own.url, "SELECT 'learner_export.learner_export_rows'::regclass::oid")
    assert before == after


def test_migrate_refuses_a_view_without_the_callers_scope(own: Database, tmp_path: Path) -> None:
    view = SAMPLE.index(VIEW_START)
    start = SAMPLE.index("   AND ((SELECT learner_export.export_scope(", view)
    end = SAMPLE.index(
        "   AND ((SELECT nullif(pg_catalog.current_setting('learner_export.active')", view
    )
    done = _migrate(own.url, tmp_path, SAMPLE[:start] + SAMPLE[end:])
    assert done.returncode == 1
    assert "does not call learner_export.export_scope()" in done.stderr


def test_only_the_service_role_reads_the_view(database: Database) -> None:
    grantees = query(
        database.url,
        "SELECT a.grantee::regrole::text AS who, a.privilege_type AS what"
        "  FROM pg_class AS c, aclexplode(c.relacl) AS a"
        " WHERE c.oid = 'learner_export.learner_export_rows'::regclass"
        "   AND a.grantee <> c.relowner",
    )
    assert [(r["who"], r["what"]) for r in grantees] == [(service_role_of(database.url), "SELECT")]


def test_without_the_view_every_page_goes_through_the_page_function(own: Database) -> None:
    query(own.url, "DROP VIEW learner_export.learner_export_rows")
    with_view_gone, _ = run(export_bytes(own.url, own.admin_id, format="csv"))
    paged, _ = run(export_bytes(own.url, own.admin_id, format="csv", bulk_pass=False))
    assert with_view_gone == paged and paged.count(b"\r\n") >= 601


def test_db_check_compares_the_view_with_the_pages(own: Database) -> None:
    def check() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "learner_export.cli.main", "db", "check", "--as", own.admin_id],
            env={**os.environ, "DATABASE_URL": own.url},
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
        )

    met = check()
    assert met.returncode == 0, met.stdout + met.stderr
    assert "the bulk view learner_export.learner_export_rows has the page function's" in met.stdout
    # A value the pages do not have: the view is not the same rows.
    query(
        own.url,
        SAMPLE[SAMPLE.index(VIEW_START) :].replace(
            "       l.full_name,\n       l.email,",
            "       upper(l.full_name) AS full_name,\n       l.email,",
        ),
    )
    differs = check()
    assert differs.returncode == 1
    assert "disagrees with get_learner_export_batch at row" in differs.stdout
    assert ": full_name. It must hold the same rows" in differs.stdout
