"""Where the cells of CSV, JSON Lines and XLSX are rendered: by the C module `_render` on the
service's side (the default), or by the formats' select lists inside PostgreSQL.

COPY's plain output of a column costs PostgreSQL little; what the select lists add per cell (the
formula rule, to_char() to ISO 8601, to_json(), the line's concatenation) cost 0.3-0.8 µs a cell
there, in PostgreSQL's function calls: about half again what COPY of the plain query costs
(docs/engine.md, "What the select lists cost"). `_render` does the same work in one pass over
COPY's bytes, at a few nanoseconds a byte. Its output is the select lists' byte for byte
(tests/db/test_render.py compares the two on the hostile dataset, on text made of every character
the rules look at, and on instants of every era). Parquet reads plain cells already.

`EXPORT_RENDER=database` keeps the select lists; so does a build without a C compiler (the
extension is optional).
"""

from __future__ import annotations

from collections.abc import Sequence

from learner_export.contract.columns import Column, Kind
from learner_export.formats import formula

try:
    from learner_export.formats import _render
except ImportError:  # built without a C compiler: the select lists render
    _render = None  # type: ignore[assignment]

AVAILABLE = _render is not None

# Each field's kind, one byte, as _render.c reads them.
AS_IS = b"x"
FORMULA_TEXT = b"t"
JSON_STRING = b"s"
JSON_QUOTED = b"q"
BOOLEAN = b"b"
_TIMES = {Kind.DATE: b"D", Kind.TIMESTAMP: b"T", Kind.TIMESTAMPTZ: b"Z"}
# XLSX cells: text (with or without the formula rule's style), inline as it is, serial dates and
# date-times (PostgreSQL computes the serial), booleans as 0/1, numbers.
_SHEET = {
    Kind.UUID: b"U",
    Kind.DATE: b"d",
    Kind.TIMESTAMP: b"w",
    Kind.TIMESTAMPTZ: b"w",
    Kind.BOOL: b"B",
    Kind.INT: b"N",
    Kind.NUMERIC: b"M",
    Kind.FLOAT: b"F",
}
# JSON numbers: float8 as Python's repr() writes it (null for NaN and infinities), numeric with
# null for NaN.
_JSON_NUMBERS = {Kind.FLOAT: b"f", Kind.NUMERIC: b"m"}

# The formula rule's character classes, bits as _render.c's enum.
_SKIP, _ALWAYS, _SIGN, _PLAIN, _SEP = 1, 2, 4, 8, 16


def _rule() -> list[tuple[int, int, int]]:
    """formula's classes as (first, last, class) code point ranges."""
    spans = [(lo, hi, _SKIP) for lo, hi in formula.SKIPPED]
    for chars, cls in (
        (formula.ALWAYS, _ALWAYS),
        (formula.SIGNS, _SIGN),
        (formula.PLAIN, _PLAIN),
        (formula.SEPARATORS, _SEP),
    ):
        spans += [(ord(c), ord(c), cls) for c in chars]
    return spans


if _render is not None:
    _render.set_rule(_rule())


def time_kind(column: Column) -> bytes | None:
    return _TIMES.get(column.kind)


def csv_kind(column: Column, escape_formulas: bool) -> bytes:
    if column.kind is Kind.TEXT and escape_formulas:
        return FORMULA_TEXT
    if column.kind is Kind.BOOL:
        return BOOLEAN
    return time_kind(column) or AS_IS


def json_kind(column: Column) -> bytes:
    if column.kind is Kind.TEXT:
        return JSON_STRING
    if column.kind is Kind.UUID:
        return JSON_QUOTED
    if column.kind is Kind.BOOL:
        return BOOLEAN
    return _JSON_NUMBERS.get(column.kind) or time_kind(column) or AS_IS


def sheet_kind(column: Column, escape_formulas: bool) -> bytes:
    if column.kind is Kind.TEXT:
        return b"X" if escape_formulas else b"Y"
    return _SHEET[column.kind]


class Records:
    """COPY's CSV output of plain cells, rendered piece by piece: as CSV records, or JSON Lines
    (`names`: each member's `{"name":` or `,"name":`), or sheet rows (`letters`: each column's,
    `sheet_rows`: the data rows a sheet holds; rows are numbered from the export's first). A
    piece is whole records (pages.CopiedPage); a record cut at a piece's end waits for the next,
    and one left at the end is an error, never a file that looks complete."""

    def __init__(
        self,
        kinds: Sequence[bytes],
        names: Sequence[bytes] | None = None,
        letters: Sequence[str] | None = None,
        sheet_rows: int = 0,
    ) -> None:
        self._kinds = b"".join(kinds)
        self._names = None if names is None else tuple(names)
        self._letters = None if letters is None else tuple(x.encode() for x in letters)
        self._sheet_rows = sheet_rows
        self._index = 0
        self._rest = b""

    def __call__(self, data: bytes | bytearray) -> bytes:
        if self._rest:
            data = self._rest + data
        if self._letters is not None:
            out, used, rows = _render.sheet_rows(
                data, self._kinds, self._letters, self._index, self._sheet_rows
            )
            self._index += rows
        elif self._names is not None:
            out, used, _ = _render.json_lines(data, self._kinds, self._names)
        else:
            out, used, _ = _render.csv_records(data, self._kinds)
        self._rest = bytes(data[used:])
        return out

    def end(self) -> None:
        if self._rest:
            raise ValueError(f"COPY's output ended inside a record ({len(self._rest)} bytes)")
