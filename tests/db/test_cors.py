"""CORS from an allow-list: the admin UI may fetch, mint a link and download; others may not."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator

import httpx
import pytest

from learner_export.config import Settings
from tests.chromium import StaticPage, browser, needs_chromium
from tests.conftest import LiveServer
from tests.reference import NAMES

ADMIN_UI = "https://admin.example.com"
OTHER = "https://evil.example.net"
EXPOSED = {"content-disposition", "x-total-count", "content-range", "x-export-id", "x-request-id"}


@pytest.fixture(scope="module")
def admin_page() -> Iterator[StaticPage]:
    """The admin UI's page, on its own loopback origin."""
    with StaticPage() as page:
        yield page


@pytest.fixture(scope="module")
def server(start_server: Callable[..., LiveServer], admin_page: StaticPage) -> LiveServer:
    return start_server(cors_origins=f"{ADMIN_UI}, {admin_page.origin}")


def preflight(
    server: LiveServer, path: str, origin: str, method: str, headers: str
) -> httpx.Response:
    return httpx.options(
        server.url + path,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": headers,
        },
    )


def cors_headers(response: httpx.Response) -> set[str]:
    return {name for name in response.headers if name.startswith("access-control-")}


@pytest.mark.parametrize(
    ("path", "method", "headers"),
    [
        ("/v1/exports/learners/links", "POST", "authorization,content-type,x-request-id"),
        ("/v1/exports/learners", "GET", "authorization,prefer"),
        ("/v1/exports/learners", "HEAD", "authorization"),
    ],
)
def test_preflight_from_the_admin_ui_is_allowed(
    server: LiveServer, path: str, method: str, headers: str
) -> None:
    response = preflight(server, path, ADMIN_UI, method, headers)
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == ADMIN_UI
    assert method in response.headers["access-control-allow-methods"]
    allowed = {
        h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")
    }
    assert set(headers.split(",")) <= allowed
    assert "access-control-allow-credentials" not in response.headers
    assert "Origin" in response.headers["vary"]


@pytest.mark.parametrize(
    ("origin", "method", "headers", "reason"),
    [
        (OTHER, "POST", "authorization,content-type", "not in EXPORT_CORS_ORIGINS"),
        (ADMIN_UI + ":8443", "POST", "authorization", "not in EXPORT_CORS_ORIGINS"),
        (ADMIN_UI, "DELETE", "authorization", "method DELETE"),
        (ADMIN_UI, "POST", "authorization,cookie,x-debug", "cookie, x-debug"),
    ],
)
def test_preflight_that_cannot_be_allowed_is_refused_without_cors_headers(
    server: LiveServer, origin: str, method: str, headers: str, reason: str
) -> None:
    response = preflight(server, "/v1/exports/learners/links", origin, method, headers)
    assert response.status_code == 403
    assert response.json()["error"] == "cors_refused"
    assert reason in response.json()["detail"]
    assert cors_headers(response) == set()


def test_allowed_origin_reads_the_exposed_headers(server: LiveServer) -> None:
    with server.client() as client:
        response = client.get(
            "/v1/exports/learners",
            params={"limit": "2"},
            headers={"Origin": ADMIN_UI, "Prefer": "count=exact"},
        )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ADMIN_UI
    exposed = {
        h.strip().lower() for h in response.headers["access-control-expose-headers"].split(",")
    }
    assert exposed == EXPOSED
    assert "access-control-allow-credentials" not in response.headers


def test_errors_reach_the_allowed_origin_too(server: LiveServer) -> None:
    """A 401 the page cannot read would look like a network failure to the admin UI."""
    response = httpx.post(
        server.url + "/v1/exports/learners/links", json={}, headers={"Origin": ADMIN_UI}
    )
    assert response.status_code == 401
    assert response.headers["access-control-allow-origin"] == ADMIN_UI


def test_other_origins_get_no_cors_headers(server: LiveServer, live: LiveServer) -> None:
    with server.client() as client:
        response = client.get(
            "/v1/exports/learners", params={"limit": "1"}, headers={"Origin": OTHER}
        )
    assert response.status_code == 200
    assert cors_headers(response) == set()
    # The default: no origin at all is allowed.
    assert Settings().cors_origin_list == ()
    assert preflight(live, "/v1/exports/learners", ADMIN_UI, "GET", "").status_code == 403


PAGE = """<!DOCTYPE html>
<html><body>
<a id="download" href="#">Download</a>
<pre id="status">working</pre>
<script>
const api = %(api)s, token = %(token)s;
async function run() {
  try {
    const counted = await fetch(api + "/v1/exports/learners?limit=3", {
      headers: {Authorization: "Bearer " + token, Prefer: "count=exact",
                "X-Request-Id": "from-the-admin-page"}});
    await counted.text();
    const made = await fetch(api + "/v1/exports/learners/links", {
      method: "POST",
      headers: {Authorization: "Bearer " + token, "Content-Type": "application/json"},
      body: JSON.stringify({format: "csv", limit: 50})});
    const link = await made.json();
    // Without EXPORT_PUBLIC_URL the link is relative to the service, not to this page.
    document.getElementById("download").href = new URL(link.url, api).href;
    document.getElementById("status").textContent = JSON.stringify({
      status: made.status, total: counted.headers.get("X-Total-Count"),
      disposition: counted.headers.get("Content-Disposition"),
      requestId: counted.headers.get("X-Request-Id")});
  } catch (error) {
    document.getElementById("status").textContent = "failed: " + error;
  }
}
run();
</script>
</body></html>
"""


def _run_page(page_server: StaticPage, server: LiveServer) -> tuple[str, bytes | None]:
    """Open the page in Chromium; what its script reported, and the linked download's bytes."""
    page_server.html = PAGE % {"api": json.dumps(server.url), "token": json.dumps(server.token)}
    with browser() as chromium:
        page = chromium.new_context(accept_downloads=True).new_page()
        page.goto(page_server.origin + "/")
        page.wait_for_function(
            "document.getElementById('status').textContent !== 'working'", timeout=30_000
        )
        status = page.inner_text("#status")
        if status.startswith("failed"):
            return status, None
        with page.expect_download(timeout=30_000) as info:
            page.click("#download")
        download = info.value
        assert download.failure() is None
        assert download.suggested_filename.startswith("learners-all-")
        with open(download.path(), "rb") as saved:
            return status, saved.read()


@needs_chromium
def test_the_admin_page_mints_a_link_and_downloads_it(
    server: LiveServer, admin_page: StaticPage
) -> None:
    status, content = _run_page(admin_page, server)
    reported = json.loads(status)
    assert reported["status"] == 200
    assert int(reported["total"]) > 0
    assert reported["disposition"].startswith('attachment; filename="learners-all-')
    assert reported["requestId"] == "from-the-admin-page"
    assert content is not None
    header = ",".join(NAMES).encode()
    assert content.startswith(header + b"\r\n")
    assert len(list(csv.reader(io.StringIO(content.decode(), newline="")))) == 51


@needs_chromium
def test_a_page_from_another_origin_cannot_call_the_api(server: LiveServer) -> None:
    with StaticPage() as stranger:
        status, content = _run_page(stranger, server)
    assert status == "failed: TypeError: Failed to fetch"
    assert content is None
