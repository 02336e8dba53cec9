"""GET /metrics: a bearer token of its own when EXPORT_METRICS_TOKEN is set, else loopback only."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx

from learner_export.api.app import create_app
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
