"""JSON Lines: one object per row, native types, timestamps in ISO 8601."""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from service.columns import Column
from service.formats import EncodeOptions, Row


class JsonlEncoder:
    def __init__(self, columns: Sequence[Column], options: EncodeOptions) -> None:
        self._names = tuple(c.name for c in columns)

    def begin(self) -> bytes:
        return b""

    def rows(self, rows: Sequence[Row]) -> bytes:
        names, dumps, newline = self._names, orjson.dumps, orjson.OPT_APPEND_NEWLINE
        # One growing bytearray: keeping a page of small bytes objects alive to join them later
        # made orjson's allocations 2.5x slower (3.7 s instead of 1.4 s per 1M rows).
        # OPT_APPEND_NEWLINE is ~13% faster than appending b"\n" here (orjson 3.13).
        out = bytearray()
        for row in rows:
            out += dumps(dict(zip(names, row, strict=False)), option=newline)
        return bytes(out)

    def copied(self, data: bytes) -> bytes:
        raise TypeError("this format is not written by COPY")

    def end(self) -> bytes:
        return b""

    def close(self) -> None:
        pass
