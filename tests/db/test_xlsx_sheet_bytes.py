"""A sheet ends by bytes as well as by rows: past the byte bound (2 GiB less a margin in the
service, a parameter here) the export goes on in the next sheet, header repeated, every row
once, each sheet's XML within the bound and its filter covering exactly its rows."""

from __future__ import annotations

import io
import zipfile
from typing import Any

import openpyxl

from learner_export import db
from learner_export.formats.xlsx import SHEET_BYTES, XlsxFramer
from tests.conftest import Database, make_settings, run, snapshot_pages

BOUND = 60_000
ROWS = 1500


async def _workbook(url: str, caller: str, sheet_bytes: int) -> bytes:
    settings = make_settings(url, page_size=300, first_page_size=100)
    conn = await db.connect(settings, url)
    pages, parsed = await snapshot_pages(conn, url, settings, caller, format="xlsx", limit=ROWS)
    framer = XlsxFramer(parsed.columns, parsed.render_options(settings), sheet_bytes)
    try:
        await pages.open()
        parts = [framer.begin()]
        async for page in pages.pages():
            parts.append(framer.page(page.data))
        parts.append(framer.end())
        return b"".join(parts)
    finally:
        framer.close()
        await pages.close()
        await conn.close()


def _values(workbook: bytes) -> list[list[Any]]:
    book = openpyxl.load_workbook(io.BytesIO(workbook), read_only=True)
    return [[list(row) for row in sheet.iter_rows(values_only=True)] for sheet in book.worksheets]


def test_the_service_bound_keeps_every_sheet_out_of_zip64() -> None:
    assert SHEET_BYTES < zipfile.ZIP64_LIMIT


def test_sheets_end_by_bytes_with_every_row_once(database: Database) -> None:
    whole = run(_workbook(database.url, database.admin_id, SHEET_BYTES))
    split = run(_workbook(database.url, database.admin_id, BOUND))
    (one,) = _values(whole)
    sheets = _values(split)
    assert len(sheets) > 3
    header = one[0]
    assert all(sheet[0] == header for sheet in sheets)
    assert [row for sheet in sheets for row in sheet[1:]] == one[1:]
    with zipfile.ZipFile(io.BytesIO(split)) as z:
        xml = [z.read(n) for n in sorted(z.namelist()) if n.startswith("xl/worksheets/")]
        # The bound holds the sheet's start and rows; its end adds a few hundred bytes.
        assert all(len(x) <= BOUND + 1024 for x in xml)
    book = openpyxl.load_workbook(io.BytesIO(split))
    for sheet, values in zip(book.worksheets, sheets, strict=True):
        assert (
            sheet.auto_filter.ref == f"A1:{sheet.cell(1, len(header)).column_letter}{len(values)}"
        )


def test_every_sheet_is_deflated_and_checks_out(database: Database) -> None:
    """The sheets are deflated by ISA-L (formats/xlsx.fast_deflate), the small members by zlib:
    every member's CRC and sizes check out in the standard library's reader, and each sheet is
    compressed like a deflated sheet is (to well under a third of its XML)."""
    split = run(_workbook(database.url, database.admin_id, BOUND))
    with zipfile.ZipFile(io.BytesIO(split)) as z:
        assert z.testzip() is None
        sheets = [i for i in z.infolist() if i.filename.startswith("xl/worksheets/")]
        assert len(sheets) > 3
        for info in sheets:
            assert info.compress_type == zipfile.ZIP_DEFLATED
            assert info.compress_size * 3 < info.file_size
