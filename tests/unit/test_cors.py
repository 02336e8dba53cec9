"""CORS origins as configured: parsed from the environment, and an origin that could never match
refused at start."""

from __future__ import annotations

import pytest

from learner_export.config import Settings


@pytest.mark.parametrize(
    "bad",
    [
        "https://admin.example.com/",
        "*",
        "admin.example.com",
        "https://Admin.example.com",
        "https://a.example.com/path",
    ],
)
def test_an_origin_that_could_never_match_is_a_configuration_error(bad: str) -> None:
    with pytest.raises(ValueError, match="not an exact origin"):
        Settings(cors_origins=f"https://ok.example.com,{bad}")


def test_origins_parse_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPORT_CORS_ORIGINS", " https://a.example.com ,http://127.0.0.1:3000,")
    assert Settings().cors_origin_list == ("https://a.example.com", "http://127.0.0.1:3000")
