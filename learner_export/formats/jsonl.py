"""JSON Lines: one object per row, native types, timestamps as ISO 8601 strings.

formats.render (C) writes each line from COPY's plain output of the cells. With
`EXPORT_RENDER=database` the select list builds each line instead; COPY writes it as a lone CSV
field whose quote and delimiter characters JSON text never holds (it escapes every control
character), so the line goes out untouched.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from learner_export.contract.columns import Column, Kind
from learner_export.formats import CopySpec, Format, RenderOptions, cells, render


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


def _names(columns: Sequence[Column], cursor: bool) -> list[bytes]:
    """Each member's `{"name":` or `,"name":`."""
    names = [c.name for c in columns] + (["_cursor"] if cursor else [])
    return [(b"{" if i == 0 else b",") + orjson.dumps(n) + b":" for i, n in enumerate(names)]


def select(columns: Sequence[Column], options: RenderOptions) -> CopySpec:
    if options.native:
        items = [c.sql for c in columns]
        if options.cursor:
            items.append(cells.cursor(options.tz))
        return CopySpec(tuple(items))
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
        kinds = [render.json_kind(c) for c in columns] + [render.JSON_QUOTED] * options.cursor
        self._lines = (
            render.Records(kinds, _names(columns, options.cursor)) if options.native else None
        )

    def begin(self) -> bytes:
        return b""

    def page(self, data: bytes | bytearray) -> bytes | bytearray:
        return data if self._lines is None else self._lines(data)

    def end(self) -> bytes:
        if self._lines is not None:
            self._lines.end()
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
