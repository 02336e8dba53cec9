"""bom=true is for CSV alone: asked of another format it is refused, as cursor=true is for
XLSX, rather than silently ignored."""

from __future__ import annotations

import pytest

from learner_export.contract import Contract
from learner_export.errors import InvalidParameter
from learner_export.params import parse_export_params

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
