"""A real spreadsheet reads the CSV that COPY writes with the formula rule: LibreOffice, headless,
with `,`, `;` and tab as the separator, trimming spaces and evaluating formulas (its most
trusting reading), finds no formula in any cell."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

import asyncpg
import openpyxl
import pytest

from learner_export.formats.csv import crlf
from learner_export.formats.formula import sql_neutralised
from tests.conftest import run
from tests.unit.test_formula import ORDINARY, PAYLOADS

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("soffice") is None, reason="LibreOffice missing"),
]

SEPARATORS = {"comma": 44, "semicolon": 59, "tab": 9}


async def _copy_csv(server: str, cell: Callable[[str], str]) -> bytes:
    """The corpus as COPY writes an export's CSV: a row number, then the cell."""
    conn = await asyncpg.connect(server)
    chunks: list[bytes] = []

    async def keep(chunk: bytes) -> None:
        chunks.append(chunk)

    try:
        await conn.copy_from_query(
            f"SELECT n, {cell('t')} FROM unnest($1::text[]) WITH ORDINALITY AS c(t, n) ORDER BY n",
            PAYLOADS + ORDINARY,
            format="csv",
            output=keep,
        )
    finally:
        await conn.close()
    return crlf(b"".join(chunks))


def _formulas(csv_file: Path, separator: int, out: Path) -> list[str]:
    """The formulas LibreOffice finds when it opens the CSV with this separator."""
    profile = Path(f"/tmp/lo-profile-{uuid.uuid4().hex}")
    # Tokens: separator, quote, UTF-8, from line 1, no column types, en-US, quoted fields not
    # forced to text, special numbers detected, (2 export tokens), trim spaces, (1 export
    # token), evaluate formulas.
    options = f"{separator},34,76,1,,1033,false,true,false,false,true,-1,true"
    try:
        subprocess.run(
            [
                "soffice",
                f"-env:UserInstallation=file://{profile}",
                "--headless",
                f"--infilter=CSV:{options}",
                "--convert-to",
                "xlsx",
                "--outdir",
                str(out),
                str(csv_file),
            ],
            check=True,
            capture_output=True,
            timeout=180,
        )
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    workbook = openpyxl.load_workbook(out / (csv_file.stem + ".xlsx"))
    return [str(c.value) for row in workbook.active.iter_rows() for c in row if c.data_type == "f"]


@pytest.mark.parametrize("separator", SEPARATORS)
def test_libreoffice_finds_no_formula(pg_server: str, tmp_path: Path, separator: str) -> None:
    csv_file = tmp_path / "neutralised.csv"
    csv_file.write_bytes(run(_copy_csv(pg_server, sql_neutralised)))
    assert _formulas(csv_file, SEPARATORS[separator], tmp_path) == []


@pytest.mark.parametrize("separator", SEPARATORS)
def test_libreoffice_finds_the_raw_payloads(pg_server: str, tmp_path: Path, separator: str) -> None:
    # escape_formulas=false: the same reading does find formulas, so the test above can fail.
    csv_file = tmp_path / "raw.csv"
    csv_file.write_bytes(run(_copy_csv(pg_server, lambda ref: ref)))
    assert len(_formulas(csv_file, SEPARATORS[separator], tmp_path)) >= 5
