"""A signed link that cannot be used: a browser gets a short page saying what to do, an API client
keeps the JSON."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from learner_export.auth import issue_token
from learner_export.links import LinkSigner, parse_secrets
from tests.chromium import browser, needs_chromium
from tests.conftest import JWT_SECRET, LINK_SECRETS, LiveServer

BROWSER_ACCEPT = (
    "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
)
DOWNLOAD = "/v1/exports/learners/download"


def _link(server: LiveServer, caller: str, expires_at: int) -> str:
    token = LinkSigner(parse_secrets(LINK_SECRETS)).sign(caller, [("limit", "1")], expires_at)
    return f"{server.url}{DOWNLOAD}?link={token}"


def expired(server: LiveServer, caller: str) -> str:
    return _link(server, caller, int(time.time()) - 5)


def tampered(server: LiveServer, caller: str) -> str:
    url = _link(server, caller, int(time.time()) + 60)
    return url[:-6] + ("AAAAAA" if not url.endswith("AAAAAA") else "BBBBBB")


def test_expired_link_in_a_browser_gets_a_page(live: LiveServer, seeded: str) -> None:
    response = httpx.get(expired(live, seeded), headers={"Accept": BROWSER_ACCEPT})
    assert response.status_code == 410
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["cache-control"] == "no-store"
    assert "<h1>This download link has expired</h1>" in response.text
    assert "Ask for a new link from the admin page" in response.text
    # Self-contained: nothing for the browser to fetch, from here or elsewhere.
    assert "src=" not in response.text and "href=" not in response.text
    assert "<link" not in response.text


def test_tampered_link_in_a_browser_gets_a_page(live: LiveServer, seeded: str) -> None:
    response = httpx.get(tampered(live, seeded), headers={"Accept": BROWSER_ACCEPT})
    assert response.status_code == 403
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "This download link cannot be used" in response.text
    assert "signature invalid" in response.text


@pytest.mark.parametrize(
    "accept", [None, "*/*", "application/json", "text/csv", "text/html;q=0, */*"]
)
def test_api_clients_keep_the_json(live: LiveServer, seeded: str, accept: str | None) -> None:
    headers = {"Accept": accept} if accept else {}
    response = httpx.get(expired(live, seeded), headers=headers)
    assert response.status_code == 410
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"] == "link_expired"


def test_only_the_download_link_answers_html(live: LiveServer) -> None:
    response = httpx.get(live.url + "/v1/exports/learners", headers={"Accept": BROWSER_ACCEPT})
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"


@needs_chromium
def test_chromium_shows_each_refusal(
    start_server: Callable[..., LiveServer], seeded: str, sql: Any
) -> None:
    server = start_server(role_cache_ttl_seconds=0)
    admin = str(uuid.uuid4())
    sql("INSERT INTO public.profiles (id, role) VALUES ($1, 'Admin')", admin)
    try:
        demoted = (
            server.url
            + httpx.post(
                server.url + "/v1/exports/learners/links",
                json={"limit": 1},
                headers={"Authorization": f"Bearer {issue_token(JWT_SECRET, admin)}"},
            ).json()["url"]
        )
        sql("UPDATE public.profiles SET role = 'Student' WHERE id = $1", admin)
        cases = [
            (expired(server, seeded), 410, "This download link has expired"),
            (tampered(server, seeded), 403, "This download link cannot be used"),
            (demoted, 403, "may not export learners"),
        ]
        with browser() as chromium:
            page = chromium.new_page(viewport={"width": 800, "height": 420})
            for number, (url, status, text) in enumerate(cases):
                response = page.goto(url)
                assert response is not None and response.status == status
                assert text in page.inner_text("main")
                assert "Ask for a new link from the admin page" in page.inner_text("main")
                page.screenshot(path=str(Path("/tmp") / f"link-error-{number}-{status}.png"))
    finally:
        sql("DELETE FROM public.profiles WHERE id = $1", admin)
