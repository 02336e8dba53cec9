"""Parquet read back by pyarrow and by DuckDB equals the database value by value, and streams."""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from learner_export.contract.columns import Column, Kind
from learner_export.formats import RenderOptions
from learner_export.formats.parquet import FLOAT_EXACT_DAYS, ROW_GROUP_ROWS, select
from tests.conftest import (
    BIG_LEARNERS,
    SEED_LEARNERS,
    Database,
    LiveServer,
    client_of,
    export_backends,
    query,
)
from tests.reference import KINDS, NAMES, reference_rows

MAGIC = b"PAR1"
# What each kind of the sample adapter's columns is stored as.
ARROW_TYPES: dict[Kind, pa.DataType] = {
    Kind.UUID: pa.string(),
    Kind.TEXT: pa.string(),
    Kind.INT: pa.int64(),
    Kind.FLOAT: pa.float64(),
    Kind.BOOL: pa.bool_(),
}


def download(live: LiveServer, **params: Any) -> bytes:
    response = live.export(format="parquet", **params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/vnd.apache.parquet"
    assert '.parquet"' in response.headers["content-disposition"]
    return response.content


def expected(row: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """A reference row as a Parquet reader gives it back: uuids as text, the rest as stored."""
    return {
        n: str(row[n]) if KINDS[n] is Kind.UUID and row[n] is not None else row[n] for n in names
    }


def check_schema(schema: pa.Schema, names: list[str], tz: str) -> None:
    assert schema.names == names
    for name in names:
        kind = KINDS[name]
        want = pa.timestamp("us", tz=tz) if kind is Kind.TIMESTAMPTZ else ARROW_TYPES[kind]
        assert schema.field(name).type == want, name


def with_pyarrow(body: bytes) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = pq.read_table(io.BytesIO(body)).to_pylist()
    return rows


def with_duckdb(body: bytes, folder: Path) -> list[dict[str, Any]]:
    path = folder / "learners.parquet"
    path.write_bytes(body)
    with duckdb.connect() as conn:
        conn.execute("SET TimeZone = 'UTC'")
        cursor = conn.execute("SELECT * FROM read_parquet(?)", [str(path)])
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, r, strict=True)) for r in cursor.fetchall()]


def assert_same_rows(
    got: list[dict[str, Any]], want: list[dict[str, Any]], names: list[str]
) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert list(g) == names
        for name in names:
            value = g[name]
            if isinstance(value, datetime):
                # Aware datetimes compare as instants; a naive one would be a wall-clock time.
                assert value.tzinfo is not None, name
            if KINDS[name] is Kind.TEXT and w[name] is not None:
                assert value == w[name], (name, w["learner_id"])
            else:
                assert value == w[name] and type(value) is type(w[name]), (name, w["learner_id"])


def test_parquet_equals_database_in_pyarrow_and_duckdb(
    live: LiveServer, sql: Any, tmp_path: Path
) -> None:
    body = download(live)
    assert body.startswith(MAGIC) and body.endswith(MAGIC)
    want = [expected(r, NAMES) for r in reference_rows(sql)]
    assert len(want) == SEED_LEARNERS
    # Nulls among the text: each must come back as a null, not as an empty string.
    assert any(r["notes"] is None for r in want) and any(r["phone"] is None for r in want)
    check_schema(pq.read_schema(io.BytesIO(body)), NAMES, "UTC")
    assert_same_rows(with_pyarrow(body), want, NAMES)
    assert_same_rows(with_duckdb(body, tmp_path), want, NAMES)


def test_parquet_columns_and_time_zone(live: LiveServer, sql: Any, tmp_path: Path) -> None:
    names = ["email", "created_at", "learner_id", "last_login_at", "is_active"]
    body = download(live, columns=",".join(names), tz="Australia/Sydney")
    check_schema(pq.read_schema(io.BytesIO(body)), names, "Australia/Sydney")
    want = [expected(r, names) for r in reference_rows(sql)]
    rows = with_pyarrow(body)
    assert_same_rows(rows, want, names)
    # The same instants, shown in Sydney's offset (+10:00 or +11:00).
    offsets = {r["created_at"].utcoffset().total_seconds() / 3600 for r in rows}
    assert offsets <= {10.0, 11.0} and offsets
    assert_same_rows(with_duckdb(body, tmp_path), want, names)


def test_parquet_first_bytes_leave_before_the_export_is_read(
    start_server: Callable[..., LiveServer], big_database: Database
) -> None:
    big = start_server(big_database)
    with (
        big.client() as client,
        client.stream("GET", "/v1/exports/learners", params={"format": "parquet"}) as response,
    ):
        assert response.status_code == 200
        chunks = response.iter_raw()
        first = next(chunks)
        assert first.startswith(MAGIC)
        # The export still holds its snapshot: the rows are still being read.
        assert export_backends(big_database.url) != []
        body = first + b"".join(chunks)
    assert body.endswith(MAGIC)
    metadata = pq.ParquetFile(io.BytesIO(body)).metadata
    assert metadata.num_rows == BIG_LEARNERS
    sizes = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
    assert max(sizes) <= ROW_GROUP_ROWS


# Instants of every era PostgreSQL holds (BC, five- and six-digit years, whole seconds and single
# microseconds); infinities, and instants from the last that Parquet's microseconds since 1970
# (an int64) can hold, have no value.
EDGE_INSTANTS = [
    "0001-01-01 00:00:00+00",
    "1899-12-31 23:59:59.999999+00",
    "1900-01-01 00:00:00+00",
    "1969-12-31 23:59:59.999999+00",
    "2099-12-31 23:59:59.999999+00",
    "2100-01-01 00:00:00+00",
    "2024-02-29 12:00:00+00",
    "2024-02-29 12:00:00.000001+00",
    "9999-12-31 23:59:59.999999+00",
    "0044-03-15 12:00:00.5+00 BC",
    "4713-01-01 00:00:00+00 BC",
    "10000-01-01 00:00:00+00",
    "294247-01-10 04:00:54.775806+00",
    "294247-01-10 04:00:54.775807+00",
    "294276-12-31 23:59:59.999999+00",
    "infinity",
    "-infinity",
]


@pytest.fixture(scope="module")
def edge_client(database_url: str) -> Iterator[str]:
    with client_of(
        database_url, "edge", "last_login_at", EDGE_INSTANTS, "$3::text::timestamptz"
    ) as client:
        yield client


def test_parquet_keeps_every_instant_postgresql_can_hold(
    live: LiveServer, database_url: str, edge_client: str, tmp_path: Path
) -> None:
    body = download(live, client_id=edge_client, columns="full_name,last_login_at")
    table = pq.read_table(io.BytesIO(body)).sort_by("full_name")
    assert table.schema.field("last_login_at").type == pa.timestamp("us", tz="UTC")
    got = table.column("last_login_at").cast(pa.int64()).to_pylist()
    # Microseconds since 1970 from PostgreSQL's calendar: whole days, then the time of day
    # (both exact); None from 2^63 - 1 on, where an int64 (Parquet's timestamp) ends.
    stored = query(
        database_url,
        "SELECT (last_login_at AT TIME ZONE 'UTC')::date - date '1970-01-01',"
        " extract(epoch FROM (last_login_at AT TIME ZONE 'UTC')::time) * 1000000"
        " FROM public.learners WHERE client_id = $1 AND isfinite(last_login_at)"
        " ORDER BY full_name",
        edge_client,
    )
    micros = [days * 86_400_000_000 + int(time) for days, time in stored]
    want = [m if m < 2**63 - 1 else None for m in micros] + [None, None]  # ±infinity last
    assert want.count(None) == 4 and len(want) == len(EDGE_INSTANTS)
    assert got == want
    # DuckDB reads the same microseconds.
    path = tmp_path / "edges.parquet"
    path.write_bytes(body)
    with duckdb.connect() as conn:
        duck = conn.execute(
            "SELECT epoch_us(last_login_at) FROM read_parquet(?) ORDER BY full_name",
            [str(path)],
        ).fetchall()
    assert [r[0] for r in duck] == want


@pytest.mark.parametrize("kind", [Kind.TIMESTAMPTZ, Kind.TIMESTAMP])
def test_microseconds_read_through_float8_are_exact(database_url: str, kind: Kind) -> None:
    """The select list reads instants of FLOAT_EXACT_DAYS through float8: 200,000 random
    instants from 1800 to 2200 (inside that window and past both its ends), the window's ends
    and their neighbours each give PostgreSQL's own microseconds since 1970, whole days from
    its calendar plus the time of day in numeric."""
    zone = "+00" if kind is Kind.TIMESTAMPTZ else ""
    utc = " AT TIME ZONE 'UTC'" if kind is Kind.TIMESTAMPTZ else ""
    (cell,) = select([Column("x", kind, kind.value)], RenderOptions()).items
    ends = [
        f"{day} {time}{zone}"
        for day in FLOAT_EXACT_DAYS
        for time in ("00:00:00", "00:00:00.000001")
    ] + [f"1899-12-31 23:59:59.999999{zone}", f"2099-12-31 23:59:59.999999{zone}"]
    (row,) = query(
        database_url,
        f"SELECT count(*) AS n, count(*) FILTER (WHERE got IS DISTINCT FROM want) AS wrong,"
        f" count(*) FILTER (WHERE x >= $2::text::{kind.value}"
        f" AND x < $3::text::{kind.value}) AS inside"
        f" FROM (SELECT r.x, {cell} AS got,"
        f" ((r.x{utc})::date - date '1970-01-01')::numeric * 86400000000"
        f" + extract(epoch FROM (r.x{utc})::time) * 1000000 AS want"
        f" FROM (SELECT t::{kind.value} AS x FROM unnest($1::text[]) AS t"
        f" UNION ALL SELECT '1800-01-01 00:00:00{zone}'::{kind.value}"
        " + random() * interval '400 years' + (random() * 1000000)::int * interval '1 microsecond'"
        " FROM generate_series(1, 200000)) AS r) AS c",
        ends,
        f"{FLOAT_EXACT_DAYS[0]}{zone}",
        f"{FLOAT_EXACT_DAYS[1]}{zone}",
    )
    assert row["n"] == 200_006
    assert 90_000 < row["inside"] < 110_000
    assert row["wrong"] == 0
