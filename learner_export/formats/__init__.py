"""Output formats. A format is one record (`Format`) in one module, owning both its halves:

- `select`: how its cells are rendered inside PostgreSQL, as the select list of a COPY over the
  page function's rows (`r`), so that pages arrive already written in the format;
- `framer`: what Python adds around those pages (header, line ends, sheet XML, zip, row groups).

plus its capabilities. The pages (learner_export.pages) receive the select list as a `CopySpec`
(SQL text, opaque to them) and never import a format. To add a format: one module defining
`FORMAT`, one line below.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from learner_export.contract.columns import Column


@dataclass(frozen=True, slots=True)
class RenderOptions:
    """How an export asked to be written (validated parameters)."""

    escape_formulas: bool = True
    bom: bool = False
    cursor: bool = False  # a `_cursor` column or member after the chosen columns
    tz: str = "UTC"  # the IANA zone timestamps are shown in; the session's TimeZone
    sheet_rows: int = 1_048_576
    # CSV, JSON Lines and XLSX: cells rendered on the service's side from COPY's plain output
    # (formats.render), not by the select list in PostgreSQL.
    native: bool = False


@dataclass(frozen=True, slots=True)
class CopySpec:
    """A select list over the page function's row `r`, as items (a column of the COPY each),
    and the COPY (FORMAT csv) options it needs. Page settings it may read: `learner_export.row`,
    the export's index of the page's first row.

    `ordered` is SQL around each item (`{}`) that must see the rows in keyset order: XLSX's row
    numbers. The bulk pass renders a range it holds back before sorting it (the sort then holds
    rendered rows, and the rendering runs while an earlier range is sent), and applies
    `ordered` once the range is sorted; a page renders its rows in order, as `select`."""

    items: tuple[str, ...]
    options: dict[str, str] = field(default_factory=dict)
    ordered: str = "{}"

    @property
    def select(self) -> str:
        """The select list in one piece (each item inside `ordered`)."""
        return ", ".join(self.ordered.replace("{}", item) for item in self.items)


class Framer(Protocol):
    """The Python half of a format: bytes before the first page, around each piece of a page
    COPY wrote (whole records, any number), and at the end; `close()` lets go of a file
    abandoned half-way. What a framer holds is bounded in bytes, whatever the pieces hold."""

    def begin(self) -> bytes: ...

    def page(self, data: bytes | bytearray) -> bytes | bytearray: ...

    def end(self) -> bytes: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Format:
    name: str
    media_type: str
    extension: str
    compressible: bool  # worth gzip/zstd on the wire (not a zip or a compressed file already)
    resumable: bool  # can carry the `_cursor` column, so a cut download can continue
    select: Callable[[Sequence[Column], RenderOptions], CopySpec]
    framer: Callable[[Sequence[Column], RenderOptions], Framer]
    description: str


def _registry() -> dict[str, Format]:
    from learner_export.formats import csv, jsonl, parquet, xlsx

    return {f.name: f for f in (csv.FORMAT, jsonl.FORMAT, xlsx.FORMAT, parquet.FORMAT)}


FORMATS: dict[str, Format] = _registry()
