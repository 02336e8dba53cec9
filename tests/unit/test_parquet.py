"""Parquet framing without a database: an empty string stays apart from NULL, and row groups stay
within their bound."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from learner_export.contract.columns import Column, Kind
from learner_export.formats import RenderOptions
from learner_export.formats.parquet import ROW_GROUP_ROWS, ParquetFramer


def test_parquet_keeps_an_empty_string_apart_from_null() -> None:
    framer = ParquetFramer([Column("t", Kind.TEXT, "text")], RenderOptions())
    # As COPY writes them: NULL an empty field, an empty string "".
    body = framer.begin() + framer.page(b'""\n\nx\n') + framer.end()
    assert pq.read_table(io.BytesIO(body)).column("t").to_pylist() == ["", None, "x"]


@pytest.mark.parametrize("page_rows", [500, 5000, pytest.param(7, marks=pytest.mark.slow)])
def test_parquet_row_groups_stay_within_their_bound(page_rows: int) -> None:
    """Pages that do not divide ROW_GROUP_ROWS still give row groups of at most that many rows."""
    total = 2 * ROW_GROUP_ROWS + 1234
    framer = ParquetFramer([Column("n", Kind.INT, "int4")], RenderOptions())
    parts = [framer.begin()]
    for start in range(0, total, page_rows):
        end = min(total, start + page_rows)
        page = "".join(f"{i}\n" for i in range(start, end)).encode()
        parts.append(framer.page(page))
    parts.append(framer.end())
    # Bytes leave once a row group is full, not only at the end.
    assert sum(len(p) for p in parts[:-1]) > len(parts[-1])
    file = pq.ParquetFile(io.BytesIO(b"".join(parts)))
    sizes = [file.metadata.row_group(i).num_rows for i in range(file.metadata.num_row_groups)]
    assert sum(sizes) == total
    assert max(sizes) <= ROW_GROUP_ROWS
    assert file.read().column("n").to_pylist() == list(range(total))


def test_a_parquet_export_keeps_numpy_out_and_arrow_on_jemalloc() -> None:
    """In a process of its own, as the service runs: the export's file is whole, with its dates
    and instants; numpy (11 MB of RSS, installed here beside the tests) and pyarrow.compute
    (10 MB) are never imported, and every Arrow buffer comes from jemalloc with one arena
    (docs/engine.md: the peak and CPU each pool gave)."""
    script = """
import sys
from learner_export.contract.columns import Column, Kind
from learner_export.formats import RenderOptions
from learner_export.formats.parquet import ParquetFramer
from learner_export.memory import give_back_large_buffers

give_back_large_buffers()
columns = [
    Column("t", Kind.TEXT, "text"),
    Column("n", Kind.INT, "int4"),
    Column("d", Kind.DATE, "date"),
    Column("at", Kind.TIMESTAMPTZ, "timestamptz"),
]
framer = ParquetFramer(columns, RenderOptions(tz="Europe/Paris"))
rows = b'a,1,19782,1709208000000001\\n"b\\nc",,-1,\\n'
body = framer.begin() + framer.page(rows) + framer.end()
import pyarrow as pa
import os
loaded = "numpy" in sys.modules or "pyarrow.compute" in sys.modules
pool = pa.default_memory_pool().backend_name
sys.stdout.write(f"{loaded} {pool} {os.environ['JE_ARROW_MALLOC_CONF']}\\n")
sys.stdout.flush()
sys.stdout.buffer.write(body)
"""
    chosen = ("ARROW_DEFAULT_MEMORY_POOL", "JE_ARROW_MALLOC_CONF")
    env = {k: v for k, v in os.environ.items() if k not in chosen}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, check=True, env=env, timeout=60
    )
    said, body = done.stdout.split(b"\n", 1)
    assert said == b"False jemalloc narenas:1"
    table = pq.read_table(io.BytesIO(body))
    assert table.schema.field("at").type == pa.timestamp("us", tz="Europe/Paris")
    paris = ZoneInfo("Europe/Paris")
    assert table.to_pydict() == {
        "t": ["a", "b\nc"],
        "n": [1, None],
        "d": [date(2024, 2, 29), date(1969, 12, 31)],
        "at": [datetime(2024, 2, 29, 12, 0, 0, 1, tzinfo=UTC).astimezone(paris), None],
    }
