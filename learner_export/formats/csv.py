"""CSV per RFC 4180: UTF-8, CRLF, a header row, NULL as an empty field, "" an empty string.

PostgreSQL's COPY writes the cells (its CSV quoting is RFC 4180's). What COPY cannot do
(formula-like text neutralised, ISO 8601 timestamps, true/false, CRLF record ends) is done on
COPY's plain output by formats.render (C), or, with `EXPORT_RENDER=database`, by the select list
in PostgreSQL and to_crlf() here. Python adds the header.
"""

from __future__ import annotations

from collections.abc import Sequence

from learner_export.contract.columns import Column, Kind
from learner_export.formats import CopySpec, Format, RenderOptions, cells, render
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
    items = [c.sql if options.native else _cell(c, options) for c in columns]
    if options.cursor:
        items.append(cells.cursor(options.tz))
    return CopySpec(tuple(items))


def quoted(text: str) -> str:
    if '"' in text or "," in text or "\n" in text or "\r" in text or not text:
        return '"' + text.replace('"', '""') + '"'
    return text


# to_crlf() works on slices of this many bytes: what it holds beside its input stays bounded
# whatever the text (a split on `"` costs ~60 bytes a quote).
SLICE_BYTES = 64 * 1024


def crlf(data: bytes) -> bytes:
    """Whole CSV records with LF ends, with CRLF ends (to_crlf() of one piece)."""
    return to_crlf(data)[0]


def to_crlf(data: bytes | bytearray, quoted: bool = False) -> tuple[bytes, bool]:
    """COPY's CSV records end in LF; RFC 4180's in CRLF. Line breaks inside quoted fields are
    data and stay as they are: they are the ones after an odd number of double quotes (an escaped
    `""` counts twice). `quoted` says whether `data` starts inside a quoted field; the result
    says whether it ends inside one, so that a stream can be converted in pieces of any size.
    Linear time; each slice is walked by whichever of its quotes or its line breaks are fewer."""
    out: list[bytes | bytearray] = []
    for start in range(0, len(data), SLICE_BYTES):
        piece = data[start : start + SLICE_BYTES]
        quotes, lines = piece.count(b'"'), piece.count(b"\n")
        if not lines:
            out.append(piece)
        elif not quotes:
            out.append(piece if quoted else piece.replace(b"\n", b"\r\n"))
        elif lines * 8 < quotes:
            out.append(_by_lines(piece, quoted))
        else:
            parts: list[bytes | bytearray] = list(piece.split(b'"'))
            first = 1 if quoted else 0
            parts[first::2] = [p.replace(b"\n", b"\r\n") for p in parts[first::2]]
            out.append(b'"'.join(parts))
        quoted ^= bool(quotes & 1)
    return b"".join(out), quoted


def _by_lines(piece: bytes | bytearray, quoted: bool) -> bytes:
    """to_crlf() of a slice with few line breaks and many quotes: one step a line break."""
    out: list[bytes | bytearray] = []
    start = seen = 0
    while (end := piece.find(b"\n", seen)) >= 0:
        quoted ^= bool(piece.count(b'"', seen, end) & 1)
        if not quoted:
            out += (piece[start:end], b"\r\n")
            start = end + 1
        seen = end + 1
    out.append(piece[start:])
    return b"".join(out)


class CsvFramer:
    def __init__(self, columns: Sequence[Column], options: RenderOptions) -> None:
        names = [c.name for c in columns] + (["_cursor"] if options.cursor else [])
        head = (",".join(quoted(n) for n in names) + "\r\n").encode()
        self._head = BOM + head if options.bom else head
        self._quoted = False
        kinds = [render.csv_kind(c, options.escape_formulas) for c in columns]
        self._records = (
            render.Records(kinds + [render.AS_IS] * options.cursor) if options.native else None
        )

    def begin(self) -> bytes:
        return self._head

    def page(self, data: bytes | bytearray) -> bytes | bytearray:
        if self._records is not None:
            return self._records(data)
        out, self._quoted = to_crlf(data, self._quoted)
        return out

    def end(self) -> bytes:
        if self._records is not None:
            self._records.end()
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
