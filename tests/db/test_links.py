"""Signed download links: made with a token, followed without one, refused when touched."""

from __future__ import annotations

import base64
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from learner_export.auth import issue_token
from learner_export.links import LinkSigner, parse_secrets
from tests.conftest import JWT_SECRET, LINK_SECRETS, Database, LiveServer, server_process


def make_link(server: LiveServer, token: str | None = None, **body: Any) -> httpx.Response:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        return client.post(
            "/v1/exports/learners/links",
            json=body,
            headers={"Authorization": f"Bearer {token or server.token}"},
        )


def link_url(server: LiveServer, token: str | None = None, **body: Any) -> str:
    """A new link's absolute URL (the service hands out relative ones without a public URL)."""
    made = make_link(server, token, **body)
    assert made.status_code == 200, made.text
    url: str = made.json()["url"]
    return url if "://" in url else server.url + url


def follow(url: str) -> httpx.Response:
    with httpx.Client(timeout=60, headers={"Accept-Encoding": "identity"}) as client:
        return client.get(url)


def test_link_downloads_without_a_header_what_the_token_would(live: LiveServer) -> None:
    made = make_link(
        live, format="jsonl", active=True, columns=["learner_id", "full_name"], limit=300
    )
    assert made.status_code == 200, made.text
    link = made.json()
    assert link["url"].startswith("/v1/exports/learners/download?link=")
    assert (
        290
        <= (
            time.mktime(time.strptime(link["expires_at"][:19], "%Y-%m-%dT%H:%M:%S"))
            - time.mktime(time.gmtime())
        )
        <= 301
    )
    got = follow(live.url + link["url"])
    assert got.status_code == 200
    assert got.headers["content-disposition"].startswith('attachment; filename="learners-')
    with live.client() as client:
        direct = client.get(
            "/v1/exports/learners",
            params={
                "format": "jsonl",
                "active": "true",
                "columns": "learner_id,full_name",
                "limit": "300",
            },
        )
    assert got.content == direct.content
    assert got.content.count(b"\n") == 300


def _tampered(url: str, change: Callable[[dict[str, Any]], None]) -> str:
    prefix, token = url.split("link=")
    kid, payload, signature = token.split(".")
    content = orjson.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    change(content)
    forged = base64.urlsafe_b64encode(orjson.dumps(content)).rstrip(b"=").decode()
    return f"{prefix}link={kid}.{forged}.{signature}"


@pytest.mark.parametrize(
    "change",
    [
        lambda c: c["q"].__setitem__(0, ["format", "csv"]),
        lambda c: c["q"].append(["client_id", str(uuid.uuid4())]),
        lambda c: c["q"].remove(["limit", "5"]),
        lambda c: c["q"].__setitem__(2, ["limit", "500000"]),
        lambda c: c["q"].__setitem__(1, ["columns", "learner_id,email,phone"]),
        lambda c: c.__setitem__("exp", c["exp"] + 3600),
        lambda c: c.__setitem__("sub", str(uuid.uuid4())),
    ],
    ids=["format", "client", "no-limit", "limit", "columns", "expiry", "caller"],
)
def test_tampered_link_gets_403_and_no_rows(live: LiveServer, change: Any) -> None:
    url = link_url(live, format="jsonl", columns="learner_id", limit=5)
    assert follow(url).status_code == 200
    response = follow(_tampered(url, change))
    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"
    assert b"learner_id" not in response.content


@pytest.mark.parametrize(
    ("mangle", "status", "error"),
    [
        (lambda u: u[:-3] + ("AAA" if not u.endswith("AAA") else "BBB"), 403, "forbidden"),
        (lambda u: u.replace("link=k2.", "link=k1."), 403, "forbidden"),
        (lambda u: u.split("link=")[0] + "link=nonsense", 403, "forbidden"),
        (lambda u: u + "&format=csv", 400, "invalid_parameter"),
    ],
    ids=["signature", "other-kid", "garbage", "extra-parameter"],
)
def test_altered_link_is_refused(
    live: LiveServer, mangle: Callable[[str], str], status: int, error: str
) -> None:
    url = link_url(live, limit=1)
    response = follow(mangle(url))
    assert (response.status_code, response.json()["error"]) == (status, error)


def test_expired_link_gets_410(live: LiveServer, seeded: str) -> None:
    signer = LinkSigner(parse_secrets(LINK_SECRETS))
    token = signer.sign(seeded, [("limit", "1")], int(time.time()) - 1)
    response = follow(f"{live.url}/v1/exports/learners/download?link={token}")
    assert response.status_code == 410
    assert response.json()["error"] == "link_expired"


def test_rotated_keys_keep_old_links_until_the_key_is_retired(
    live: LiveServer, start_server: Callable[..., LiveServer], seeded: str
) -> None:
    old_signer = LinkSigner(parse_secrets("k1:" + "o" * 40))
    token = old_signer.sign(seeded, [("limit", "2"), ("format", "jsonl")], int(time.time()) + 60)
    assert follow(f"{live.url}/v1/exports/learners/download?link={token}").status_code == 200
    retired = start_server(link_secrets="k2:" + "n" * 40)
    response = follow(f"{retired.url}/v1/exports/learners/download?link={token}")
    assert response.status_code == 403
    assert "no longer accepted" in response.json()["detail"]


def test_demoted_callers_link_stops_working(
    start_server: Callable[..., LiveServer], sql: Any
) -> None:
    server = start_server(role_cache_ttl_seconds=0)
    admin = str(uuid.uuid4())
    sql("INSERT INTO public.profiles (id, role) VALUES ($1, 'Admin')", admin)
    try:
        url = link_url(server, issue_token(JWT_SECRET, admin), limit=1)
        assert follow(url).status_code == 200
        sql("UPDATE public.profiles SET role = 'Student' WHERE id = $1", admin)
        assert follow(url).status_code == 403
        rows = sql(
            "SELECT via_link, outcome FROM learner_export.export_audit WHERE caller_id = $1"
            " ORDER BY started_at",
            admin,
        )
        assert [(r["via_link"], r["outcome"]) for r in rows] == [
            (True, "completed"),
            (True, "denied"),
        ]
    finally:
        sql("DELETE FROM public.profiles WHERE id = $1", admin)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"format": "pdf"}, 400),
        ({"limit": -1}, 400),
        ({"expires_in": 999_999}, 400),
        ({"expires_in": 0}, 400),
        ({"sort": "name"}, 400),
        ({"client_id": ["x"]}, 400),
    ],
)
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
def test_browser_saves_the_linked_export_under_its_file_name(
    live: LiveServer, tmp_path: Path
) -> None:
    playwright = pytest.importorskip("playwright.sync_api")
    url = link_url(live, format="csv")
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
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


# --- Strictness (issue 14): each test below fails against the lenient links it replaced. ---

SIGNER = LinkSigner(parse_secrets(LINK_SECRETS))
B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _with_unused_bits_set(token: str) -> str:
    """The same signature bytes, written with the last character's 2 unused bits changed."""
    last = B64URL.index(token[-1])
    return token[:-1] + B64URL[last ^ 1]


@pytest.mark.parametrize("suffix", ["!!", "%3D", "%21%21"])
def test_a_link_with_a_non_canonical_signature_is_refused(live: LiveServer, suffix: str) -> None:
    url = link_url(live, limit=1)
    assert follow(url).status_code == 200
    response = follow(url + suffix)
    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"


def test_a_link_given_twice_gets_400_naming_it(live: LiveServer) -> None:
    first = link_url(live, limit=1).split("link=")[1]
    second = link_url(live, limit=2).split("link=")[1]
    for query in (f"link={first}&link={first}", f"link={second}&link={first}"):
        response = follow(f"{live.url}/v1/exports/learners/download?{query}")
        assert response.status_code == 400
        assert response.json() == {
            "error": "invalid_parameter",
            "detail": [{"parameter": "link", "message": "given more than once"}],
        }


@pytest.mark.parametrize("extra", ["format=csv", "Link=x", "link2=", "after=abc"])
def test_any_parameter_beside_the_link_gets_400_naming_it(live: LiveServer, extra: str) -> None:
    response = follow(link_url(live, limit=1) + "&" + extra)
    assert response.status_code == 400
    assert response.json()["detail"] == [
        {"parameter": extra.split("=")[0], "message": "unknown parameter"}
    ]


def test_the_link_never_points_at_the_host_the_caller_names(
    live: LiveServer, start_server: Callable[..., LiveServer]
) -> None:
    headers = {
        "Authorization": f"Bearer {live.token}",
        "Host": "evil.example",
        "X-Forwarded-Host": "evil.example",
        "X-Forwarded-Proto": "https",
    }
    with httpx.Client(base_url=live.url, timeout=30) as client:
        made = client.post("/v1/exports/learners/links", json={"limit": 1}, headers=headers)
    assert made.status_code == 200
    assert made.json()["url"].startswith("/v1/exports/learners/download?link=")
    assert "evil" not in made.json()["url"]

    public = start_server(public_url="https://exports.example.org/")
    with httpx.Client(base_url=public.url, timeout=30) as client:
        made = client.post(
            "/v1/exports/learners/links",
            json={"limit": 1},
            headers={**headers, "Authorization": f"Bearer {public.token}"},
        )
    url = made.json()["url"]
    assert url.startswith("https://exports.example.org/v1/exports/learners/download?link=")
    assert follow(url.replace("https://exports.example.org", public.url)).status_code == 200


@pytest.fixture
def staff(sql: Callable[..., Any]) -> Iterator[Callable[[list[str]], str]]:
    """Make a Staff profile assigned to these clients; its id."""
    made: list[str] = []

    def make(client_ids: list[str]) -> str:
        pid = str(uuid.uuid4())
        made.append(pid)
        sql("INSERT INTO public.profiles (id, role) VALUES ($1, 'Staff')", pid)
        for client in client_ids:
            sql(
                "INSERT INTO public.staff_client_assignments (staff_id, client_id) VALUES ($1, $2)",
                pid,
                client,
            )
        return pid

    yield make
    for pid in made:
        sql("DELETE FROM public.profiles WHERE id = $1", pid)


def test_staff_cannot_mint_a_link_for_a_client_not_assigned_to_them(
    live: LiveServer, sql: Any, staff: Callable[[list[str]], str]
) -> None:
    mine, other = (r["id"] for r in sql("SELECT id FROM public.clients ORDER BY id LIMIT 2"))
    token = issue_token(JWT_SECRET, staff([mine]))
    refused = make_link(live, token, client_id=[mine, other])
    assert refused.status_code == 403
    assert refused.json()["error"] == "forbidden"
    assert other in refused.json()["detail"] and "url" not in refused.json()

    own = follow(link_url(live, token, client_id=[mine], format="jsonl", columns="client_id"))
    assert own.status_code == 200 and own.content
    assert {orjson.loads(line)["client_id"] for line in own.content.splitlines()} == {mine}
    assert make_link(live, token).status_code == 200  # no filter: the assigned clients

    unassigned = make_link(live, issue_token(JWT_SECRET, staff([])))
    assert unassigned.status_code == 403
    assert "no clients are assigned" in unassigned.json()["detail"]


def raw_post(
    server: LiveServer, headers: dict[str, str], declared: int, sent: bytes
) -> tuple[bytes, float]:
    """POST /links declaring a body of `declared` bytes but sending only `sent`; the answer's
    first bytes (b"" if none came within 5 s) and how long it took."""
    host, port = server.url.removeprefix("http://").split(":")
    head = "".join(
        f"{k}: {v}\r\n"
        for k, v in {
            "Host": host,
            "Content-Type": "application/json",
            "Content-Length": str(declared),
            **headers,
        }.items()
    )
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(f"POST /v1/exports/learners/links HTTP/1.1\r\n{head}\r\n".encode() + sent)
        try:
            answer = sock.recv(65536)
        except TimeoutError:
            answer = b""
    return answer, time.monotonic() - started


def test_the_token_is_checked_before_the_body_is_read(live: LiveServer) -> None:
    for headers in ({}, {"Authorization": "Bearer not-a-token"}):
        answer, took = raw_post(live, headers, 1_000_000, b"{" + b" " * 1023)
        assert answer.startswith(b"HTTP/1.1 401"), answer[:100]
        assert took < 2


def test_a_body_declared_over_the_cap_gets_413_before_it_is_sent(live: LiveServer) -> None:
    answer, took = raw_post(live, {"Authorization": f"Bearer {live.token}"}, 1_000_000, b"{")
    assert answer.startswith(b"HTTP/1.1 413"), answer[:100]
    assert b'"error":"request_too_large"' in answer
    assert took < 2


def test_a_body_over_the_cap_gets_413(live: LiveServer) -> None:
    too_big = {"columns": "learner_id," * 1900 + "email"}  # ~20 KB
    response = make_link(live, **too_big)
    assert response.status_code == 413
    assert response.json()["error"] == "request_too_large"
    # Without a Content-Length (chunked), the count as it arrives decides.
    with httpx.Client(base_url=live.url, timeout=30) as client:
        chunked = client.post(
            "/v1/exports/learners/links",
            content=iter([b'{"limit": 1', b" " * 20_000, b"}"]),
            headers={"Authorization": f"Bearer {live.token}", "Content-Type": "application/json"},
        )
        small = client.post(
            "/v1/exports/learners/links",
            content=iter([b'{"limit": 1', b" " * 1000, b"}"]),
            headers={"Authorization": f"Bearer {live.token}"},
        )
    assert chunked.status_code == 413
    assert small.status_code == 200


@pytest.mark.parametrize("body", [b"", b"not json", b"[]", b'{"limit": 1', b'{"limit": "x"}'])
def test_a_body_that_is_not_a_link_request_gets_400(live: LiveServer, body: bytes) -> None:
    with httpx.Client(base_url=live.url, timeout=30) as client:
        response = client.post(
            "/v1/exports/learners/links",
            content=body,
            headers={"Authorization": f"Bearer {live.token}"},
        )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_parameter"


def test_a_link_too_long_to_follow_is_not_minted(live: LiveServer) -> None:
    many = [str(uuid.uuid4()) for _ in range(350)]
    response = make_link(live, client_id=many)
    assert response.status_code == 400
    assert response.json()["detail"][0]["parameter"] == "client_id"


def test_openapi_still_describes_the_link_request(live: LiveServer) -> None:
    with httpx.Client(base_url=live.url) as client:
        operation = client.get("/openapi.json").json()["paths"]["/v1/exports/learners/links"][
            "post"
        ]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert {"format", "client_id", "columns", "limit", "expires_in"} <= set(schema["properties"])
    assert {"401", "403", "413"} <= set(operation["responses"])


def test_a_large_unauthenticated_body_costs_the_server_no_memory(database: Database) -> None:
    with server_process(database, EXPORT_LINK_SECRETS=LINK_SECRETS) as server:
        before = server.rss_kb()

        def body() -> Iterator[bytes]:
            yield b"{"
            for _ in range(64):
                yield b" " * (1 << 20)
            yield b"}"

        started = time.monotonic()
        response = httpx.post(
            server.url + "/v1/exports/learners/links",
            content=body(),
            headers={"Content-Type": "application/json"},
            timeout=30,
        )
        assert response.status_code == 401
        assert time.monotonic() - started < 10
        assert server.rss_kb() - before < 16 * 1024  # far below the 64 MB sent
        with server.client() as client:
            assert client.post("/v1/exports/learners/links", json={"limit": 1}).status_code == 200
