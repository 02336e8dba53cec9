"""The download link's error page for browsers: it escapes what it shows, and HTML is chosen
by the Accept header alone."""

from __future__ import annotations

from typing import Any

import pytest

from learner_export.api.browser import error_page, wants_html
from tests.e2e.test_browser_errors import BROWSER_ACCEPT, DOWNLOAD


def _request(path: str, accept: str) -> Any:
    from starlette.requests import Request

    return Request(
        {
            "type": "http",
            "method": "GET",
            "path": path,
            "query_string": b"",
            "headers": [(b"accept", accept.encode())],
        }
    )


def test_error_page_escapes_what_it_shows() -> None:
    page = error_page(
        400,
        "invalid_parameter<x>",
        [{"parameter": "<script>alert(1)</script>", "message": "a & b"}],
    )
    body = bytes(page.body).decode()
    assert "<script>" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;: a &amp; b" in body
    assert "invalid_parameter&lt;x&gt;" in body
    assert page.status_code == 400
    assert page.headers["content-security-policy"].startswith("default-src 'none'")


@pytest.mark.parametrize(
    ("accept", "html"),
    [
        (BROWSER_ACCEPT, True),
        ("application/xhtml+xml", True),
        ("TEXT/HTML; q=0.5", True),
        ("text/html;q=0", False),
        ("text/html;q=x", False),
        ("*/*", False),
        ("", False),
    ],
)
def test_wants_html_reads_the_accept_header(accept: str, html: bool) -> None:
    assert wants_html(_request(DOWNLOAD, accept)) is html
    assert wants_html(_request("/v1/exports/learners", accept)) is False
