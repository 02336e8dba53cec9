"""Inputs at the edges of what PostgreSQL, Python and JSON can carry get a 400, never a 5xx."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest

from tests.conftest import LiveServer

HUGE = "18446744073709551616"  # 2^64: no bigint, and orjson cannot write it


def forged_cursor(stamp: str) -> str:
    raw = f"{stamp}|00000000-0000-0000-0000-000000000001".encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


BAD = [
    ("limit=" + HUGE, "limit"),
    ("limit=9223372036854775808", "limit"),
    ("created_from=0001-01-01T00:00:00%2B14:00", "created_from"),
    ("created_to=9999-12-31T23:59:59-14:00", "created_to"),
    ("created_from=0001-01-01T00:00:00", "created_from"),
    ("after=" + forged_cursor("0001-01-01T00:00:00+14:00"), "after"),
    ("after=" + forged_cursor("9999-12-31T23:59:59-14:00"), "after"),
    ("after=" + forged_cursor("0001-01-01T05:00:00+00:00"), "after"),
]


@pytest.mark.parametrize(("query", "bad"), BAD)
def test_out_of_range_input_is_a_400(live: LiveServer, query: str, bad: str) -> None:
    with live.client() as client:
        response = client.get(f"/v1/exports/learners?{query}")
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_parameter"
    assert bad in {p["parameter"] for p in response.json()["detail"]}


@pytest.mark.parametrize(
    "body",
    [
        {"limit": int(HUGE)},
        {"limit": 2**63},
        {"created_from": "0001-01-01T00:00:00+14:00"},
        {"limit": [1, 2]},
        {"client_id": "not-a-list"},
        {"client_id": [{"a": 1}]},
        {"columns": 5},
        {"expires_in": 2**70},
    ],
)
def test_a_link_that_could_not_run_is_refused_at_mint(
    live: LiveServer, body: dict[str, Any]
) -> None:
    with live.client() as client:
        response = client.post("/v1/exports/learners/links", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == "invalid_parameter"
    assert response.headers["content-type"].startswith("application/json")
    assert "error" in response.json()


def test_json_body_of_the_wrong_shape_is_a_4xx(live: LiveServer) -> None:
    with live.client() as client:
        for content in (b"[]", b"null", b'"x"', b"{", b'{"limit": 1e400}'):
            response = client.post(
                "/v1/exports/learners/links",
                content=content,
                headers={"Content-Type": "application/json"},
            )
            assert 400 <= response.status_code < 500, (content, response.text)
            assert "error" in response.json()


def test_huge_client_id_list_is_a_400(live: LiveServer) -> None:
    ids = "&".join(f"client_id=00000000-0000-0000-0000-{i:012d}" for i in range(1001))
    with httpx.Client(
        base_url=live.url, timeout=30, headers={"Authorization": f"Bearer {live.token}"}
    ) as client:
        response = client.get(f"/v1/exports/learners?{ids}")
    assert response.status_code == 400
