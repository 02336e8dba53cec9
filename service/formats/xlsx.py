"""XLSX written as it streams: sheet XML per batch into a zip that never seeks.

openpyxl and xlsxwriter produce bytes only when the whole workbook is saved. Here the standard
library's zipfile writes to a sink without `seek`/`tell`, so each member ends with a data
descriptor and compressed bytes can leave after every batch. Sheets come first; the workbook,
relationships and content types, which must list the sheets, are written at the end.

Cells: text as inline strings (no shared-string table to hold in memory), numbers as numbers,
booleans as booleans, timestamps as Excel serial dates in UTC with a date format. A sheet holds
at most 1,048,576 rows with its header; the export continues on a new sheet with the header again.
"""

from __future__ import annotations

import contextlib
import re
import zipfile
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from typing import IO, Any, cast

from service.columns import Column, Kind
from service.formats import EncodeOptions, Row
from service.formats.cells import FORMULA_PREFIXES, pg_float

# Unix epoch as an Excel serial date (1900 date system).
EXCEL_UNIX_EPOCH = 25569.0
_SECONDS_PER_DAY = 86400.0

# Styles (cellXfs indexes in STYLES): a date-time, a text kept as text when edited, a header.
STYLE_DATETIME = 1
STYLE_QUOTED = 2
_STYLE_HEADER = 3

# The characters XML 1.0 forbids in text (NUL aside: PostgreSQL text never holds it).
XML_FORBIDDEN = ("".join(chr(c) for c in range(1, 0x20) if c not in (0x09, 0x0A, 0x0D))
                 + "\ufffe\uffff")

# Escapes XML's markup characters and drops the characters XML 1.0 forbids, in one C call.
# CR is written as a reference because XML parsers turn a literal CR LF into LF; LF as one so
# that a row is one line (as PostgreSQL writes it, service.copy_select).
_XML_TEXT = str.maketrans(
    {
        "&": "&amp;",
        "<": "&lt;",
        ">": "&gt;",
        "\r": "&#13;",
        "\n": "&#10;",
        **{c: None for c in XML_FORBIDDEN},
    }
)

NS_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
NS_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
NS_PKG_REL = "http://schemas.openxmlformats.org/package/2006/relationships"
XML_DECL = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'

STYLES = (
    XML_DECL + f'<styleSheet xmlns="{NS_MAIN}">'
    '<numFmts count="1"><numFmt numFmtId="164" formatCode="yyyy-mm-dd hh:mm:ss"/></numFmts>'
    '<fonts count="2"><font><sz val="11"/><name val="Calibri"/></font>'
    '<font><b/><sz val="11"/><name val="Calibri"/></font></fonts>'
    '<fills count="2"><fill><patternFill patternType="none"/></fill>'
    '<fill><patternFill patternType="gray125"/></fill></fills>'
    '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
    '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
    '<cellXfs count="4">'
    '<xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>'
    '<xf numFmtId="164" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
    '<xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0" quotePrefix="1"/>'
    '<xf numFmtId="0" fontId="1" fillId="0" borderId="0" xfId="0" applyFont="1"/>'
    "</cellXfs>"
    '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>'
    "</styleSheet>"
)

ROOT_RELS = (
    XML_DECL + f'<Relationships xmlns="{NS_PKG_REL}">'
    f'<Relationship Id="rId1" Type="{NS_REL}/officeDocument" Target="xl/workbook.xml"/>'
    "</Relationships>"
)

SHEET_HEAD = (
    XML_DECL + f'<worksheet xmlns="{NS_MAIN}" xmlns:r="{NS_REL}">'
    '<sheetViews><sheetView workbookViewId="0">'
    '<pane ySplit="1" topLeftCell="A2" activePane="bottomLeft" state="frozen"/>'
    "</sheetView></sheetViews><sheetData>"
)
SHEET_TAIL = "</sheetData></worksheet>"


# str.translate looks every character up in a dict: a regular expression finds first, in C,
# whether there is anything to translate at all (most cells have nothing).
_XML_SPECIAL = re.compile("[&<>\r\n\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")

# XML's own white space: leading or trailing, it is kept only with xml:space="preserve".
XML_SPACE = " \t\n\r"


def xml_text(text: str) -> str:
    return text.translate(_XML_TEXT) if _XML_SPECIAL.search(text) else text


def _text_cell(escape_formulas: bool) -> Callable[[Any], str]:
    plain = '<c t="inlineStr"><is><t>'
    quoted = f'<c t="inlineStr" s="{STYLE_QUOTED}"><is><t>'

    def cell(value: Any) -> str:
        if value is None:
            return "<c/>"
        head = quoted if escape_formulas and value.startswith(FORMULA_PREFIXES) else plain
        if (value[:1] or "x") in XML_SPACE or (value[-1:] or "x") in XML_SPACE:
            head = head[:-1] + ' xml:space="preserve">'
        return head + xml_text(value) + "</t></is></c>"

    return cell


def _uuid_cell(value: Any) -> str:
    return "<c/>" if value is None else f'<c t="inlineStr"><is><t>{value}</t></is></c>'


def _number_cell(value: Any) -> str:
    return "<c/>" if value is None else f"<c><v>{value!r}</v></c>"


def _bool_cell(value: Any) -> str:
    return "<c/>" if value is None else f'<c t="b"><v>{1 if value else 0}</v></c>'


def _timestamp_cell(value: datetime | None) -> str:
    if value is None:
        return "<c/>"
    serial = value.timestamp() / _SECONDS_PER_DAY + EXCEL_UNIX_EPOCH
    return f'<c s="{STYLE_DATETIME}"><v>{pg_float(serial)}</v></c>'


class _Sink:
    """A write-only file for zipfile: collects what it is given until drained."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def drain(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        return out


class XlsxEncoder:
    def __init__(self, columns: Sequence[Column], options: EncodeOptions) -> None:
        self._columns = columns
        self._max_data_rows = options.sheet_rows - 1
        text = _text_cell(options.escape_formulas)
        by_kind: dict[Kind, Callable[[Any], str]] = {
            Kind.TEXT: text,
            Kind.UUID: _uuid_cell,
            Kind.INT: _number_cell,
            Kind.FLOAT: _number_cell,
            Kind.BOOL: _bool_cell,
            Kind.TIMESTAMP: _timestamp_cell,
        }
        self._cells = [by_kind[c.kind] for c in columns]
        self._header = (
            "<row>"
            + "".join(
                f'<c t="inlineStr" s="{_STYLE_HEADER}"><is><t>{xml_text(c.name)}</t></is></c>'
                for c in columns
            )
            + "</row>"
        ).encode()
        self._sink = _Sink()
        self._zip = zipfile.ZipFile(cast(IO[bytes], self._sink), "w", zipfile.ZIP_DEFLATED,
                                    compresslevel=3)
        self._sheet: Any = None
        self._sheets = 0
        self._rows_in_sheet = 0
        # Deflate runs in a thread of its own (zlib releases the GIL), overlapping the building
        # of the next batch's XML; at most one batch waits there, so memory stays bounded.
        self._deflater = ThreadPoolExecutor(max_workers=1, thread_name_prefix="xlsx-deflate")
        self._pending: Future[None] | None = None

    def _open_sheet(self) -> None:
        self._sheets += 1
        self._sheet = self._zip.open(f"xl/worksheets/sheet{self._sheets}.xml", "w")
        self._sheet.write(SHEET_HEAD.encode() + self._header)

    def _close_sheet(self) -> None:
        self._sheet.write(SHEET_TAIL.encode())
        self._sheet.close()

    def begin(self) -> bytes:
        self._open_sheet()
        return self._sink.drain()

    def rows(self, rows: Sequence[Row]) -> bytes:
        """The XML of these rows goes to the deflate thread; what comes back is the compressed
        output of the batch before (one batch late, all of it by end())."""
        cells = self._cells
        return self._add([("<row>" + "".join([f(v) for f, v in zip(cells, row, strict=False)])
                           + "</row>").encode() for row in rows])

    def copied(self, data: bytes, rows: int) -> bytes:
        """Rows PostgreSQL already wrote as sheet XML, one a line (service.copy_select)."""
        if rows <= self._max_data_rows - self._rows_in_sheet:
            self._rows_in_sheet += rows
            return self._submit([data.replace(b"\n", b"")])
        return self._add(data.split(b"\n")[:rows])

    def _add(self, rows: list[bytes]) -> bytes:
        parts: list[bytes | None] = []  # None: start the next sheet
        start = 0
        while start < len(rows):
            room = self._max_data_rows - self._rows_in_sheet
            if room == 0:
                parts.append(None)
                self._rows_in_sheet = 0
                continue
            chunk = rows[start:start + room]
            parts.append(b"".join(chunk))
            self._rows_in_sheet += len(chunk)
            start += len(chunk)
        return self._submit(parts)

    def _submit(self, parts: list[bytes | None]) -> bytes:
        done = self._wait()
        self._pending = self._deflater.submit(self._write, parts)
        return done

    def _write(self, parts: list[bytes | None]) -> None:
        for xml in parts:
            if xml is None:
                self._close_sheet()
                self._open_sheet()
            else:
                self._sheet.write(xml)

    def _wait(self) -> bytes:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()
        return self._sink.drain()

    def end(self) -> bytes:
        head = self._wait()
        self._deflater.shutdown()
        self._close_sheet()
        names = ["Learners" if n == 1 else f"Learners {n}" for n in range(1, self._sheets + 1)]
        sheets = "".join(
            f'<sheet name="{name}" sheetId="{n}" r:id="rId{n}"/>'
            for n, name in enumerate(names, start=1)
        )
        workbook = (XML_DECL + f'<workbook xmlns="{NS_MAIN}" xmlns:r="{NS_REL}">'
                    f"<sheets>{sheets}</sheets></workbook>")
        sheet_rels = "".join(
            f'<Relationship Id="rId{n}" Type="{NS_REL}/worksheet" '
            f'Target="worksheets/sheet{n}.xml"/>'
            for n in range(1, self._sheets + 1)
        )
        styles_id = self._sheets + 1
        workbook_rels = (
            XML_DECL + f'<Relationships xmlns="{NS_PKG_REL}">{sheet_rels}'
            f'<Relationship Id="rId{styles_id}" Type="{NS_REL}/styles" Target="styles.xml"/>'
            "</Relationships>"
        )
        ct = "application/vnd.openxmlformats-officedocument.spreadsheetml"
        overrides = "".join(
            f'<Override PartName="/xl/worksheets/sheet{n}.xml" ContentType="{ct}.worksheet+xml"/>'
            for n in range(1, self._sheets + 1)
        )
        content_types = (
            XML_DECL
            + '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" '
            'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            f'<Override PartName="/xl/workbook.xml" ContentType="{ct}.sheet.main+xml"/>'
            f'<Override PartName="/xl/styles.xml" ContentType="{ct}.styles+xml"/>'
            f"{overrides}</Types>"
        )
        for name, text in (
            ("xl/workbook.xml", workbook),
            ("xl/_rels/workbook.xml.rels", workbook_rels),
            ("xl/styles.xml", STYLES),
            ("_rels/.rels", ROOT_RELS),
            ("[Content_Types].xml", content_types),
        ):
            self._zip.writestr(name, text)
        self._zip.close()
        return head + self._sink.drain()

    def close(self) -> None:
        """Close an unfinished workbook's handles; what they write is dropped."""
        if self._pending is not None:
            self._pending.cancel()
            with contextlib.suppress(Exception):
                self._pending.result()
        self._deflater.shutdown()
        if self._zip.fp is None:
            return
        if self._sheet is not None and not self._sheet.closed:
            self._sheet.close()
        self._zip.close()
        self._sink.drain()
