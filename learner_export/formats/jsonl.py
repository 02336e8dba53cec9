"""JSON Lines: one object per row, native types, timestamps as ISO 8601 strings.

The select list builds each line; COPY writes it as a lone CSV field whose quote and delimiter
characters JSON text never holds (it escapes every control character), so the line goes out
untouched.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from learner_export.contract.columns import Column, Kind
from learner_export.formats import CopySpec, Format, RenderOptions, cells


def _value(column: Column, tz: str) -> str:
    ref = column.sql
    if column.kind is Kind.TEXT:
        return f"to_json({ref})::text"
    if column.kind is Kind.UUID:
        return f"'\"' || {ref} || '\"'"
    if cells.is_time(column):
        return f"'\"' || {cells.timestamp_text(ref, column.kind, tz)} || '\"'"
    if column.kind is Kind.FLOAT:
        # NaN and infinities have no JSON number: they are written as null.
        return (
            f"CASE WHEN {ref} IN ('NaN', 'Infinity', '-Infinity') THEN NULL"
            f" ELSE {cells.python_float(ref)} END"
        )
    if column.kind is Kind.NUMERIC:
        return f"CASE WHEN {ref} = 'NaN' THEN NULL ELSE {ref}::text END"
    return f"{ref}::text"


def select(columns: Sequence[Column], options: RenderOptions) -> CopySpec:
    parts = [
        f"{cells.literal(('{' if i == 0 else ',') + orjson.dumps(c.name).decode() + ':')}"
        f" || coalesce({_value(c, options.tz)}, 'null')"
        for i, c in enumerate(columns)
    ]
    if options.cursor:
        parts.append(f"',\"_cursor\":\"' || {cells.cursor(options.tz)} || '\"'")
    return CopySpec((" || ".join(parts) + " || '}'",), cells.WHOLE_LINES)


class JsonlFramer:
    def __init__(self, columns: Sequence[Column], options: RenderOptions) -> None:
        pass

    def begin(self) -> bytes:
        return b""

    def page(self, data: bytes | bytearray) -> bytes | bytearray:
        return data

    def end(self) -> bytes:
        return b""

    def close(self) -> None:
        pass


FORMAT = Format(
    name="jsonl",
    media_type="application/x-ndjson",
    extension="jsonl",
    compressible=True,
    resumable=True,
    select=select,
    framer=JsonlFramer,
    description="JSON Lines (one object per row, native types)",
)
