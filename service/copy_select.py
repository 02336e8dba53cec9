"""Pages written by PostgreSQL's COPY, byte for byte what the Python encoders write.

COPY renders a page inside the server, in C, far cheaper than decoding the rows into Python
objects and encoding them again; the export's second connection puts that work on the second
core. What COPY's CSV cannot do by itself is done in the select list: neutralising
formula-like text, ISO 8601 timestamps, true/false. For JSON Lines the select list builds each
line, and COPY writes it as a lone CSV field whose quote and delimiter characters JSON text
never holds (it escapes every control character), so the line goes out untouched; the same
goes for XLSX, a line of sheet XML a row (`<row>...</row>`, with line breaks as references and
the characters XML forbids dropped). CsvEncoder.copied() turns COPY's LF record ends into CRLF,
XlsxEncoder.copied() drops them. tests/test_copy_select.py holds COPY and the encoders to the
same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from service.columns import CURSOR_COLUMN, Column, Kind
from service.formats.cells import FORMULA_PREFIXES
from service.formats.xlsx import (
    EXCEL_UNIX_EPOCH,
    STYLE_DATETIME,
    STYLE_QUOTED,
    XML_FORBIDDEN,
    XML_SPACE,
)
from service.params import ExportParams

_FORMULA_CODES = ", ".join(str(ord(p)) for p in FORMULA_PREFIXES)

# The export transaction sets TimeZone to UTC, so the offset is always +00:00.
_TIMESTAMP = "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"'"


@dataclass(frozen=True, slots=True)
class CopySpec:
    """A select list over the page function's columns (as `r`) and the COPY options for it."""

    select: str
    options: dict[str, str] = field(default_factory=dict)


def _ref(column: Column) -> str:
    # Column names come from the allow-list in service.columns, never from the request.
    return f'r."{column.name}"'


def _csv_cell(column: Column, escape_formulas: bool) -> str:
    ref = _ref(column)
    if column.kind is Kind.TEXT and escape_formulas:
        return f"CASE WHEN ascii({ref}) IN ({_FORMULA_CODES}) THEN '''' || {ref} ELSE {ref} END"
    if column.kind is Kind.TIMESTAMP:
        return f"to_char({ref}, {_TIMESTAMP})"
    if column.kind is Kind.BOOL:
        return f"CASE WHEN {ref} THEN 'true' WHEN NOT {ref} THEN 'false' END"
    return ref


# service.cursor.encode_cursor() in SQL: base64url, unpadded, of "<created_at>|<learner id>"
# (encode() breaks base64 into lines of 76: the line breaks go too).
_CURSOR = ("rtrim(translate(encode(convert_to(to_char(r.\"created_at\", " + _TIMESTAMP
           + ") || '|' || r.\"learner_id\", 'UTF8'), 'base64'), E'+/\\n', '-_'), '=')")


def csv_select(columns: Sequence[Column], escape_formulas: bool, cursor: bool = False
               ) -> CopySpec:
    """The select list that COPY writes as CsvEncoder's CSV (LF line ends); `cursor` adds the
    `_cursor` column (its characters need neither quoting nor neutralising)."""
    cells = [_csv_cell(c, escape_formulas) for c in columns] + ([_CURSOR] if cursor else [])
    return CopySpec(", ".join(cells))


def _python_float(ref: str) -> str:
    """A float8 as Python's repr() writes it: PostgreSQL's shortest digits, and ".0" when whole
    (50.0, 33.3). Both switch to exponents only far outside the values exported here."""
    return f"CASE WHEN {ref} = trunc({ref}) THEN {ref}::text || '.0' ELSE {ref}::text END"


def _json_value(column: Column) -> str:
    ref = _ref(column)
    if column.kind is Kind.TEXT:
        return f"to_json({ref})::text"
    if column.kind is Kind.UUID:
        return f"'\"' || {ref} || '\"'"
    if column.kind is Kind.TIMESTAMP:
        return f"'\"' || to_char({ref}, {_TIMESTAMP}) || '\"'"
    if column.kind is Kind.FLOAT:
        return _python_float(ref)
    return f"{ref}::text"


def jsonl_select(columns: Sequence[Column], cursor: bool = False) -> CopySpec:
    """The select list of one JSON Lines line a row, as JsonlEncoder writes it; `cursor` adds
    the `_cursor` member."""
    members = [f"'{'{' if i == 0 else ','}\"{c.name}\":' || coalesce({_json_value(c)}, 'null')"
               for i, c in enumerate(columns)]
    if cursor:
        members.append(f"',\"{CURSOR_COLUMN.name}\":\"' || {_CURSOR} || '\"'")
    return CopySpec(" || ".join(members) + " || '}'", _WHOLE_LINES)


# COPY's CSV quote and delimiter for formats whose lines are written whole: characters that JSON
# escapes and XML forbids, so they never occur in a line and COPY never quotes one.
_WHOLE_LINES = {"quote": "\x01", "delimiter": "\x02"}


def _sql_chars(chars: str, pattern: str = "{}") -> str:
    """A string literal of these characters, as escapes (optionally inside a pattern)."""
    return "E'" + pattern.format("".join(f"\\u{ord(c):04X}" for c in chars)) + "'"


_SPACE_CODES = ", ".join(str(ord(c)) for c in XML_SPACE)


def _xlsx_cell(column: Column, escape_formulas: bool) -> str:
    ref = _ref(column)
    if column.kind is Kind.TEXT:
        style = (f"CASE WHEN ascii({ref}) IN ({_FORMULA_CODES}) THEN ' s=\"{STYLE_QUOTED}\"'"
                 " ELSE '' END" if escape_formulas else "''")
        space = (f"CASE WHEN ascii({ref}) IN ({_SPACE_CODES}) OR ascii(right({ref}, 1)) IN"
                 f" ({_SPACE_CODES}) THEN ' xml:space=\"preserve\"' ELSE '' END")
        escaped = f"translate({ref}, {_sql_chars(XML_FORBIDDEN)}, '')"
        for char, reference in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"),
                                ("\r", "&#13;"), ("\n", "&#10;")):
            escaped = f"replace({escaped}, {_sql_chars(char)}, '{reference}')"
        # Most text needs no escaping: one regular expression says so far cheaper than the
        # translate() and five replace() calls would find it out.
        special = _sql_chars("&<>\r\n" + XML_FORBIDDEN, "[{}]")
        text = f"CASE WHEN {ref} ~ {special} THEN {escaped} ELSE {ref} END"
        cell = (f"'<c t=\"inlineStr\"' || {style} || '><is><t' || {space} || '>' || {text}"
                " || '</t></is></c>'")
    elif column.kind is Kind.UUID:
        cell = f"'<c t=\"inlineStr\"><is><t>' || {ref} || '</t></is></c>'"
    elif column.kind is Kind.TIMESTAMP:
        serial = f"(extract(epoch FROM {ref})::float8 / 86400.0 + {EXCEL_UNIX_EPOCH})::text"
        cell = f"'<c s=\"{STYLE_DATETIME}\"><v>' || {serial} || '</v></c>'"
    elif column.kind is Kind.BOOL:
        cell = f"'<c t=\"b\"><v>' || {ref}::integer || '</v></c>'"
    elif column.kind is Kind.FLOAT:
        cell = f"'<c><v>' || {_python_float(ref)} || '</v></c>'"
    else:
        cell = f"'<c><v>' || {ref} || '</v></c>'"
    return f"coalesce({cell}, '<c/>')"


def xlsx_select(columns: Sequence[Column], escape_formulas: bool) -> CopySpec:
    """The select list of one sheet XML row a line, as XlsxEncoder writes it."""
    cells = " || ".join(_xlsx_cell(c, escape_formulas) for c in columns)
    return CopySpec(f"'<row>' || {cells} || '</row>'", _WHOLE_LINES)


def copy_select(params: ExportParams) -> CopySpec | None:
    """How COPY writes this export's pages (the resume cursor included)."""
    if params.format == "csv":
        return csv_select(params.columns, params.escape_formulas, params.cursor)
    if params.format == "jsonl":
        return jsonl_select(params.columns, params.cursor)
    if params.format == "xlsx":
        return xlsx_select(params.columns, params.escape_formulas)
    return None
