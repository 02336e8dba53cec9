"""An XLSX export printed from LibreOffice: 300 rows of every column fit the page's width in
landscape, take a few pages (not dozens), repeat the header row on each, and show booleans as
TRUE/FALSE."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import openpyxl
import pytest

from tests.conftest import LiveServer
from tests.e2e.test_xlsx_clients import export, soffice
from tests.reference import NAMES

pytestmark = [
    pytest.mark.skipif(shutil.which("soffice") is None, reason="LibreOffice is not installed"),
    pytest.mark.skipif(shutil.which("pdftotext") is None, reason="poppler is not installed"),
]


def _pages(pdf: Path) -> list[str]:
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True)
    count = int(re.search(r"^Pages:\s+(\d+)$", info.stdout, re.M).group(1))  # type: ignore[union-attr]
    return [
        subprocess.run(
            ["pdftotext", "-f", str(n), "-l", str(n), "-layout", str(pdf), "-"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for n in range(1, count + 1)
    ]


def test_a_sheet_prints_in_a_few_landscape_pages_with_its_header_on_each(
    live: LiveServer, tmp_path: Path
) -> None:
    source = export(live, tmp_path, limit=300)
    sheet = openpyxl.load_workbook(source)["Learners"]
    assert len(NAMES) >= 15
    assert sheet.page_setup.orientation == "landscape"
    assert (sheet.page_setup.fitToWidth, sheet.page_setup.fitToHeight) == (1, 0)
    assert sheet.print_title_rows == "$1:$1"
    pages = _pages(soffice(source, "pdf", tmp_path))
    # 42 portrait pages without a page setup; one page wide, the rows fit in a few.
    assert 1 <= len(pages) <= 4
    header = re.compile(r"^" + r"\s+".join(NAMES) + r"\s*$", re.M)
    assert all(len(header.findall(page)) == 1 for page in pages)


def test_booleans_show_true_and_false(live: LiveServer, tmp_path: Path) -> None:
    source = export(live, tmp_path, limit=300, columns="is_active,learner_id")
    text = "".join(_pages(soffice(source, "pdf", tmp_path)))
    shown = re.findall(r"^\s*(\S+)\s+[0-9a-f-]{36}\s*$", text, re.M)
    assert len(shown) == 300
    assert set(shown) == {"TRUE", "FALSE"}
