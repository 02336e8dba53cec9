"""CSV per RFC 4180: UTF-8, CRLF, a header row, NULL as an empty field, "" an empty string.

PostgreSQL's COPY writes the cells (its CSV quoting is RFC 4180's); the select list adds what
COPY cannot: formula-like text neutralised, ISO 8601 timestamps, true/false. Python adds the
header and turns COPY's LF record ends into CRLF.
"""

from __future__ import annotations

from collections.abc import Sequence

from learner_export.contract.columns import Column, Kind
from learner_export.formats import CopySpec, Format, RenderOptions, cells
from learner_export.formats.formula import sql_neutralised

BOM = "\ufeff".encode()


def _cell(column: Column, options: RenderOptions) -> str:
    ref = column.sql
    if column.kind is Kind.TEXT and options.escape_formulas:
        return sql_neutralised(ref)
    if cells.is_time(column):
        return cells.timestamp_text(ref, column.kind, options.tz)
    if column.kind is Kind.BOOL:
        return f"CASE WHEN {ref} THEN 'true' WHEN NOT {ref} THEN 'false' END"
    return ref


def select(columns: Sequence[Column], options: RenderOptions) -> CopySpec:
    """The cursor's characters need neither quoting nor neutralising."""
    items = [_cell(c, options) for c in columns]
    if options.cursor:
        items.append(cells.cursor(options.tz))
    return CopySpec(", ".join(items))


def quoted(text: str) -> str:
    if '"' in text or "," in text or "\n" in text or "\r" in text or not text:
        return '"' + text.replace('"', '""') + '"'
    return text


def crlf(data: bytes) -> bytes:
    """COPY's CSV records end in LF; RFC 4180's in CRLF. Line breaks inside quoted fields are
    data and stay as they are: they are the ones between an odd and an even double quote."""
    if b'"' not in data:
        return data.replace(b"\n", b"\r\n")
    parts = data.split(b'"')
    parts[::2] = [p.replace(b"\n", b"\r\n") for p in parts[::2]]
    return b'"'.join(parts)


class CsvFramer:
    def __init__(self, columns: Sequence[Column], options: RenderOptions) -> None:
        names = [c.name for c in columns] + (["_cursor"] if options.cursor else [])
        head = (",".join(quoted(n) for n in names) + "\r\n").encode()
        self._head = BOM + head if options.bom else head

    def begin(self) -> bytes:
        return self._head

    def page(self, data: bytes, rows: int) -> bytes:
        return crlf(data)

    def end(self) -> bytes:
        return b""

    def close(self) -> None:
        pass


FORMAT = Format(
    name="csv",
    media_type="text/csv; charset=utf-8",
    extension="csv",
    compressible=True,
    resumable=True,
    select=select,
    framer=CsvFramer,
    description="CSV (RFC 4180, UTF-8, CRLF, a header row)",
)
