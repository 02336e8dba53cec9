"""The XLSX export as real spreadsheet programs open it: LibreOffice (headless) and Gnumeric's
ssconvert convert it to CSV with the values as each displays them, and LibreOffice prints it to
PDF with no `###` (a date-time too wide for its column)."""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import openpyxl
import pytest
from python_calamine import CalamineWorkbook

from learner_export.contract.columns import Kind
from tests.conftest import LiveServer
from tests.reference import KINDS, NAMES, XML_ILLEGAL, reference_rows

ROWS = 300

needs_soffice = pytest.mark.skipif(
    shutil.which("soffice") is None, reason="LibreOffice (soffice) is not installed"
)
needs_ssconvert = pytest.mark.skipif(
    shutil.which("ssconvert") is None, reason="Gnumeric's ssconvert is not installed"
)


def export(live: LiveServer, tmp_path: Path, **params: Any) -> Path:
    response = live.export(format="xlsx", **params)
    assert response.status_code == 200, response.text
    target = tmp_path / "learners.xlsx"
    target.write_bytes(response.content)
    return target


def soffice(source: Path, target: str, outdir: Path) -> Path:
    """Convert with a fresh LibreOffice profile (a shared one locks, and remembers settings)."""
    profile = outdir / "profile"
    subprocess.run(
        [
            "soffice",
            f"-env:UserInstallation={profile.as_uri()}",
            "--headless",
            "--convert-to",
            target,
            "--outdir",
            str(outdir),
            str(source),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    converted = outdir / f"{source.stem}.{target.split(':')[0]}"
    assert converted.exists(), f"LibreOffice wrote no {converted.name}"
    return converted


def displayed(name: str, value: Any) -> str:
    """The cell as a spreadsheet shows it with the workbook's formats: date-times in UTC to the
    second (the number format yyyy-mm-dd hh:mm:ss rounds), booleans TRUE/FALSE, whole numbers
    without a decimal point; text without the characters XML forbids."""
    kind = KINDS[name]
    if value is None:
        return ""
    if kind is Kind.TIMESTAMPTZ:
        wall = value.astimezone(UTC) + timedelta(microseconds=500_000)
        return str(wall.strftime("%Y-%m-%d %H:%M:%S"))
    if kind is Kind.BOOL:
        return "TRUE" if value else "FALSE"
    if kind is Kind.FLOAT:
        return f"{value:g}"
    if kind is Kind.TEXT:
        return XML_ILLEGAL.sub("", value)
    return str(value)


def expected_csv(sql: Any) -> list[list[str]]:
    rows = reference_rows(sql)[:ROWS]
    assert len(rows) == ROWS
    return [NAMES] + [[displayed(n, row[n]) for n in NAMES] for row in rows]


def read_csv(path: Path) -> list[list[str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.reader(f))


def assert_same_rows(got: list[list[str]], want: list[list[str]]) -> None:
    assert len(got) == len(want)
    for n, (row, wanted) in enumerate(zip(got, want, strict=True), start=1):
        assert dict(zip(NAMES, row, strict=True)) == dict(zip(NAMES, wanted, strict=True)), n


@needs_soffice
def test_libreoffice_shows_the_database_values(live: LiveServer, sql: Any, tmp_path: Path) -> None:
    source = export(live, tmp_path, limit=ROWS)
    # 44,34,76,1: comma, double quote, UTF-8, first line; cells as formatted (the default).
    converted = soffice(source, "csv:Text - txt - csv (StarCalc):44,34,76,1", tmp_path)
    # LibreOffice keeps one kind of line break in a cell: CR LF becomes LF as it reads.
    want = [[cell.replace("\r\n", "\n") for cell in row] for row in expected_csv(sql)]
    assert_same_rows(read_csv(converted), want)


@needs_ssconvert
def test_gnumeric_opens_it_and_shows_the_database_values(
    live: LiveServer, sql: Any, tmp_path: Path
) -> None:
    source = export(live, tmp_path, limit=ROWS)
    target = tmp_path / "gnumeric.csv"
    result = subprocess.run(
        [
            "ssconvert",
            "-T",
            "Gnumeric_stf:stf_assistant",
            "-O",
            "separator=, format=preserve",
            str(source),
            str(target),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "Invalid" not in result.stderr
    assert_same_rows(read_csv(target), expected_csv(sql))


@needs_soffice
@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="poppler's pdftotext is missing")
def test_libreoffice_prints_every_date_time_in_full(
    live: LiveServer, sql: Any, tmp_path: Path
) -> None:
    source = export(live, tmp_path, limit=40, columns="full_name,created_at,last_login_at,email")
    pdf = soffice(source, "pdf", tmp_path)
    text = subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert "###" not in text
    first = reference_rows(sql)[0]
    # The header, and a full date-time (no column cut it short).
    assert "last_login_at" in text
    assert displayed("created_at", first["created_at"]) in text


def test_sheet_xml_carries_references_widths_and_a_filter(live: LiveServer, tmp_path: Path) -> None:
    source = export(live, tmp_path, limit=5, columns="learner_id,created_at,email,is_active")
    workbook = openpyxl.load_workbook(source)
    sheet = workbook["Learners"]
    assert sheet.freeze_panes == "A2"
    assert sheet.auto_filter.ref == "A1:D6"
    assert all(cell.font.b for cell in sheet[1])
    widths = {letter: sheet.column_dimensions[letter].width for letter in "ABCD"}
    assert widths["A"] >= 36 and widths["B"] >= 19 and widths["C"] >= 20
    assert sheet["B2"].number_format == "yyyy-mm-dd hh:mm:ss"
    assert sheet.max_row == 6
    calamine = CalamineWorkbook.from_filelike(io.BytesIO(source.read_bytes()))
    assert len(calamine.get_sheet_by_name("Learners").to_python()) == 6
