"""HEAD answers an export's headers and nothing else; booleans are true or false, as documented."""

from __future__ import annotations

import csv
import io

import pytest

from learner_export.contract import Contract
from learner_export.errors import InvalidParameter
from learner_export.params import parse_export_params
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


@pytest.mark.parametrize("word", ["yes", "no", "1", "0", "TRUE", "False", " true"])
def test_only_true_and_false_are_booleans(word: str) -> None:
    with pytest.raises(InvalidParameter) as raised:
        parse_export_params([("active", word)], Contract(()), time_zones=frozenset({"UTC"}))
    assert raised.value.detail == [{"parameter": "active", "message": "must be true or false"}]
    for name in ("bom", "cursor", "escape_formulas"):
        with pytest.raises(InvalidParameter):
            parse_export_params([(name, word)], Contract(()), time_zones=frozenset({"UTC"}))


def test_true_and_false_are() -> None:
    params = parse_export_params(
        [("active", "false"), ("bom", "true")], Contract(()), time_zones=frozenset({"UTC"})
    )
    assert params.active is False and params.bom is True
