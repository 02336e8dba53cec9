"""Signed download links: made with a token, followed without one, refused when touched."""

from __future__ import annotations

import base64
import shutil
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from service.auth import issue_token
from service.links import LinkSigner, parse_secrets
from tests.conftest import JWT_SECRET, LINK_SECRETS, LiveServer


def make_link(server: LiveServer, token: str | None = None, **body: Any) -> httpx.Response:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        return client.post("/v1/exports/learners/links", json=body,
                           headers={"Authorization": f"Bearer {token or server.token}"})


def follow(url: str) -> httpx.Response:
    with httpx.Client(timeout=60, headers={"Accept-Encoding": "identity"}) as client:
        return client.get(url)


def test_link_downloads_without_a_header_what_the_token_would(live: LiveServer) -> None:
    made = make_link(live, format="jsonl", active=True, columns=["learner_id", "full_name"],
                     limit=300)
    assert made.status_code == 200, made.text
    link = made.json()
    assert link["url"].startswith(live.url + "/v1/exports/learners/download?link=")
    assert 290 <= (time.mktime(time.strptime(link["expires_at"][:19], "%Y-%m-%dT%H:%M:%S"))
                   - time.mktime(time.gmtime())) <= 301
    got = follow(link["url"])
    assert got.status_code == 200
    assert got.headers["content-disposition"].startswith('attachment; filename="learners-')
    with live.client() as client:
        direct = client.get("/v1/exports/learners", params={
            "format": "jsonl", "active": "true", "columns": "learner_id,full_name",
            "limit": "300"})
    assert got.content == direct.content
    assert got.content.count(b"\n") == 300


def _tampered(url: str, change: Callable[[dict[str, Any]], None]) -> str:
    prefix, token = url.split("link=")
    kid, payload, signature = token.split(".")
    content = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    change(content)
    forged = base64.urlsafe_b64encode(orjson.dumps(content)).rstrip(b"=").decode()
    return f"{prefix}link={kid}.{forged}.{signature}"


@pytest.mark.parametrize("change", [
    lambda c: c["q"].__setitem__(0, ["format", "csv"]),
    lambda c: c["q"].append(["client_id", str(uuid.uuid4())]),
    lambda c: c["q"].remove(["limit", "5"]),
    lambda c: c["q"].__setitem__(2, ["limit", "500000"]),
    lambda c: c["q"].__setitem__(1, ["columns", "learner_id,email,phone"]),
    lambda c: c.__setitem__("exp", c["exp"] + 3600),
    lambda c: c.__setitem__("sub", str(uuid.uuid4())),
], ids=["format", "client", "no-limit", "limit", "columns", "expiry", "caller"])
def test_tampered_link_gets_403_and_no_rows(live: LiveServer, change: Any) -> None:
    url = make_link(live, format="jsonl", columns="learner_id", limit=5).json()["url"]
    assert follow(url).status_code == 200
    response = follow(_tampered(url, change))
    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"
    assert b"learner_id" not in response.content


@pytest.mark.parametrize("mangle", [
    lambda u: u[:-3] + ("AAA" if not u.endswith("AAA") else "BBB"),
    lambda u: u.replace("link=k2.", "link=k1."),
    lambda u: u.split("link=")[0] + "link=nonsense",
    lambda u: u + "&format=csv",
], ids=["signature", "other-kid", "garbage", "extra-parameter"])
def test_altered_link_is_refused(live: LiveServer, mangle: Callable[[str], str]) -> None:
    url = make_link(live, limit=1).json()["url"]
    response = follow(mangle(url))
    assert response.status_code in (400, 403)
    assert response.json()["error"] in ("forbidden", "invalid_parameter")


def test_expired_link_gets_410(live: LiveServer, seeded: str) -> None:
    signer = LinkSigner(parse_secrets(LINK_SECRETS))
    token = signer.sign(seeded, [("limit", "1")], int(time.time()) - 1)
    response = follow(f"{live.url}/v1/exports/learners/download?link={token}")
    assert response.status_code == 410
    assert response.json()["error"] == "link_expired"


def test_rotated_keys_keep_old_links_until_the_key_is_retired(
        live: LiveServer, start_server: Callable[..., LiveServer], seeded: str) -> None:
    old_signer = LinkSigner(parse_secrets("k1:" + "o" * 40))
    token = old_signer.sign(seeded, [("limit", "2"), ("format", "jsonl")],
                            int(time.time()) + 60)
    assert follow(f"{live.url}/v1/exports/learners/download?link={token}").status_code == 200
    retired = start_server(link_secrets="k2:" + "n" * 40)
    response = follow(f"{retired.url}/v1/exports/learners/download?link={token}")
    assert response.status_code == 403
    assert "no longer accepted" in response.json()["detail"]


def test_demoted_callers_link_stops_working(start_server: Callable[..., LiveServer],
                                            sql: Any) -> None:
    server = start_server(role_cache_ttl_seconds=0)
    admin = str(uuid.uuid4())
    sql("INSERT INTO public.profiles (id, role) VALUES ($1, 'Admin')", admin)
    try:
        url = make_link(server, issue_token(JWT_SECRET, admin), limit=1).json()["url"]
        assert follow(url).status_code == 200
        sql("UPDATE public.profiles SET role = 'Student' WHERE id = $1", admin)
        assert follow(url).status_code == 403
        rows = sql("SELECT via_link, outcome FROM learner_export.export_audit WHERE caller_id = $1"
                   " ORDER BY started_at", admin)
        assert [(r["via_link"], r["outcome"]) for r in rows] == [(True, "completed"),
                                                                 (True, "denied")]
    finally:
        sql("DELETE FROM public.profiles WHERE id = $1", admin)


@pytest.mark.parametrize(("body", "status"), [
    ({"format": "pdf"}, 400), ({"limit": -1}, 400), ({"expires_in": 999_999}, 400),
    ({"expires_in": 0}, 400), ({"sort": "name"}, 400), ({"client_id": ["x"]}, 400),
])
def test_bad_link_requests(live: LiveServer, body: dict[str, Any], status: int) -> None:
    response = make_link(live, **body)
    assert response.status_code == status
    assert response.json()["error"] == "invalid_parameter"


def test_links_need_a_bearer_token_and_an_export_role(live: LiveServer, sql: Any) -> None:
    with httpx.Client(base_url=live.url) as client:
        assert client.post("/v1/exports/learners/links", json={}).status_code == 401
    student = str(uuid.uuid4())
    sql("INSERT INTO public.profiles (id, role) VALUES ($1, 'Student')", student)
    try:
        assert make_link(live, issue_token(JWT_SECRET, student)).status_code == 403
    finally:
        sql("DELETE FROM public.profiles WHERE id = $1", student)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")
def test_browser_saves_the_linked_export_under_its_file_name(live: LiveServer,
                                                             tmp_path: Path) -> None:
    playwright = pytest.importorskip("playwright.sync_api")
    url = make_link(live, format="csv").json()["url"]
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_context(accept_downloads=True).new_page()
            with page.expect_download(timeout=60_000) as info:
                try:
                    page.goto(url)
                except Exception as exc:  # navigating to an attachment "fails" by design
                    assert "Download is starting" in str(exc)
            download = info.value
            assert download.failure() is None
            saved = tmp_path / download.suggested_filename
            download.save_as(saved)
        finally:
            browser.close()
    assert saved.name.startswith("learners-") and saved.suffix == ".csv"
    with live.client() as client:
        direct = client.get("/v1/exports/learners", params={"format": "csv"}).content
    assert saved.read_bytes() == direct
