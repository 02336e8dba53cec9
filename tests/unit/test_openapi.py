"""The OpenAPI document as /docs shows it: HEAD of the export is there with the same parameters
as GET, and limit's maximum is a number JavaScript shows exactly."""

from __future__ import annotations

from learner_export.api.app import create_app
from learner_export.api.openapi import build_openapi
from tests.conftest import make_settings


def _document() -> dict[str, object]:
    # No database is reached: the app connects when it starts serving, not when it is made.
    return build_openapi(create_app(make_settings("postgresql://nobody@127.0.0.1:1/none")))


def test_head_is_documented_with_the_parameters_of_get() -> None:
    export = _document()["paths"]["/v1/exports/learners"]  # type: ignore[index]
    assert sorted(export) == ["get", "head"]
    names = [[p["name"] for p in export[m]["parameters"]] for m in ("get", "head")]
    assert names[0] == names[1]
    assert export["head"]["security"] == [{"bearerAuth": []}]


def test_limits_maximum_survives_javascript() -> None:
    export = _document()["paths"]["/v1/exports/learners"]  # type: ignore[index]
    (limit,) = [p for p in export["get"]["parameters"] if p["name"] == "limit"]
    maximum = limit["schema"]["maximum"]
    assert maximum == 2**53 - 1
    assert float(maximum) == maximum  # a double holds it exactly, as /docs's JavaScript does
