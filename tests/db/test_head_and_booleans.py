"""HEAD answers an export's headers and nothing else; booleans are true or false, as documented."""

from __future__ import annotations

import csv
import io

from tests.conftest import LiveServer


def test_head_answers_the_headers_with_the_count(live: LiveServer, sql: object) -> None:
    with live.client() as client:
        head = client.head(
            "/v1/exports/learners",
            params={"format": "csv", "active": "true"},
            headers={"Prefer": "count=exact"},
        )
        got = client.get("/v1/exports/learners", params={"format": "csv", "active": "true"})
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-type"] == "text/csv; charset=utf-8"
    assert head.headers["content-disposition"].startswith("attachment; filename=")
    rows = list(csv.reader(io.StringIO(got.content.decode(), newline="")))
    assert int(head.headers["x-total-count"]) == len(rows) - 1 > 0
    with live.client() as client:
        refused = client.head("/v1/exports/learners", headers={"Authorization": "Bearer nope"})
    assert refused.status_code == 401
