"""XLSX written as it streams: sheet XML per page into a zip that never seeks.

openpyxl and xlsxwriter produce bytes only when the whole workbook is saved. Here the standard
library's zipfile writes to a sink without `seek`/`tell`, so each member ends with a data
descriptor and compressed bytes can leave after every batch. Sheets come first; the workbook,
relationships and content types, which must list the sheets, are written at the end.

Each row becomes a line of sheet XML (`<row>...</row>`), written by formats.render (C) from
COPY's plain cells, or with `EXPORT_RENDER=database` by the select list: text as inline
strings (no shared-string table to hold in memory) with line breaks as references and the
characters XML forbids dropped, numbers as numbers, booleans as booleans, date-times as Excel
serial dates in the export's time zone with a date format (the select list's line is a lone CSV
field that COPY never quotes, cells.WHOLE_LINES). A sheet holds at most 1,048,576 rows with its
header; the export continues on a new sheet with the header again.
"""

from __future__ import annotations

import contextlib
import re
import zipfile
import zlib
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import IO, Any, cast

from isal import isal_zlib

from learner_export.contract.columns import Column, Kind
from learner_export.formats import CopySpec, Format, RenderOptions, cells, render
from learner_export.formats.formula import sql_is_formula

# Unix epoch as an Excel serial date (1900 date system).
EXCEL_UNIX_EPOCH = 25569.0
_SECONDS_PER_DAY = 86400.0

# Styles (cellXfs indexes in STYLES): a date-time, a text kept as text when edited, a header,
# a date.
STYLE_DATETIME = 1
STYLE_QUOTED = 2
_STYLE_HEADER = 3
STYLE_DATE = 4
STYLE_BOOL = 5

# The characters XML 1.0 forbids in text (NUL aside: PostgreSQL text never holds it).
XML_FORBIDDEN = (
    "".join(chr(c) for c in range(1, 0x20) if c not in (0x09, 0x0A, 0x0D)) + "\ufffe\uffff"
)

# How text is escaped: markup characters as entities, CR as a reference (XML parsers turn a
# literal CR LF into LF), LF as one so that a row is one line; the forbidden characters dropped.
_XML_ESCAPES = (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("\r", "&#13;"), ("\n", "&#10;"))

NS_MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
NS_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
NS_PKG_REL = "http://schemas.openxmlformats.org/package/2006/relationships"
XML_DECL = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'

STYLES = (
    XML_DECL + f'<styleSheet xmlns="{NS_MAIN}">'
    '<numFmts count="2"><numFmt numFmtId="164" formatCode="yyyy-mm-dd hh:mm:ss"/>'
    # Booleans shown TRUE/FALSE: without a format LibreOffice shows some of them as 1/0.
    '<numFmt numFmtId="165" formatCode="&quot;TRUE&quot;;&quot;TRUE&quot;;&quot;FALSE&quot;"/>'
    "</numFmts>"
    '<fonts count="2"><font><sz val="11"/><name val="Calibri"/></font>'
    '<font><b/><sz val="11"/><name val="Calibri"/></font></fonts>'
    '<fills count="2"><fill><patternFill patternType="none"/></fill>'
    '<fill><patternFill patternType="gray125"/></fill></fills>'
    '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
    '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
    '<cellXfs count="6">'
    '<xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>'
    '<xf numFmtId="164" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
    '<xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0" quotePrefix="1"/>'
    '<xf numFmtId="0" fontId="1" fillId="0" borderId="0" xfId="0" applyFont="1"/>'
    '<xf numFmtId="14" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
    '<xf numFmtId="165" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
    "</cellXfs>"
    '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>'
    "</styleSheet>"
)

ROOT_RELS = (
    XML_DECL + f'<Relationships xmlns="{NS_PKG_REL}">'
    f'<Relationship Id="rId1" Type="{NS_REL}/officeDocument" Target="xl/workbook.xml"/>'
    "</Relationships>"
)

# A printable sheet: landscape, as many pages tall as it takes but one page wide, the header row
# repeated on each (print_titles(), in the workbook). sheetPr opens a sheet, page setup ends it.
PAGE_FIT = '<sheetPr><pageSetUpPr fitToPage="1"/></sheetPr>'
PAGE_SETUP = (
    '<pageMargins left="0.4" right="0.4" top="0.6" bottom="0.6" header="0.3" footer="0.3"/>'
    '<pageSetup orientation="landscape" fitToWidth="1" fitToHeight="0"/>'
)


def print_titles(names: Sequence[str]) -> str:
    """The workbook's defined names that repeat each sheet's header row on every page."""
    return "".join(
        f'<definedName name="_xlnm.Print_Titles" localSheetId="{n}">\'{name}\'!$1:$1</definedName>'
        for n, name in enumerate(names)
    )


SHEET_HEAD = (
    XML_DECL + f'<worksheet xmlns="{NS_MAIN}" xmlns:r="{NS_REL}">' + PAGE_FIT + "<sheetViews>"
    '<sheetView workbookViewId="0">'
    '<pane ySplit="1" topLeftCell="A2" activePane="bottomLeft" state="frozen"/>'
    '<selection pane="bottomLeft" activeCell="A2" sqref="A2"/>'
    "</sheetView></sheetViews>"
)

# XML's own white space: leading or trailing, it is kept only with xml:space="preserve".
XML_SPACE = " \t\n\r"

# Where a cell's row number goes in the SQL half's row: one replace() per row puts it in every
# cell reference at once. XML forbids the character, so text never holds it (it is dropped).
_ROW_MARK = "\x03"

# Column widths (in characters of the default font) by kind: a date-time's 19 characters and a
# uuid's 36 always fit (never `###`); text gets room for a typical name or e-mail address.
_WIDTHS = {
    Kind.TIMESTAMPTZ: 20.0,
    Kind.TIMESTAMP: 20.0,
    Kind.DATE: 11.0,
    Kind.UUID: 38.0,
    Kind.TEXT: 30.0,
    Kind.INT: 10.0,
    Kind.NUMERIC: 12.0,
    Kind.FLOAT: 12.0,
    Kind.BOOL: 8.0,
}
# Room for the bold header and its filter button beside the name; and a cap for long names.
_HEADER_PAD = 4
_MAX_WIDTH = 60.0


def column_letter(index: int) -> str:
    """The column's letters in A1 references: 0 is A, 25 is Z, 26 is AA."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


def column_width(column: Column, title: str | None = None) -> float:
    """A width that fits the column's kind and, as a floor, its header (`title`, else its name)."""
    return min(_MAX_WIDTH, max(_WIDTHS[column.kind], len(title or column.name) + _HEADER_PAD))


def xml_text(text: str) -> str:
    for char, reference in _XML_ESCAPES:
        text = text.replace(char, reference)
    return "".join(c for c in text if c not in XML_FORBIDDEN)


_SPACE_CODES = ", ".join(str(ord(c)) for c in XML_SPACE)


def _serial(column: Column, ref: str, tz: str) -> str:
    """An Excel serial date: days since 1899-12-30, wall-clock time in the export's zone."""
    if column.kind is Kind.DATE:
        return f"({ref} - date '1899-12-30')::text"
    # A timestamptz cast to timestamp is its wall-clock time in the session's TimeZone.
    wall = f"{ref}::timestamp" if column.kind is Kind.TIMESTAMPTZ and tz != "UTC" else ref
    return f"(extract(epoch FROM {wall})::float8 / 86400.0 + {EXCEL_UNIX_EPOCH})::text"


def _cell(column: Column, letter: str, options: RenderOptions, last: bool = False) -> str:
    """The cell's XML. With references an empty cell can be left out, save the row's last:
    readers that learn a row's width from its cells (openpyxl's read-only mode) need it."""
    ref = column.sql
    at = f'<c r="{letter}{_ROW_MARK}"'
    if column.kind is Kind.TEXT:

        def style(separators: bool) -> str:
            if not options.escape_formulas:
                return "''"
            return (
                f"CASE WHEN {sql_is_formula(ref, separators)} THEN ' s=\"{STYLE_QUOTED}\"'"
                " ELSE '' END"
            )

        space = (
            f"CASE WHEN ascii({ref}) IN ({_SPACE_CODES}) OR ascii(right({ref}, 1)) IN"
            f" ({_SPACE_CODES}) THEN ' xml:space=\"preserve\"' ELSE '' END"
        )
        escaped = f"translate({ref}, {cells.chars(XML_FORBIDDEN)}, '')"
        for char, reference in _XML_ESCAPES:
            escaped = f"replace({escaped}, {cells.chars(char)}, '{reference}')"
        # Most text needs no escaping: one regular expression says so far cheaper than the
        # translate() and five replace() calls would find it out.
        xml_special = cells.chars("&<>\r\n" + XML_FORBIDDEN, "[{}]")
        text = f"CASE WHEN {ref} ~ {xml_special} THEN {escaped} ELSE {ref} END"
        special = (
            f"'{at} t=\"inlineStr\"' || {style(True)} || '><is><t' || {space} || '>' || {text}"
            " || '</t></is></c>'"
        )
        # Most text holds no character that XML escapes or forbids and none that separates
        # pieces for the formula rule (tab, `;`, CR, LF): one regular expression says so, and
        # such text goes in as it is, its first character and a space at either end all that is
        # left to look at (measured: docs/engine.md).
        plain = (
            f"'{at} t=\"inlineStr\"' || {style(False)} || '><is><t' ||"
            f" CASE WHEN ascii({ref}) = 32 OR {ref} LIKE '% '"
            f" THEN ' xml:space=\"preserve\"' ELSE '' END || '>' || {ref} || '</t></is></c>'"
        )
        anything = cells.chars("&<>\r\n\t;" + XML_FORBIDDEN, "[{}]")
        cell = f"CASE WHEN {ref} ~ {anything} THEN {special} ELSE {plain} END"
    elif column.kind is Kind.UUID:
        cell = f"'{at} t=\"inlineStr\"><is><t>' || {ref} || '</t></is></c>'"
    elif cells.is_time(column):
        number_format = STYLE_DATE if column.kind is Kind.DATE else STYLE_DATETIME
        cell = (
            f"'{at} s=\"{number_format}\"><v>' || {_serial(column, ref, options.tz)} || '</v></c>'"
        )
    elif column.kind is Kind.BOOL:
        cell = f"'{at} t=\"b\" s=\"{STYLE_BOOL}\"><v>' || {ref}::integer || '</v></c>'"
    elif column.kind is Kind.FLOAT:
        cell = (
            f"CASE WHEN {ref} IN ('NaN', 'Infinity', '-Infinity') THEN NULL"
            f" ELSE '{at}><v>' || {cells.python_float(ref)} || '</v></c>' END"
        )
    elif column.kind is Kind.NUMERIC:
        cell = f"CASE WHEN {ref} = 'NaN' THEN NULL ELSE '{at}><v>' || {ref} || '</v></c>' END"
    else:
        cell = f"'{at}><v>' || {ref} || '</v></c>'"
    return f"coalesce({cell}, '{at}/>')" if last else f"coalesce({cell}, '')"


def row_number(sheet_rows: int) -> str:
    """The row's number in its sheet: the header is row 1, data from row 2, again on each
    continuation sheet. `learner_export.row` is the export's index of the page's first row."""
    index = "current_setting('learner_export.row')::bigint + row_number() OVER () - 1"
    return f"(({index}) % {sheet_rows - 1} + 2)::text"


def _plain(column: Column, options: RenderOptions) -> str:
    """What formats.render needs from PostgreSQL for a cell: serial dates, 0/1 for booleans,
    the rest as COPY writes it."""
    ref = column.sql
    if cells.is_time(column):
        return _serial(column, ref, options.tz)
    if column.kind is Kind.BOOL:
        return f"{ref}::integer"
    return ref


def select(columns: Sequence[Column], options: RenderOptions) -> CopySpec:
    """One sheet XML row a line, its cells referenced (B7), as some readers require. With
    `options.native` the cells come plain and formats.render writes the rows."""
    if options.native:
        return CopySpec(tuple(_plain(c, options) for c in columns))
    row = " || ".join(
        _cell(c, column_letter(i), options, last=i == len(columns) - 1)
        for i, c in enumerate(columns)
    )
    xml = f"'<row r=\"{_ROW_MARK}\">' || {row} || '</row>'"
    # The row numbers go in once the rows are in order: row_number() counts them as they come.
    return CopySpec(
        (xml,),
        cells.WHOLE_LINES,
        ordered=f"replace({{}}, {cells.chars(_ROW_MARK)}, {row_number(options.sheet_rows)})",
    )


# ISA-L's deflate level for the sheets (python-isal; levels 0-3): at 2 it writes 1.1 GB of sheet
# XML a second on one core, against 0.2 GB/s for zlib at level 3, with output 2% larger
# (measured on the benchmark's sheets; docs/engine.md).
SHEET_DEFLATE_LEVEL = 2


def fast_deflate(member: IO[bytes]) -> None:
    """Deflate a zip member just opened for writing with ISA-L instead of zlib: the same raw
    deflate stream, a fifth of the CPU (deflating the sheets was a third of an XLSX export's
    CPU). zipfile has no public way to choose its compressor, so its member's is replaced before
    anything is written; a zipfile whose members are built otherwise keeps zlib."""
    if getattr(member, "_compressor", None) is not None and getattr(member, "_file_size", 1) == 0:
        member._compressor = isal_zlib.compressobj(  # type: ignore[attr-defined]
            SHEET_DEFLATE_LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS
        )


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


def header(column: Column, tz: str) -> str:
    """A column's header cell: its name, and for instants shown as wall-clock time outside UTC,
    the zone they are shown in (a cell holds no offset)."""
    if column.kind is Kind.TIMESTAMPTZ and tz != "UTC":
        return f"{column.name} ({tz})"
    return column.name


# A sheet ends before its XML passes this many bytes, as it ends at the row bound, and the export
# goes on in the next: zipfile writes a member past 2 GiB only as Zip64, which not every reader
# of XLSX accepts, and raises when the member closes, after its rows were streamed. The margin
# holds the sheet's end (its filter and page setup, a few hundred bytes).
SHEET_BYTES = zipfile.ZIP64_LIMIT - 1024 * 1024


class XlsxFramer:
    def __init__(
        self, columns: Sequence[Column], options: RenderOptions, sheet_bytes: int = SHEET_BYTES
    ) -> None:
        self._max_data_rows = options.sheet_rows - 1
        self._max_sheet_bytes = sheet_bytes
        self._full_sheets: list[int] = []  # data rows of each sheet already ended
        self._renumber = False
        letters = [column_letter(i) for i in range(len(columns))]
        self._last_letter = letters[-1]
        self._rows = (
            render.Records(
                [render.sheet_kind(c, options.escape_formulas) for c in columns],
                letters=letters,
                sheet_rows=self._max_data_rows,
            )
            if options.native
            else None
        )
        widths = "".join(
            f'<col min="{n}" max="{n}" width="{column_width(c, header(c, options.tz)):g}"'
            ' customWidth="1"/>'
            for n, c in enumerate(columns, start=1)
        )
        cells_ = "".join(
            f'<c r="{letter}1" t="inlineStr" s="{_STYLE_HEADER}"><is><t>'
            f"{xml_text(header(c, options.tz))}</t></is></c>"
            for letter, c in zip(letters, columns, strict=True)
        )
        self._head = (
            SHEET_HEAD + f"<cols>{widths}</cols><sheetData>" + f'<row r="1">{cells_}</row>'
        ).encode()
        # The open sheet's XML so far, counted in the caller's thread as pages are handed on.
        self._sheet_bytes = len(self._head)
        self._sink = _Sink()
        # zlib's level for the small members; the sheets are deflated by ISA-L (fast_deflate).
        self._zip = zipfile.ZipFile(
            cast(IO[bytes], self._sink), "w", zipfile.ZIP_DEFLATED, compresslevel=3
        )
        self._sheet: Any = None
        self._sheets = 0
        self._rows_in_sheet = 0
        # Deflate runs in a thread of its own (ISA-L releases the GIL), overlapping the reading
        # of the next page; at most one page waits there, so memory stays bounded.
        self._deflater = ThreadPoolExecutor(max_workers=1, thread_name_prefix="xlsx-deflate")
        self._pending: Future[None] | None = None

    def _open_sheet(self) -> None:
        self._sheets += 1
        self._sheet = self._zip.open(f"xl/worksheets/sheet{self._sheets}.xml", "w")
        fast_deflate(self._sheet)
        self._sheet.write(self._head)

    def _filter_ref(self, data_rows: int) -> str:
        return f"A1:{self._last_letter}{data_rows + 1}"

    def _close_sheet(self, data_rows: int) -> None:
        # The sheet's end is written last, so its filter covers exactly the rows it holds.
        self._sheet.write(
            f'</sheetData><autoFilter ref="{self._filter_ref(data_rows)}"/>{PAGE_SETUP}'
            "</worksheet>".encode()
        )
        self._sheet.close()

    def begin(self) -> bytes:
        self._open_sheet()
        return self._sink.drain()

    def page(self, data: bytes | bytearray) -> bytes | bytearray:
        """The piece's XML (whole rows, a line each) goes to the deflate thread; what comes back
        is the compressed output of the piece before (one late, all of it by end())."""
        if self._rows is not None:
            data = self._rows(data)
        rows = data.count(b"\n")
        if (
            rows <= self._max_data_rows - self._rows_in_sheet
            and self._sheet_bytes + len(data) <= self._max_sheet_bytes
            and not self._renumber
        ):
            self._rows_in_sheet += rows
            self._sheet_bytes += len(data)
            return self._submit([data.replace(b"\n", b"")])
        # Past a sheet's end (rare): rows one by one, as bytes.
        return self._add(bytes(data).split(b"\n")[:rows])

    def _add(self, rows: list[bytes]) -> bytes:
        # An int: end the sheet with that many rows, start the next.
        parts: list[bytes | bytearray | int] = []
        start = 0
        while start < len(rows):
            room = self._max_data_rows - self._rows_in_sheet
            fit = _rows_within(rows, start, room, self._max_sheet_bytes - self._sheet_bytes)
            if fit == 0 and self._rows_in_sheet == 0:
                fit = 1  # a row larger than the byte bound still needs a sheet: it gets its own
            if fit == 0:
                # PostgreSQL numbered the rows for sheets ended by rows alone: from a sheet ended
                # by bytes on, they are numbered here (past 2 GiB of sheet: rare, and slower).
                self._renumber = self._renumber or room > 0
                parts.append(self._rows_in_sheet)
                self._full_sheets.append(self._rows_in_sheet)
                self._rows_in_sheet = 0
                self._sheet_bytes = len(self._head)
                continue
            chunk = rows[start : start + fit]
            if self._renumber:
                chunk = [
                    _numbered(row, self._rows_in_sheet + n) for n, row in enumerate(chunk, start=2)
                ]
            parts.append(b"".join(chunk))
            self._rows_in_sheet += fit
            self._sheet_bytes += sum(map(len, chunk))
            start += fit
        return self._submit(parts)

    def _submit(self, parts: list[bytes | bytearray | int]) -> bytes:
        done = self._wait()
        self._pending = self._deflater.submit(self._write, parts)
        return done

    def _write(self, parts: list[bytes | bytearray | int]) -> None:
        for xml in parts:
            if isinstance(xml, int):
                self._close_sheet(xml)
                self._open_sheet()
            else:
                self._sheet.write(xml)

    def _wait(self) -> bytes:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()
        return self._sink.drain()

    def end(self) -> bytes:
        if self._rows is not None:
            self._rows.end()
        head = self._wait()
        self._deflater.shutdown()
        self._close_sheet(self._rows_in_sheet)
        names = ["Learners" if n == 1 else f"Learners {n}" for n in range(1, self._sheets + 1)]
        sheets = "".join(
            f'<sheet name="{name}" sheetId="{n}" r:id="rId{n}"/>'
            for n, name in enumerate(names, start=1)
        )
        # Excel and LibreOffice find a sheet's filter range by this hidden name.
        filters = "".join(
            f'<definedName name="_xlnm._FilterDatabase" localSheetId="{n - 1}" hidden="1">'
            f"'{name}'!{self._absolute(self._filter_ref(self._sheet_rows(n)))}</definedName>"
            for n, name in enumerate(names, start=1)
        )
        workbook = (
            XML_DECL + f'<workbook xmlns="{NS_MAIN}" xmlns:r="{NS_REL}">'
            f"<sheets>{sheets}</sheets>"
            f"<definedNames>{filters}{print_titles(names)}</definedNames></workbook>"
        )
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

    def _sheet_rows(self, n: int) -> int:
        """Data rows in sheet n (1-based)."""
        return self._rows_in_sheet if n == self._sheets else self._full_sheets[n - 1]

    @staticmethod
    def _absolute(ref: str) -> str:
        """A1:O9 as $A$1:$O$9."""
        return ":".join(
            "$"
            + "".join(c for c in end if c.isalpha())
            + "$"
            + "".join(c for c in end if c.isdigit())
            for end in ref.split(":")
        )

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


# A row's own number and its cells' references; text cannot match (its `<` is escaped).
_ROW_REFERENCES = re.compile(rb'(<row r="|<c r="[A-Z]+)\d+"')


def _numbered(row: bytes, number: int) -> bytes:
    """The row's XML with its number, and its cells' references, set to `number`."""
    tail = b'%d"' % number
    return _ROW_REFERENCES.sub(lambda m: m.group(1) + tail, row)


def _rows_within(rows: list[bytes], start: int, room: int, free: int) -> int:
    """How many of rows[start:], at most `room`, fit in `free` bytes."""
    fit = 0
    for row in rows[start : start + room]:
        free -= len(row)
        if free < 0:
            break
        fit += 1
    return fit


FORMAT = Format(
    name="xlsx",
    media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    extension="xlsx",
    compressible=False,
    resumable=False,
    select=select,
    framer=XlsxFramer,
    description="XLSX workbook (Excel, LibreOffice, Numbers)",
)
