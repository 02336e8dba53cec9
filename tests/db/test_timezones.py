"""`tz`: date-times in the caller's zone, across a daylight-saving change, in every format."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime

import openpyxl
import orjson
import pyarrow.parquet as pq
import pytest

from tests.conftest import LiveServer, client_of

# Sydney leaves daylight saving at 2024-04-07 03:00 (+11:00) → 02:00 (+10:00): 02:30 happens
# twice, an hour apart. And it starts again at 2024-10-06 02:00 (+10:00) → 03:00 (+11:00).
INSTANTS = [
    datetime(2024, 4, 6, 15, 30, tzinfo=UTC),  # 02:30+11:00
    datetime(2024, 4, 6, 16, 30, tzinfo=UTC),  # 02:30+10:00
    datetime(2024, 10, 5, 16, 30, tzinfo=UTC),
]  # 03:30+11:00
SYDNEY = [
    "2024-04-07T02:30:00.000000+11:00",
    "2024-04-07T02:30:00.000000+10:00",
    "2024-10-06T03:30:00.000000+11:00",
]


@pytest.fixture(scope="module")
def dst_client(database_url: str) -> Iterator[str]:
    with client_of(database_url, "dst", "created_at", INSTANTS) as client:
        yield client


def export(live: LiveServer, client: str, **params: str) -> bytes:
    response = live.export(client_id=client, columns="full_name,created_at", **params)
    assert response.status_code == 200, response.text
    return response.content


def test_csv_and_json_lines_carry_the_zones_offset(live: LiveServer, dst_client: str) -> None:
    body = export(live, dst_client, format="csv", tz="Australia/Sydney")
    rows = list(csv.reader(io.StringIO(body.decode(), newline="")))
    assert [r[1] for r in rows[1:]] == SYDNEY
    lines = export(live, dst_client, format="jsonl", tz="Australia/Sydney").splitlines()
    assert [orjson.loads(line)["created_at"] for line in lines] == SYDNEY
    # The same instants as in UTC.
    utc = list(csv.reader(io.StringIO(export(live, dst_client).decode(), newline="")))
    assert [datetime.fromisoformat(r[1]) for r in utc[1:]] == INSTANTS
    assert [datetime.fromisoformat(s) for s in SYDNEY] == INSTANTS


def test_xlsx_shows_wall_clock_time_and_says_which_zone(live: LiveServer, dst_client: str) -> None:
    body = export(live, dst_client, format="xlsx", tz="Australia/Sydney")
    sheet = openpyxl.load_workbook(io.BytesIO(body), read_only=True).active
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0] == ("full_name", "created_at (Australia/Sydney)")
    assert [r[1] for r in rows[1:]] == [
        datetime(2024, 4, 7, 2, 30),
        datetime(2024, 4, 7, 2, 30),
        datetime(2024, 10, 6, 3, 30),
    ]


def test_parquet_keeps_the_instants_and_records_the_zone(live: LiveServer, dst_client: str) -> None:
    table = pq.read_table(
        io.BytesIO(export(live, dst_client, format="parquet", tz="Australia/Sydney"))
    )
    assert str(table.schema.field("created_at").type) == "timestamp[us, tz=Australia/Sydney]"
    assert [v.astimezone(UTC) for v in table.column("created_at").to_pylist()] == INSTANTS


def test_the_cursor_resumes_across_the_change(live: LiveServer, dst_client: str) -> None:
    body = export(live, dst_client, format="csv", tz="Australia/Sydney", cursor="true", limit="1")
    cursor = list(csv.reader(io.StringIO(body.decode(), newline="")))[1][-1]
    rest = export(live, dst_client, format="csv", tz="Australia/Sydney", after=cursor)
    assert [r[1] for r in list(csv.reader(io.StringIO(rest.decode(), newline="")))[1:]] == SYDNEY[
        1:
    ]


def test_an_unknown_zone_is_a_400_naming_it(live: LiveServer) -> None:
    with live.client() as c:
        response = c.get("/v1/exports/learners", params={"tz": "Mars/Olympus_Mons"})
    assert response.status_code == 400
    [problem] = response.json()["detail"]
    assert problem["parameter"] == "tz" and "Mars/Olympus_Mons" in problem["message"]
