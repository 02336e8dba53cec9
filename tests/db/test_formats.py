"""Each format, read back by an independent reader, equals the database row by row."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime
from typing import Any

import openpyxl
import orjson
import pytest
from python_calamine import CalamineWorkbook

from learner_export.formats.formula import needs_neutralising
from tests.conftest import SEED_LEARNERS, LiveServer
from tests.reference import NAMES, as_csv_cell, as_excel, reference_rows, same_instant


def download(live: LiveServer, **params: Any) -> tuple[Any, bytes]:
    response = live.export(**params)
    assert response.status_code == 200, response.text
    return response, response.content


def test_csv_equals_database(live: LiveServer, sql: Any) -> None:
    response, body = download(live, format="csv")
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["cache-control"] == "no-store"
    disposition = response.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="learners-')
    assert ".csv\"; filename*=UTF-8''learners-" in disposition
    assert not body.startswith(b"\xef\xbb\xbf")
    assert b"\r\n" in body
    rows = list(csv.reader(io.StringIO(body.decode("utf-8"), newline="")))
    expected = reference_rows(sql)
    assert len(expected) == SEED_LEARNERS
    assert rows[0] == NAMES
    assert len(rows) - 1 == len(expected)
    for got, want in zip(rows[1:], expected, strict=True):
        assert got == [as_csv_cell(n, want[n]) for n in NAMES]


def test_csv_neutralises_formulas_unless_asked_not_to(live: LiveServer, sql: Any) -> None:
    _, body = download(live, format="csv", columns="full_name,phone,notes")
    cells = [c for row in csv.reader(io.StringIO(body.decode(), newline="")) for c in row]
    assert any(c.startswith("'=") for c in cells)
    # Phone numbers are ordinary data: no quote in front of them.
    assert any(c.startswith("+61 ") for c in cells)
    assert not any(c.startswith("'+61") for c in cells)
    assert not any(needs_neutralising(c) for c in cells)

    _, raw = download(live, format="csv", columns="full_name,phone,notes", escape_formulas="false")
    raw_cells = [c for row in csv.reader(io.StringIO(raw.decode(), newline="")) for c in row]
    assert any(c.startswith("=") for c in raw_cells)
    assert not any(c.startswith("'") for c in raw_cells[3:] if not c.startswith("''"))


def test_csv_bom_and_column_choice(live: LiveServer, sql: Any) -> None:
    _, body = download(live, format="csv", bom="true", columns="email,created_at,learner_id")
    assert body.startswith(b"\xef\xbb\xbfemail,created_at,learner_id\r\n")
    rows = list(csv.reader(io.StringIO(body[3:].decode(), newline="")))
    expected = reference_rows(sql)
    assert [r for r in rows[1:]] == [
        [
            as_csv_cell("email", e["email"]),
            as_csv_cell("created_at", e["created_at"]),
            e["learner_id"],
        ]
        for e in expected
    ]


def test_jsonl_equals_database(live: LiveServer, sql: Any) -> None:
    response, body = download(live, format="jsonl")
    assert response.headers["content-type"] == "application/x-ndjson"
    assert response.headers["content-disposition"].startswith('attachment; filename="learners-')
    assert body.endswith(b"\n")
    lines = body.split(b"\n")[:-1]
    expected = reference_rows(sql)
    assert len(lines) == len(expected)
    for line, want in zip(lines, expected, strict=True):
        got = orjson.loads(line)
        assert list(got) == NAMES
        for name in NAMES:
            value = want[name]
            if isinstance(value, datetime):
                assert datetime.fromisoformat(got[name]) == value
            else:
                assert got[name] == value, name
                assert type(got[name]) is type(value), name


def test_jsonl_limit_and_filters(live: LiveServer, sql: Any) -> None:
    clients = [r["id"] for r in sql("SELECT id FROM public.clients ORDER BY id LIMIT 2")]
    _, body = download(
        live,
        format="jsonl",
        client_id=clients,
        active="false",
        created_from="2024-01-01T02:00:00Z",
        created_to="2024-01-02",
        limit=25,
    )
    got = [orjson.loads(line) for line in body.splitlines()]
    expected = reference_rows(
        sql,
        "WHERE l.client_id = ANY($1::uuid[]) AND NOT l.is_active"
        " AND l.created_at >= '2024-01-01T02:00:00Z' AND l.created_at < '2024-01-02'",
        clients,
    )[:25]
    assert len(expected) > 0
    assert [g["learner_id"] for g in got] == [e["learner_id"] for e in expected]


def _check_excel_rows(
    rows: list[list[Any]], expected: list[dict[str, Any]], numbers_as_float: bool = False
) -> None:
    for got, want in zip(rows, expected, strict=True):
        for name, value in zip(NAMES, got, strict=True):
            wanted = as_excel(name, want[name])
            if isinstance(wanted, datetime):
                if type(value) is date:  # calamine gives a date for a midnight date-time
                    value = datetime(value.year, value.month, value.day)
                assert isinstance(value, datetime) and same_instant(value, wanted), name
            elif wanted is None:
                assert value in (None, ""), name
            elif numbers_as_float and isinstance(wanted, int) and not isinstance(wanted, bool):
                assert value == float(wanted), name
            else:
                assert value == wanted, name


def test_xlsx_equals_database_in_openpyxl_and_calamine(live: LiveServer, sql: Any) -> None:
    response, body = download(live, format="xlsx")
    assert response.headers["content-type"] == (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    assert '.xlsx"' in response.headers["content-disposition"]
    expected = reference_rows(sql)

    workbook = openpyxl.load_workbook(io.BytesIO(body), read_only=True)
    assert workbook.sheetnames == ["Learners"]
    rows = [list(r) for r in workbook["Learners"].iter_rows(values_only=True)]
    assert rows[0] == NAMES
    _check_excel_rows(rows[1:], expected)

    sheet = CalamineWorkbook.from_filelike(io.BytesIO(body)).get_sheet_by_name("Learners")
    cal_rows = sheet.to_python()
    assert cal_rows[0] == NAMES
    _check_excel_rows(cal_rows[1:], expected, numbers_as_float=True)


def test_xlsx_formula_like_text_is_kept_as_text(live: LiveServer) -> None:
    _, body = download(live, format="xlsx", columns="full_name,notes")
    workbook = openpyxl.load_workbook(io.BytesIO(body))
    cells = [c for row in workbook.active.iter_rows() for c in row]
    formula_like = [c for c in cells if isinstance(c.value, str) and c.value.startswith("=")]
    assert formula_like, "the seed has formula-like names and notes"
    for cell in formula_like:
        assert cell.data_type == "s"  # a string, never a formula
        assert cell.quotePrefix  # and it stays text when edited in a spreadsheet


@pytest.fixture(scope="module")
def small_sheets(start_server: Any) -> LiveServer:
    server: LiveServer = start_server(xlsx_sheet_rows=1000)
    return server


def test_xlsx_rolls_over_to_new_sheets(small_sheets: LiveServer, sql: Any) -> None:
    _, body = download(small_sheets, format="xlsx")
    workbook = openpyxl.load_workbook(io.BytesIO(body), read_only=True)
    per_sheet = 999
    sheets = -(-SEED_LEARNERS // per_sheet)
    assert workbook.sheetnames == ["Learners"] + [f"Learners {n}" for n in range(2, sheets + 1)]
    rows: list[list[Any]] = []
    for ws in workbook.worksheets:
        sheet_rows = [list(r) for r in ws.iter_rows(values_only=True)]
        assert sheet_rows[0] == NAMES
        assert 1 < len(sheet_rows) <= 1000
        rows.extend(sheet_rows[1:])
    _check_excel_rows(rows, reference_rows(sql))
