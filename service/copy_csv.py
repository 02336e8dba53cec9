"""CSV written by PostgreSQL's COPY, byte for byte what CsvEncoder writes.

COPY renders a page of CSV in C inside the server, several times faster than decoding the rows
into Python objects and encoding them again. What COPY cannot do by itself is done in its
select list: neutralising formula-like text, ISO 8601 timestamps, true/false; CsvEncoder.copied()
turns its LF record ends into CRLF. tests/test_copy_csv.py holds the two to the same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence

from service.columns import Column, Kind
from service.formats.cells import FORMULA_PREFIXES
from service.params import ExportParams

_FORMULA_CODES = ", ".join(str(ord(p)) for p in FORMULA_PREFIXES)

# The export transaction sets TimeZone to UTC, so the offset is always +00:00.
_TIMESTAMP = "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"'"


def _cell(column: Column, escape_formulas: bool) -> str:
    # Column names come from the allow-list in service.columns, never from the request.
    ref = f'r."{column.name}"'
    if column.kind is Kind.TEXT and escape_formulas:
        return f"CASE WHEN ascii({ref}) IN ({_FORMULA_CODES}) THEN '''' || {ref} ELSE {ref} END"
    if column.kind is Kind.TIMESTAMP:
        return f"to_char({ref}, {_TIMESTAMP})"
    if column.kind is Kind.BOOL:
        return f"CASE WHEN {ref} THEN 'true' WHEN NOT {ref} THEN 'false' END"
    return ref


def select_list(columns: Sequence[Column], escape_formulas: bool) -> str:
    """The select list, over the page function's columns as `r`, that COPY writes as CSV."""
    return ", ".join(_cell(c, escape_formulas) for c in columns)


def copy_select(params: ExportParams) -> str | None:
    """The select list for COPY when the export's format is CSV, else None."""
    if params.format != "csv":
        return None
    return select_list(params.columns, params.escape_formulas)
