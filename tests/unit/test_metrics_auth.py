"""Who may scrape /metrics: loopback only without a token setting; with one, exactly that bearer
token, from anywhere."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from learner_export.api.metrics import authorize_scrape, is_loopback
from learner_export.errors import Forbidden, Unauthorized
from tests.conftest import make_settings
from tests.db.test_metrics_auth import METRICS_TOKEN


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        (None, True),
        ("10.0.0.5", False),
        ("192.0.2.7", False),
        ("::ffff:192.0.2.7", False),
        ("2001:db8::1", False),
        ("testclient", False),
        ("", False),
    ],
)
def test_is_loopback(host: str | None, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_authorize_scrape_without_a_token_setting_admits_loopback_only() -> None:
    authorize_scrape(None, "127.0.0.1", "")
    with pytest.raises(Forbidden):
        authorize_scrape(None, "192.0.2.7", "")
    with pytest.raises(Forbidden):  # a bearer token means nothing when none is configured
        authorize_scrape(f"Bearer {METRICS_TOKEN}", "192.0.2.7", "")


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Basic " + METRICS_TOKEN,
        "Bearer " + METRICS_TOKEN[:-1],
        "Bearer " + METRICS_TOKEN + "x",
        "Bearer " + METRICS_TOKEN.upper(),
    ],
)
def test_authorize_scrape_with_a_token_setting_wants_exactly_it(authorization: str | None) -> None:
    with pytest.raises(Unauthorized):
        authorize_scrape(authorization, "127.0.0.1", METRICS_TOKEN)


def test_authorize_scrape_accepts_the_token_from_anywhere() -> None:
    authorize_scrape(f"Bearer {METRICS_TOKEN}", "192.0.2.7", METRICS_TOKEN)
    authorize_scrape(f"bearer  {METRICS_TOKEN} ", "127.0.0.1", METRICS_TOKEN)


def test_metrics_token_must_be_long() -> None:
    with pytest.raises(ValidationError, match="EXPORT_METRICS_TOKEN"):
        make_settings("postgresql://unused", metrics_token="short")
