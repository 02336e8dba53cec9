"""Output formats: a registry of name → media type, extension and encoder.

An encoder turns rows into bytes and knows nothing of HTTP or the database: `begin()` gives the
bytes before the first row, `rows()` those of one batch, `end()` what closes the file, and
`close()` lets go of an encoding abandoned half-way; `copied()` takes a page of `rows` rows
that PostgreSQL's COPY already wrote in the format (service.copy_select). The HTTP layer, the CLI
and the benchmarks all drive encoders the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from service.columns import Column

Row = Sequence[Any]


class Encoder(Protocol):
    def begin(self) -> bytes: ...

    def rows(self, rows: Sequence[Row]) -> bytes: ...

    def copied(self, data: bytes, rows: int) -> bytes: ...

    def end(self) -> bytes: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class EncodeOptions:
    bom: bool = False
    escape_formulas: bool = True
    sheet_rows: int = 1_048_576


@dataclass(frozen=True, slots=True)
class Format:
    name: str
    media_type: str
    extension: str
    make_encoder: Callable[[Sequence[Column], EncodeOptions], Encoder]


def _registry() -> dict[str, Format]:
    from service.formats.csv import CsvEncoder
    from service.formats.jsonl import JsonlEncoder
    from service.formats.xlsx import XlsxEncoder

    return {
        "csv": Format("csv", "text/csv; charset=utf-8", "csv", CsvEncoder),
        "jsonl": Format("jsonl", "application/x-ndjson", "jsonl", JsonlEncoder),
        "xlsx": Format(
            "xlsx",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            "xlsx",
            XlsxEncoder,
        ),
    }


FORMATS: dict[str, Format] = _registry()


def encode_all(encoder: Encoder, batches: Sequence[Sequence[Row]]) -> bytes:
    """A whole file from batches already in memory (tests and small tools)."""
    return encoder.begin() + b"".join(encoder.rows(b) for b in batches) + encoder.end()
