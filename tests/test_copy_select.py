"""Pages written by PostgreSQL's COPY are the bytes the Python encoders write for the rows.

CSV and JSON Lines exports read their pages with COPY (service.copy_select); exports with
`cursor=true` encode rows in Python. Both must give the same file, byte for byte, messy data
included.
"""

from __future__ import annotations

import csv
import io
import uuid
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import openpyxl
import orjson
import pytest

from service import db
from service.columns import BY_NAME, COLUMNS
from service.copy_select import copy_select
from service.cursor import decode_cursor
from service.formats import FORMATS, EncodeOptions
from service.formats.csv import crlf
from service.helpers import ConnectHelpers
from service.params import ExportParams
from service.source import CopiedPage, LearnerExport
from service.stream import encode_stream
from tests.conftest import SEED_LEARNERS, make_settings, query, run

# Values that each need COPY and the encoder to agree on a rule.
AWKWARD = ["", "\\.", "=1+2", "+1", "-1", "@a", "\tx", "\rx", "'quoted'", 'say "hi"',
           "a,b", "a\nb", "a\r\nb", "\r", "\n", " lead and trail ", "😀 ünï 中文",
           "\\N", "NULL", "\x01\x1f control"]


@pytest.fixture(scope="module")
def awkward_client(database_url: str) -> Iterator[str]:
    """A client whose learners hold the awkward values in every text column."""
    client = str(uuid.uuid4())
    query(database_url, "INSERT INTO public.clients (id, name) VALUES ($1, $2)", client,
          '=HYPERLINK("x"), "client"')
    for i, text in enumerate(AWKWARD):
        query(database_url,
              "INSERT INTO public.learners (client_id, full_name, email, phone, notes,"
              " created_at, last_login_at, is_active, job_readiness_stars)"
              " VALUES ($1, $2, $2, $2, $2, $3, $4, $5, $6)",
              client, text, datetime(2031, 1, 1, 0, 0, i, tzinfo=UTC),
              datetime(2031, 2, 1, 12, 0, 0, 500 * i, tzinfo=UTC) if i % 2 else None,
              i % 3 == 0, i % 6)
    yield client
    query(database_url, "DELETE FROM public.learners WHERE client_id = $1", client)
    query(database_url, "DELETE FROM public.clients WHERE id = $1", client)


async def _export(url: str, admin: str, params: ExportParams, *, copy: bool,
                  sheet_rows: int) -> tuple[bytes, int, bool]:
    settings = make_settings(url, page_size=300, first_page_size=100)
    conn = await db.connect(settings, url)
    export = LearnerExport(conn, params, settings, admin, helpers=ConnectHelpers(settings, url),
                           copy=copy_select(params) if copy else None)
    encoder = FORMATS[params.format].make_encoder(
        export.columns, EncodeOptions(bom=params.bom, escape_formulas=params.escape_formulas,
                                      sheet_rows=sheet_rows))
    copied = False
    try:
        await export.open()
        copied = export.copies
        body = b"".join([bytes(c) async for c in encode_stream(export.batches(), encoder,
                                                               1 << 16)])
        return body, export.connections, copied
    finally:
        await export.close()
        await conn.close()


def both(url: str, admin: str, fmt: str = "csv", *, helped: bool = False,
         sheet_rows: int = 1_048_576, **params: Any) -> tuple[bytes, bytes]:
    """The export by COPY and by the encoder; `helped`: the COPY one read on two connections
    (a helper joins exports longer than their first page once it has connected)."""
    p = ExportParams(format=fmt, **params)
    by_copy, connections, copied = run(_export(url, admin, p, copy=True, sheet_rows=sheet_rows))
    by_rows, _, by_rows_copied = run(_export(url, admin, p, copy=False, sheet_rows=sheet_rows))
    assert copied and not by_rows_copied
    assert connections == 2 if helped else connections in (1, 2)
    return by_copy, by_rows


@pytest.mark.parametrize("escape_formulas", [True, False])
def test_copy_and_encoder_write_the_same_file(database_url: str, seeded: str,
                                              awkward_client: str, escape_formulas: bool
                                              ) -> None:
    by_copy, by_rows = both(database_url, seeded, helped=True, escape_formulas=escape_formulas)
    assert by_copy == by_rows
    assert by_copy.count(b"\r\n") >= SEED_LEARNERS + len(AWKWARD)
    # full_name, email and phone of the awkward learner whose text is =1+2
    if escape_formulas:
        assert b",'=1+2,'=1+2,'=1+2," in by_copy
    else:
        assert b",=1+2,=1+2,=1+2," in by_copy


def test_copy_and_encoder_agree_on_awkward_text(database_url: str, seeded: str,
                                                awkward_client: str) -> None:
    by_copy, by_rows = both(database_url, seeded, client_ids=(awkward_client,),
                            columns=(BY_NAME["notes"], BY_NAME["created_at"],
                                     BY_NAME["last_login_at"], BY_NAME["is_active"],
                                     BY_NAME["client_name"]))
    assert by_copy == by_rows
    lines = by_copy.split(b"\r\n")
    assert lines[0] == b"notes,created_at,last_login_at,is_active,client_name"
    # An empty string is "" and NULL is nothing; timestamps always carry microseconds.
    assert lines[1] == (b'"",2031-01-01T00:00:00.000000+00:00,,true,'
                        b'"\'=HYPERLINK(""x""), ""client"""')
    assert b'"a\nb"' in by_copy and b'"a\r\nb"' in by_copy


def test_a_lone_column_quotes_the_end_of_data_marker(database_url: str, seeded: str,
                                                     awkward_client: str) -> None:
    by_copy, by_rows = both(database_url, seeded, client_ids=(awkward_client,),
                            columns=(BY_NAME["notes"],))
    assert by_copy == by_rows
    assert b'\r\n"\\."\r\n' in by_copy


def test_every_column_alone(database_url: str, seeded: str) -> None:
    for column in COLUMNS:
        by_copy, by_rows = both(database_url, seeded, columns=(column,), limit=700)
        assert by_copy == by_rows, column.name
        assert by_copy.count(b"\r\n") >= 701


def test_json_lines_by_copy_are_the_encoders(database_url: str, seeded: str,
                                             awkward_client: str) -> None:
    by_copy, by_rows = both(database_url, seeded, "jsonl", helped=True)
    assert by_copy == by_rows
    rows = [orjson.loads(line) for line in by_copy.splitlines()]
    assert len(rows) >= SEED_LEARNERS + len(AWKWARD)
    awkward = [r for r in rows if r["client_id"] == awkward_client]
    assert [r["notes"] for r in awkward] == AWKWARD
    assert awkward[1]["last_login_at"] == "2031-02-01T12:00:00.000500+00:00"
    assert awkward[0]["created_at"] == "2031-01-01T00:00:00.000000+00:00"
    assert awkward[0]["last_login_at"] is None and awkward[0]["is_active"] is True
    assert {type(r["progress_percent"]) for r in rows} <= {float, type(None)}
    assert any(r["progress_percent"] == 100.0 for r in rows)


def test_json_lines_by_copy_with_chosen_columns(database_url: str, seeded: str,
                                                awkward_client: str) -> None:
    by_copy, by_rows = both(database_url, seeded, "jsonl", client_ids=(awkward_client,),
                            columns=(BY_NAME["notes"], BY_NAME["modules_total"]))
    assert by_copy == by_rows
    assert by_copy.splitlines()[0] == b'{"notes":"","modules_total":0}'
    for column in COLUMNS:
        by_copy, by_rows = both(database_url, seeded, "jsonl", columns=(column,), limit=300)
        assert by_copy == by_rows, column.name


def sheets(workbook: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(workbook)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


@pytest.mark.parametrize("escape_formulas", [True, False])
def test_xlsx_by_copy_is_the_encoders(database_url: str, seeded: str, awkward_client: str,
                                      escape_formulas: bool) -> None:
    by_copy, by_rows = both(database_url, seeded, "xlsx", helped=True,
                            escape_formulas=escape_formulas)
    copied, encoded = sheets(by_copy), sheets(by_rows)
    assert copied == encoded  # the same parts, the same XML, byte for byte
    sheet = copied["xl/worksheets/sheet1.xml"]
    assert sheet.count(b"<row>") == SEED_LEARNERS + len(AWKWARD) + 1
    assert b"\n<row>" not in sheet and b"<t>a&#10;b</t>" in sheet
    workbook = openpyxl.load_workbook(io.BytesIO(by_copy), read_only=True)
    notes = [r[-1] for r in workbook.active.iter_rows(values_only=True)]
    # Inline strings are never formulas; neutralised ones also carry the quotePrefix style.
    assert "a\nb" in notes and "=1+2" in notes
    assert (b' s="2"><is><t>=1+2</t>' in sheet) is escape_formulas


def test_xlsx_by_copy_starts_new_sheets_mid_page(database_url: str, seeded: str) -> None:
    # 250 data rows a sheet (and its header), pages of 100 then 300: sheets end mid-page.
    by_copy, by_rows = both(database_url, seeded, "xlsx", limit=1001, sheet_rows=251,
                            columns=(BY_NAME["learner_id"], BY_NAME["created_at"]))
    copied = sheets(by_copy)
    assert copied == sheets(by_rows)
    assert [copied[f"xl/worksheets/sheet{n}.xml"].count(b"<row>") for n in (1, 2, 3, 4)] == [
        251, 251, 251, 251]
    assert copied["xl/worksheets/sheet5.xml"].count(b"<row>") == 1 + 1
    assert "xl/worksheets/sheet6.xml" not in copied


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_resume_cursors_by_copy_are_the_encoders(database_url: str, seeded: str,
                                                 awkward_client: str, fmt: str) -> None:
    by_copy, by_rows = both(database_url, seeded, fmt, helped=True, cursor=True)
    assert by_copy == by_rows
    if fmt == "jsonl":
        cursors = [orjson.loads(line)["_cursor"] for line in by_copy.splitlines()]
    else:
        reader = csv.reader(io.StringIO(by_copy.decode(), newline=""))
        cursors = [row[-1] for row in list(reader)[1:]]
    assert len(set(cursors)) == len(cursors) >= SEED_LEARNERS
    # Each cursor names its row: decoded, it is the row's key.
    keys = [(r["created_at"], r["learner_id"]) for r in query(
        database_url, "SELECT created_at, learner_id FROM public.get_learner_export_batch("
        "$1::uuid, NULL, NULL, NULL, NULL, NULL, NULL, 100000)", seeded)]
    assert [decode_cursor(c) for c in cursors] == keys


def test_crlf_leaves_line_breaks_inside_quotes() -> None:
    assert crlf(b'a,"x\ny"\nb,"say ""\n"""\n') == b'a,"x\ny"\r\nb,"say ""\n"""\r\n'
    assert crlf(b"a,b\nc,d\n") == b"a,b\r\nc,d\r\n"
    assert crlf(b"") == b""


def test_copied_pages_count_their_rows(database_url: str, seeded: str) -> None:
    async def pages() -> list[int]:
        settings = make_settings(database_url, page_size=300, first_page_size=100)
        conn = await db.connect(settings, database_url)
        params = ExportParams(format="csv", limit=1000)
        export = LearnerExport(conn, params, settings, seeded, copy=copy_select(params))
        try:
            await export.open()
            sizes = []
            async for page in export.batches():
                assert isinstance(page, CopiedPage)
                sizes.append(page.rows)
            assert export.rows_fetched == 1000
            return sizes
        finally:
            await export.close()
            await conn.close()

    assert run(pages()) == [100, 300, 300, 300]


def test_page_ends_match_the_pages(database_url: str, seeded: str) -> None:
    """learner_export_page_ends() finds the last key of each page as the pages read it."""
    keys = [(r["created_at"], r["learner_id"]) for r in query(
        database_url, "SELECT created_at, learner_id FROM public.get_learner_export_batch("
        "$1::uuid, NULL, NULL, NULL, NULL, NULL, NULL, 100000)", seeded)]
    after = keys[99]
    ends = query(database_url, "SELECT created_at, learner_id::text FROM"
                 " public.learner_export_page_ends($1::uuid, NULL, NULL, NULL, NULL, $2, $3::uuid,"
                 " 300, 100)", seeded, after[0], after[1])
    expected = keys[100 + 299::300]
    assert [(e["created_at"], e["learner_id"]) for e in ends] == expected
    assert len(expected) == (len(keys) - 100) // 300


def test_page_ends_apply_the_callers_scope(database_url: str, seeded: str) -> None:
    student = str(uuid.uuid4())
    query(database_url, "INSERT INTO public.profiles (id, role) VALUES ($1, 'Student')", student)
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        query(database_url, "SELECT * FROM public.learner_export_page_ends($1::uuid, NULL, NULL,"
              " NULL, NULL, NULL, NULL, 10, 1)", student)
