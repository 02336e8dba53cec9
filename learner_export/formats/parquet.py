"""Parquet, for data tools (pandas, polars, DuckDB, Spark): typed columns, compressed, streamed as
row groups.

COPY writes each page as plain CSV whose cells are easy to parse exactly: instants and
timestamps as microseconds since the Unix epoch, dates as days since it. pyarrow's CSV reader
(C++) turns about PARSE_BYTES of whole records at a time into columns of the export's types (its
block as large as what it reads, so that no row straddles two blocks, however long), and row
groups leave as soon as they hold ROW_GROUP_ROWS rows or ROW_GROUP_BYTES bytes, so memory holds
at most one row group, bounded in bytes whatever the cells hold; the file's footer comes at the
end. pyarrow is imported only when a Parquet export starts.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Sequence
from typing import Any

from learner_export.contract.columns import Column, Kind
from learner_export.formats import CopySpec, Format, RenderOptions

ROW_GROUP_ROWS = 65_536
# A row group also leaves once its columns hold this many bytes (Arrow's buffers).
ROW_GROUP_BYTES = 4 * 1024 * 1024
# COPY output gathered before one call of the CSV reader (each call has a fixed cost).
PARSE_BYTES = 1024 * 1024
# Instants from the first day up to the second (UTC) are read through float8, exactly (_cell).
FLOAT_EXACT_DAYS = ("1900-01-01", "2100-01-01")


def _cell(column: Column) -> str:
    ref = column.sql
    if column.kind in (Kind.TIMESTAMP, Kind.TIMESTAMPTZ):
        # Infinite timestamps have no Parquet value, nor those from 2^63 - 1 microseconds after
        # 1970 on (294247-01-10 04:00:54.775807, where Parquet's int64 ends and PostgreSQL's
        # count stops being exact; its own go on to 294276): they are written as null.
        zone = "+00" if column.kind is Kind.TIMESTAMPTZ else ""
        last = f"'294247-01-10 04:00:54.775807{zone}'::{column.kind.value}"
        since, until = (f"'{day}{zone}'::{column.kind.value}" for day in FLOAT_EXACT_DAYS)
        # extract() computes in numeric (0.31 s per column of 1M rows against 0.14 s for the
        # float8 date_part(), measured). date_part() divides the microseconds by 10^6 in
        # float8; times 10^6 and rounded by the cast, that is those microseconds again
        # wherever both roundings together stay under half a microsecond: for fewer than 2^32
        # seconds from 1970 (1834-2106), a window these days sit well inside.
        return (
            f"CASE WHEN {ref} >= {since} AND {ref} < {until}"
            f" THEN (date_part('epoch', {ref}) * 1000000)::bigint"
            f" WHEN isfinite({ref}) AND {ref} < {last}"
            f" THEN (extract(epoch FROM {ref}) * 1000000)::bigint END"
        )
    if column.kind is Kind.DATE:
        return f"CASE WHEN isfinite({ref}) THEN {ref} - date '1970-01-01' END"
    if column.kind is Kind.NUMERIC:
        return f"CASE WHEN {ref} = 'NaN' THEN NULL ELSE {ref} END"
    if column.kind is Kind.BOOL:
        return f"{ref}::text"
    return ref


def select(columns: Sequence[Column], options: RenderOptions) -> CopySpec:
    return CopySpec(tuple(_cell(c) for c in columns))


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


def _import_pyarrow() -> tuple[Any, Any, Any]:
    """pyarrow, its CSV reader and its Parquet writer, imported without numpy.

    pyarrow imports numpy whenever it is installed (a tool beside the service may have brought
    it), for conversions the framer never asks for: 11 MB of every serving process's RSS. Where
    the framer is the first to import pyarrow, pyarrow in that process converts nothing to numpy
    afterwards; nothing in the service does. Where numpy is already imported, nothing changes.
    pyarrow.compute (10 MB more, and it would import numpy later) is never imported: the framer
    needs no cast (ParquetFramer._stored)."""
    hidden = "numpy" not in sys.modules
    if hidden:
        sys.modules["numpy"] = None  # type: ignore[assignment]  # `import numpy` fails
    try:
        import pyarrow as pa
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq
    finally:
        if hidden:
            del sys.modules["numpy"]
    return pa, pacsv, pq


class ParquetFramer:
    def __init__(self, columns: Sequence[Column], options: RenderOptions) -> None:
        pa, pacsv, pq = _import_pyarrow()
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
        # Columns read as integers and stored as dates or timestamps: the same bytes, viewed.
        self._views = [store[c.kind] if store[c.kind] != read[c.kind] else None for c in columns]
        self._column_names = self._names
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
        # Every Arrow buffer comes from the default pool, which ARROW_DEFAULT_MEMORY_POOL
        # chose for the C++ code as well (learner_export.memory: jemalloc unless the
        # environment says otherwise).
        self._writer = pq.ParquetWriter(self._sink, self._schema, compression="zstd")
        self._pending: list[Any] = []
        self._pending_rows = 0
        self._pending_bytes = 0
        self._unread: list[bytes | bytearray] = []
        self._unread_bytes = 0
        self._unread_lines = 0

    def begin(self) -> bytes:
        return self._sink.drain()

    def page(self, data: bytes | bytearray) -> bytes | bytearray:
        if data:
            self._unread.append(data)
            self._unread_bytes += len(data)
            # Line breaks are at least the rows: enough of them may fill the row group.
            self._unread_lines += data.count(b"\n")
        if (
            self._unread_bytes >= PARSE_BYTES
            or self._unread_lines >= ROW_GROUP_ROWS - self._pending_rows
        ):
            self._parse()
        return self._sink.drain()

    def _parse(self) -> None:
        if not self._unread:
            return
        data = b"".join(self._unread) if len(self._unread) > 1 else self._unread[0]
        self._unread, self._unread_bytes, self._unread_lines = [], 0, 0
        read = self._pacsv.ReadOptions(
            column_names=self._column_names, use_threads=False, block_size=len(data) + 1
        )
        parsed = self._pacsv.read_csv(
            self._pa.py_buffer(data), read, self._parse_options, self._convert_options
        )
        del data
        table = self._stored(parsed)
        while table.num_rows:
            # Full groups leave; the rest waits for the next records.
            room = ROW_GROUP_ROWS - self._pending_rows
            part = table.slice(0, room) if table.num_rows > room else table
            table = table.slice(part.num_rows)
            self._pending.append(part)
            self._pending_rows += part.num_rows
            self._pending_bytes += part.nbytes
            if self._pending_rows >= ROW_GROUP_ROWS or self._pending_bytes >= ROW_GROUP_BYTES:
                self._flush()

    def _stored(self, parsed: Any) -> Any:
        """The parsed table in the file's types. Days and microseconds since the epoch are
        laid out as date32 and timestamp[us] are: each chunk is viewed as its stored type, where
        Table.cast() would copy it and import pyarrow.compute."""
        pa = self._pa
        columns = [
            column
            if view is None
            else pa.chunked_array([chunk.view(view) for chunk in column.chunks], type=view)
            for column, view in zip(parsed.columns, self._views, strict=True)
        ]
        return pa.Table.from_arrays(columns, schema=self._schema)

    def _flush(self) -> None:
        if self._pending:
            table = self._pa.concat_tables(self._pending)
            self._pending, self._pending_rows, self._pending_bytes = [], 0, 0
            self._writer.write_table(table, row_group_size=max(1, table.num_rows))

    def end(self) -> bytes:
        self._parse()
        self._flush()
        self._writer.close()
        return self._sink.drain()

    def close(self) -> None:
        self._pending, self._unread = [], []
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
