"""GET /metrics: a bearer token of its own when EXPORT_METRICS_TOKEN is set, else loopback only."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest
from pydantic import ValidationError

from learner_export.api.app import create_app
from learner_export.api.metrics import authorize_scrape, is_loopback
from learner_export.errors import Forbidden, Unauthorized
from tests.conftest import LiveServer, make_settings

METRICS_TOKEN = "scrape-" + "m" * 40


def scrape_from(
    client_host: str, database_url: str, authorization: str | None = None, **overrides: str
) -> httpx.Response:
    """GET /metrics on a fresh app as a client at `client_host` (no server: the address is
    what the scraper's connection would carry)."""
    app = create_app(make_settings(database_url, **overrides))

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=(client_host, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            headers = {"Authorization": authorization} if authorization else {}
            return await client.get("/metrics", headers=headers)

    return asyncio.run(go())


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


def test_by_default_metrics_answer_loopback_clients_only(database_url: str) -> None:
    assert scrape_from("127.0.0.1", database_url).status_code == 200
    refused = scrape_from("192.0.2.7", database_url)
    assert refused.status_code == 403
    assert refused.json()["error"] == "forbidden"
    assert "EXPORT_METRICS_TOKEN" in refused.json()["detail"]
    assert "learner_export" not in refused.text


def test_with_a_token_metrics_need_it_from_any_client(database_url: str) -> None:
    for host in ("127.0.0.1", "192.0.2.7"):
        refused = scrape_from(host, database_url, metrics_token=METRICS_TOKEN)
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Bearer")
        assert "learner_export" not in refused.text
        wrong = scrape_from(host, database_url, "Bearer " + "x" * 47, metrics_token=METRICS_TOKEN)
        assert wrong.status_code == 401
        admitted = scrape_from(
            host, database_url, f"Bearer {METRICS_TOKEN}", metrics_token=METRICS_TOKEN
        )
        assert admitted.status_code == 200
        assert "learner_export_exports_total" in admitted.text


def test_a_running_server_with_a_metrics_token(start_server: Callable[..., LiveServer]) -> None:
    server = start_server(metrics_token=METRICS_TOKEN)
    with httpx.Client(base_url=server.url, timeout=10) as client:
        assert client.get("/metrics").status_code == 401
        # The export's own bearer token is not the metrics token.
        assert (
            client.get("/metrics", headers={"Authorization": f"Bearer {server.token}"}).status_code
            == 401
        )
        scraped = client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain")
    assert "learner_export_pool_connections" in scraped.text
