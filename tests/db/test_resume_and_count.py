"""`Prefer: count=exact` totals, and resuming after a row's cursor."""

from __future__ import annotations

import csv
import io
from typing import Any

import orjson
import pytest

from tests.conftest import SEED_LEARNERS, LiveServer


def jsonl(
    server: LiveServer, headers: dict[str, str] | None = None, **params: Any
) -> tuple[Any, list[dict[str, Any]]]:
    with server.client() as client:
        response = client.get(
            "/v1/exports/learners", params={"format": "jsonl", **params}, headers=headers or {}
        )
    assert response.status_code == 200, response.text
    return response, [orjson.loads(line) for line in response.content.splitlines()]


@pytest.mark.parametrize(
    "params", [{}, {"active": "true"}, {"limit": "17"}, {"created_from": "2099-01-01"}]
)
def test_prefer_count_exact_totals_the_rows_sent(live: LiveServer, params: dict[str, str]) -> None:
    response, rows = jsonl(live, headers={"Prefer": "count=exact"}, **params)
    total = int(response.headers["x-total-count"])
    assert total == len(rows)
    expected_range = f"0-{total - 1}/{total}" if total else "*/0"
    assert response.headers["content-range"] == expected_range
    assert response.headers["preference-applied"] == "count=exact"


def test_no_count_unless_asked(live: LiveServer) -> None:
    response, _ = jsonl(live, limit="3")
    assert "x-total-count" not in response.headers
    assert "content-range" not in response.headers


def test_resuming_after_any_row_gives_exactly_the_rest(live: LiveServer) -> None:
    _, everything = jsonl(live, cursor="true", columns="learner_id,created_at")
    assert len(everything) == SEED_LEARNERS
    assert list(everything[0]) == ["learner_id", "created_at", "_cursor"]
    for cut in (0, 1, 99, 100, 101, 2345, SEED_LEARNERS - 1):
        _, rest = jsonl(live, cursor="true", columns="learner_id", after=everything[cut]["_cursor"])
        assert [r["learner_id"] for r in rest] == [r["learner_id"] for r in everything[cut + 1 :]]


def test_csv_cursor_column_resumes_too(live: LiveServer) -> None:
    with live.client() as client:
        body = client.get(
            "/v1/exports/learners", params={"format": "csv", "cursor": "true", "columns": "notes"}
        ).text
    rows = list(csv.reader(io.StringIO(body, newline="")))
    assert rows[0] == ["notes", "_cursor"]
    with live.client() as client:
        rest = client.get(
            "/v1/exports/learners",
            params={"format": "csv", "cursor": "true", "columns": "notes", "after": rows[10][1]},
        ).text
    assert list(csv.reader(io.StringIO(rest, newline="")))[1:] == rows[11:]


@pytest.mark.parametrize(
    ("params", "bad"),
    [
        ({"after": "bm9wZQ"}, "after"),
        ({"after": "!!!"}, "after"),
        ({"format": "xlsx", "cursor": "true"}, "cursor"),
        ({"cursor": "perhaps"}, "cursor"),
    ],
)
def test_bad_cursor_parameters(live: LiveServer, params: dict[str, str], bad: str) -> None:
    with live.client() as client:
        response = client.get("/v1/exports/learners", params=params)
    assert response.status_code == 400
    assert bad in {p["parameter"] for p in response.json()["detail"]}
