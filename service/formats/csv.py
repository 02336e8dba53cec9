"""CSV per RFC 4180: UTF-8, CRLF, a header row, NULL as an empty field."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from service.columns import Column, Kind
from service.formats import EncodeOptions, Row
from service.formats.cells import FORMULA_PREFIXES

BOM = "\ufeff".encode()

# Faster than csv.writer, which spends most of its time on str() of each cell (measured: 5.3 s
# against 3 s for 1M rows of 15 columns).
Cell = Callable[[Any], str]


def _quoted(text: str) -> str:
    if '"' in text or "," in text or "\n" in text or "\r" in text:
        return '"' + text.replace('"', '""') + '"'
    return text


def _escaped(text: str) -> str:
    return _quoted("'" + text if text.startswith(FORMULA_PREFIXES) else text)


def _timestamp(value: Any) -> str:
    return str(value.isoformat())


def _bool(value: Any) -> str:
    return "true" if value else "false"


def _number(value: Any) -> str:
    return repr(value)


class CsvEncoder:
    def __init__(self, columns: Sequence[Column], options: EncodeOptions) -> None:
        self._columns = columns
        self._bom = options.bom
        text = _escaped if options.escape_formulas else _quoted
        by_kind: dict[Kind, Cell] = {Kind.TEXT: text, Kind.UUID: str, Kind.TIMESTAMP: _timestamp,
                                     Kind.BOOL: _bool, Kind.INT: _number, Kind.FLOAT: _number}
        self._cells = [by_kind[c.kind] for c in columns]

    def begin(self) -> bytes:
        head = (",".join(_quoted(c.name) for c in self._columns) + "\r\n").encode()
        return BOM + head if self._bom else head

    def rows(self, rows: Sequence[Row]) -> bytes:
        cells = self._cells
        # One growing bytearray: a page of small objects kept alive to be joined at the end
        # costs more in the allocator than the copying saves.
        out = bytearray()
        for row in rows:
            out += ",".join(["" if v is None else f(v) for f, v in zip(cells, row, strict=False)]
                            ).encode()
            out += b"\r\n"
        return bytes(out)

    def end(self) -> bytes:
        return b""

    def close(self) -> None:
        pass
