"""The export's parameters parsed as the route and the CLI parse them, without a server: only
true and false are booleans, out-of-range values are refused before the database, and bom=true is
for CSV alone (refused for another format, as cursor=true is for XLSX, not silently ignored)."""

from __future__ import annotations

import pytest

from learner_export.contract import Contract
from learner_export.errors import InvalidParameter
from learner_export.params import parse_export_params
from tests.db.test_bad_input import BAD

ZONES = frozenset({"UTC"})


@pytest.mark.parametrize("fmt", ["jsonl", "xlsx", "parquet"])
def test_bom_outside_csv_is_refused(fmt: str) -> None:
    with pytest.raises(InvalidParameter) as raised:
        parse_export_params([("format", fmt), ("bom", "true")], Contract(()), time_zones=ZONES)
    assert raised.value.detail == [
        {"parameter": "bom", "message": "only csv exports start with a byte-order mark"}
    ]


def test_bom_false_is_accepted_with_any_format() -> None:
    params = parse_export_params(
        [("format", "xlsx"), ("bom", "false")], Contract(()), time_zones=ZONES
    )
    assert params.bom is False


def test_csv_takes_a_bom() -> None:
    params = parse_export_params(
        [("format", "csv"), ("bom", "true")], Contract(()), time_zones=ZONES
    )
    assert params.bom is True


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


@pytest.mark.parametrize(("query", "bad"), BAD)
def test_out_of_range_input_is_refused_before_the_database(query: str, bad: str) -> None:
    name, _, value = query.partition("=")
    value = value.replace("%2B", "+")
    contract = Contract(columns=())  # no column is needed to refuse these
    with pytest.raises(InvalidParameter) as refused:
        parse_export_params([(name, value)], contract, time_zones=frozenset({"UTC"}))
    assert bad in {p["parameter"] for p in refused.value.detail}
