"""Parquet, for data tools (pandas, polars, DuckDB, Spark): typed columns, compressed, streamed as
row groups.

COPY writes each page as plain CSV whose cells are easy to parse exactly: instants and
timestamps as microseconds since the Unix epoch, dates as days since it. pyarrow's CSV reader
(C++) turns a page into columns of the export's types, and row groups of about ROW_GROUP_ROWS
rows leave as soon as they are full, so memory holds at most one row group; the file's footer
comes at the end. pyarrow is imported only when a Parquet export starts.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from learner_export.contract.columns import Column, Kind
from learner_export.formats import CopySpec, Format, RenderOptions

ROW_GROUP_ROWS = 65_536


def _cell(column: Column) -> str:
    ref = column.sql
    if column.kind in (Kind.TIMESTAMP, Kind.TIMESTAMPTZ):
        # Infinite timestamps have no Parquet value: they are written as null.
        return f"CASE WHEN isfinite({ref}) THEN (extract(epoch FROM {ref}) * 1000000)::bigint END"
    if column.kind is Kind.DATE:
        return f"CASE WHEN isfinite({ref}) THEN {ref} - date '1970-01-01' END"
    if column.kind is Kind.NUMERIC:
        return f"CASE WHEN {ref} = 'NaN' THEN NULL ELSE {ref} END"
    if column.kind is Kind.BOOL:
        return f"{ref}::text"
    return ref


def select(columns: Sequence[Column], options: RenderOptions) -> CopySpec:
    return CopySpec(", ".join(_cell(c) for c in columns))


class _Sink(io.RawIOBase):
    """Where pyarrow's writer puts the file: kept until drained."""

    def __init__(self) -> None:
        super().__init__()
        self._parts: list[bytes] = []
        self._position = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        chunk = bytes(data)
        self._parts.append(chunk)
        self._position += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        return self._position

    def drain(self) -> bytes:
        out = b"".join(self._parts)
        self._parts.clear()
        return out


class ParquetFramer:
    def __init__(self, columns: Sequence[Column], options: RenderOptions) -> None:
        import pyarrow as pa
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq

        self._pa, self._pacsv = pa, pacsv
        # What the CSV reader parses each column as, and what the file stores it as.
        read = {
            Kind.TEXT: pa.string(),
            Kind.UUID: pa.string(),
            Kind.INT: pa.int64(),
            Kind.NUMERIC: pa.float64(),
            Kind.FLOAT: pa.float64(),
            Kind.BOOL: pa.bool_(),
            Kind.DATE: pa.int32(),
            Kind.TIMESTAMP: pa.int64(),
            Kind.TIMESTAMPTZ: pa.int64(),
        }
        store = {
            **read,
            Kind.DATE: pa.date32(),
            Kind.TIMESTAMP: pa.timestamp("us"),
            Kind.TIMESTAMPTZ: pa.timestamp("us", tz=options.tz),
        }
        self._names = [c.name for c in columns]
        self._read_types = {c.name: read[c.kind] for c in columns}
        self._schema = pa.schema([(c.name, store[c.kind]) for c in columns])
        self._read_options = pacsv.ReadOptions(column_names=self._names, use_threads=False)
        # With one column, an empty line is a row whose cell is NULL: it must not be skipped.
        self._parse_options = pacsv.ParseOptions(newlines_in_values=True, ignore_empty_lines=False)
        # COPY writes NULL as an empty field and an empty string as "": only the first is null.
        self._convert_options = pacsv.ConvertOptions(
            column_types=self._read_types,
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=False,
            true_values=["true"],
            false_values=["false"],
        )
        self._sink = _Sink()
        self._writer = pq.ParquetWriter(self._sink, self._schema, compression="zstd")
        self._pending: list[Any] = []
        self._pending_rows = 0

    def begin(self) -> bytes:
        return self._sink.drain()

    def page(self, data: bytes, rows: int) -> bytes:
        if rows:
            table = self._pacsv.read_csv(
                self._pa.py_buffer(data),
                self._read_options,
                self._parse_options,
                self._convert_options,
            )
            self._pending.append(table.cast(self._schema))
            self._pending_rows += rows
        if self._pending_rows >= ROW_GROUP_ROWS:
            # Pages need not divide ROW_GROUP_ROWS: full groups leave, the rest waits.
            table = self._pa.concat_tables(self._pending)
            while table.num_rows >= ROW_GROUP_ROWS:
                self._writer.write_table(
                    table.slice(0, ROW_GROUP_ROWS), row_group_size=ROW_GROUP_ROWS
                )
                table = table.slice(ROW_GROUP_ROWS)
            self._pending = [table] if table.num_rows else []
            self._pending_rows = table.num_rows
        return self._sink.drain()

    def _flush(self) -> None:
        if self._pending:
            table = self._pa.concat_tables(self._pending)
            self._pending, self._pending_rows = [], 0
            self._writer.write_table(table, row_group_size=max(1, table.num_rows))

    def end(self) -> bytes:
        self._flush()
        self._writer.close()
        return self._sink.drain()

    def close(self) -> None:
        self._pending = []
        self._sink.drain()


FORMAT = Format(
    name="parquet",
    media_type="application/vnd.apache.parquet",
    extension="parquet",
    compressible=False,
    resumable=False,
    select=select,
    framer=ParquetFramer,
    description="Apache Parquet (typed columns, zstd-compressed row groups)",
)
