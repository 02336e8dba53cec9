"""CSV per RFC 4180: UTF-8, CRLF, a header row, NULL as an empty field."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from service.columns import Column, Kind
from service.formats import EncodeOptions, Row
from service.formats.cells import neutralise

BOM = "\ufeff".encode()


def _iso(value: datetime) -> str:
    return value.isoformat()


def _bool(value: bool) -> str:
    return "true" if value else "false"


class CsvEncoder:
    def __init__(self, columns: Sequence[Column], options: EncodeOptions) -> None:
        self._columns = columns
        self._options = options
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer, lineterminator="\r\n")
        converters: dict[Kind, Callable[[Any], Any]] = {Kind.TIMESTAMP: _iso, Kind.BOOL: _bool}
        if options.escape_formulas:
            converters[Kind.TEXT] = neutralise
        self._convert = [(i, converters[c.kind]) for i, c in enumerate(columns)
                         if c.kind in converters]

    def _prepare(self, row: Row) -> list[Any]:
        out = list(row)
        for i, convert in self._convert:
            value = out[i]
            if value is not None:
                out[i] = convert(value)
        return out

    def _drain(self) -> bytes:
        text = self._buffer.getvalue()
        self._buffer.seek(0)
        self._buffer.truncate()
        return text.encode()

    def begin(self) -> bytes:
        self._writer.writerow([c.name for c in self._columns])
        head = self._drain()
        return BOM + head if self._options.bom else head

    def rows(self, rows: Sequence[Row]) -> bytes:
        self._writer.writerows(map(self._prepare, rows))
        return self._drain()

    def end(self) -> bytes:
        return b""

    def close(self) -> None:
        pass
