"""/docs works offline: Swagger UI's files are served by the service, and the page shows the API."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx

from tests.chromium import browser, needs_chromium
from tests.conftest import LiveServer

# docs/img/docs-page.png is a copy of this, for the README.
SCREENSHOT = Path("/tmp/learner-export-docs.png")


def test_docs_uses_only_local_assets(live: LiveServer) -> None:
    page = httpx.get(live.url + "/docs")
    assert page.status_code == 200
    urls = re.findall(r'(?:src|href)="([^"]+)"', page.text) + re.findall(
        r"url: '([^']+)'", page.text
    )
    assert len(urls) >= 4  # script, stylesheet, icon, the OpenAPI document
    for url in urls:
        assert not urlsplit(url).netloc, f"{url} is not served by the service"
        asset = httpx.get(urljoin(live.url + "/docs", url))
        assert asset.status_code == 200, url
        assert len(asset.content) > 100
    assert httpx.get(live.url + "/docs/assets/..%2F__init__.py").status_code == 404
    assert httpx.get(live.url + "/docs/assets/index.html").status_code == 404
    assert httpx.get(live.url + "/redoc").status_code == 404


@needs_chromium
def test_chromium_shows_the_operations_without_the_network(live: LiveServer) -> None:
    outside: list[str] = []
    with browser() as chromium:
        page = chromium.new_page(viewport={"width": 1200, "height": 1000})

        def local_only(route: object) -> None:
            request = route.request  # type: ignore[attr-defined]
            if urlsplit(request.url).netloc != urlsplit(live.url).netloc:
                outside.append(request.url)
                route.abort()  # type: ignore[attr-defined]
            else:
                route.continue_()  # type: ignore[attr-defined]

        page.route("**/*", local_only)
        page.goto(live.url + "/docs")
        operation = page.get_by_text("/v1/exports/learners", exact=True).first
        operation.wait_for(timeout=30_000)
        assert page.get_by_text("/v1/exports/learners/links", exact=True).count() == 1
        page.screenshot(path=str(SCREENSHOT))
    assert outside == []
