"""Bad parameters and bad tokens get a 4xx with a JSON body saying what is wrong, and no rows."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest

from learner_export.auth import issue_token
from tests.conftest import JWT_SECRET, LiveServer


def get(
    server: LiveServer,
    params: Any = None,
    headers: dict[str, str] | None = None,
    authorized: bool = True,
) -> httpx.Response:
    base = {"Authorization": f"Bearer {server.token}"} if authorized else {}
    with httpx.Client(base_url=server.url, timeout=30) as client:
        return client.get(
            "/v1/exports/learners", params=params, headers={**base, **(headers or {})}
        )


def assert_json_error(response: httpx.Response, status: int, error: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert body["error"] == error
    assert body["detail"]
    assert "Traceback" not in response.text
    return body


@pytest.mark.parametrize(
    ("params", "bad"),
    [
        ({"format": "pdf"}, "format"),
        ({"columns": "full_name,password"}, "columns"),
        ({"columns": "email,email"}, "columns"),
        ({"columns": ","}, "columns"),
        ({"client_id": "not-a-uuid"}, "client_id"),
        ({"client_id": "1; DROP TABLE learners"}, "client_id"),
        ({"created_from": "yesterday"}, "created_from"),
        ({"created_to": "2026-13-45"}, "created_to"),
        ({"created_from": "2026-02-01", "created_to": "2026-01-01"}, "created_from"),
        ({"active": "maybe"}, "active"),
        ({"limit": "-1"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"limit": "1e3"}, "limit"),
        ({"bom": "sure"}, "bom"),
        ({"escape_formulas": "2"}, "escape_formulas"),
        ({"format": ["csv", "jsonl"]}, "format"),
        ({"sort": "name"}, "sort"),
        ({"full_name": "' OR 1=1 --"}, "full_name"),
        ({"columns": "x" * 5000}, "columns"),
        ({"client_id": [str(uuid.uuid4()) for _ in range(1001)]}, "client_id"),
    ],
)
def test_bad_parameter_gets_400_naming_it(
    live: LiveServer, params: dict[str, Any], bad: str
) -> None:
    body = assert_json_error(get(live, params), 400, "invalid_parameter")
    assert bad in {p["parameter"] for p in body["detail"]}


def test_every_problem_is_listed_at_once(live: LiveServer) -> None:
    body = assert_json_error(
        get(live, {"format": "doc", "limit": "-5", "active": "x"}), 400, "invalid_parameter"
    )
    assert {p["parameter"] for p in body["detail"]} == {"format", "limit", "active"}


def test_plus_in_an_offset_survives_a_query_string_unencoded(live: LiveServer) -> None:
    # curl users write `+02:00` unencoded, which arrives as a space.
    response = get(live, "format=csv&limit=1&created_from=2024-01-01T02:00:00+02:00")
    assert response.status_code == 200


def token(subject: str, **claims: Any) -> str:
    now = int(time.time())
    payload = {"sub": subject, "aud": "authenticated", "exp": now + 600, **claims}
    return jwt.encode(payload, claims.pop("secret", JWT_SECRET), algorithm="HS256")


@pytest.mark.parametrize(
    ("make_header", "detail"),
    [
        (lambda admin: None, "missing"),
        (lambda admin: "Basic dXNlcjpwYXNz", "Bearer"),
        (lambda admin: "Bearer", "Bearer"),
        (lambda admin: "Bearer not.a.jwt", "malformed"),
        (lambda admin: "Bearer " + issue_token("another-secret-" + "y" * 40, admin), "signature"),
        (lambda admin: "Bearer " + issue_token(JWT_SECRET, admin, ttl_seconds=-120), "expired"),
        (lambda admin: "Bearer " + issue_token(JWT_SECRET, admin, audience="anon"), "audience"),
        (
            lambda admin: (
                "Bearer "
                + jwt.encode({"sub": admin, "aud": "authenticated"}, JWT_SECRET, algorithm="HS256")
            ),
            "exp",
        ),
        (lambda admin: "Bearer " + issue_token(JWT_SECRET, "not-a-uuid"), "UUID"),
        (
            lambda admin: (
                "Bearer "
                + jwt.encode(
                    {"sub": admin, "aud": "authenticated", "exp": int(time.time()) + 600},
                    None,
                    algorithm="none",
                )
            ),
            "malformed",
        ),
    ],
)
def test_bad_token_gets_401(
    live: LiveServer, seeded: str, make_header: Callable[[str], str | None], detail: str
) -> None:
    header = make_header(seeded)
    response = get(
        live,
        {"format": "csv"},
        headers={"Authorization": header} if header else {},
        authorized=False,
    )
    body = assert_json_error(response, 401, "unauthorized")
    assert detail in body["detail"]
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_unauthenticated_request_learns_nothing_about_parameters(live: LiveServer) -> None:
    assert_json_error(get(live, {"format": "pdf"}, authorized=False), 401, "unauthorized")


@pytest.mark.parametrize("role", ["Student", "Client Staff"])
def test_roles_without_export_rights_get_403(
    live: LiveServer, sql: Callable[..., Any], role: str
) -> None:
    profile = str(uuid.uuid4())
    sql("INSERT INTO public.profiles (id, role) VALUES ($1, $2)", profile, role)
    try:
        response = get(
            live,
            {"format": "csv"},
            headers={"Authorization": "Bearer " + issue_token(JWT_SECRET, profile)},
            authorized=False,
        )
    finally:
        sql("DELETE FROM public.profiles WHERE id = $1", profile)
    body = assert_json_error(response, 403, "forbidden")
    assert role in body["detail"]


def test_token_for_unknown_profile_gets_403(live: LiveServer) -> None:
    response = get(
        live,
        {"format": "csv"},
        headers={"Authorization": "Bearer " + issue_token(JWT_SECRET, str(uuid.uuid4()))},
        authorized=False,
    )
    assert_json_error(response, 403, "forbidden")


def test_unknown_route_is_json_404(live: LiveServer) -> None:
    with httpx.Client(base_url=live.url) as client:
        response = client.get("/v1/exports/teachers")
    assert_json_error(response, 404, "not_found")


def test_health_and_readiness(live: LiveServer) -> None:
    with httpx.Client(base_url=live.url) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/readyz").json() == {"status": "ready"}


def test_request_id_is_echoed_or_made(live: LiveServer) -> None:
    assert (
        get(live, {"limit": "1"}, headers={"X-Request-Id": "abc-123"}).headers["x-request-id"]
        == "abc-123"
    )
    made = get(live, {"limit": "1"}, headers={"X-Request-Id": "bad id <script>"}).headers[
        "x-request-id"
    ]
    assert len(made) == 32
