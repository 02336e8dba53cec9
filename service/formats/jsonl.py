"""JSON Lines: one object per row, native types, timestamps in ISO 8601 with microseconds.

Lines look as PostgreSQL writes them for a COPY of the page (service.copy_select), so that a
page written by COPY and one encoded here are the same bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import orjson

from service.columns import Column
from service.formats import EncodeOptions, Row
from service.formats.cells import iso_timestamp

_OPTIONS = orjson.OPT_APPEND_NEWLINE | orjson.OPT_PASSTHROUGH_DATETIME


def _default(value: Any) -> str:
    if isinstance(value, datetime):
        return iso_timestamp(value)
    raise TypeError(f"not JSON: {type(value).__name__}")


class JsonlEncoder:
    def __init__(self, columns: Sequence[Column], options: EncodeOptions) -> None:
        self._names = tuple(c.name for c in columns)

    def begin(self) -> bytes:
        return b""

    def rows(self, rows: Sequence[Row]) -> bytes:
        names, dumps = self._names, orjson.dumps
        # One growing bytearray: keeping a page of small bytes objects alive to join them later
        # made orjson's allocations 2.5x slower (3.7 s instead of 1.4 s per 1M rows).
        out = bytearray()
        for row in rows:
            out += dumps(dict(zip(names, row, strict=False)), default=_default, option=_OPTIONS)
        return bytes(out)

    def copied(self, data: bytes, rows: int) -> bytes:
        return data

    def end(self) -> bytes:
        return b""

    def close(self) -> None:
        pass
