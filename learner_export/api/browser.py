"""A short HTML page for a person whose browser opened a download link that cannot be used."""

from __future__ import annotations

from collections.abc import Mapping
from html import escape
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse

# Links are opened by a browser; the rest of the API answers JSON whatever the Accept.
HTML_ERROR_PATHS = frozenset({"/v1/exports/learners/download"})

_HEADINGS = {
    410: "This download link has expired",
    403: "This download link cannot be used",
}
_ADVICE = {
    410: "Links work for a few minutes only. Ask for a new link from the admin page.",
    403: "The link was changed after it was made, was signed with a key that has since been"
    " retired, or your account may no longer export learners. Ask for a new link from the"
    " admin page; if that one fails too, ask an administrator to check your role.",
    429: "Too many exports are running. Wait a minute, then ask for a new link from the admin"
    " page.",
}
_DEFAULT_ADVICE = (
    "Ask for a new link from the admin page. If this keeps happening, tell an"
    " administrator what this page says."
)


def wants_html(request: Request) -> bool:
    """Whether a browser opened a signed link: the path is one and its Accept names text/html."""
    if request.url.path not in HTML_ERROR_PATHS:
        return False
    for media_range in request.headers.get("accept", "").lower().split(","):
        kind, *params = (part.strip() for part in media_range.split(";"))
        if kind in ("text/html", "application/xhtml+xml"):
            weights = [p.removeprefix("q=") for p in params if p.startswith("q=")]
            try:
                return not weights or float(weights[0]) > 0
            except ValueError:
                return False
    return False


def _describe(detail: Any) -> str:
    """The error's detail as one line of text (a 400's is a list of problems)."""
    if isinstance(detail, list):
        return "; ".join(
            f"{item.get('parameter', '')}: {item.get('message', '')}"
            if isinstance(item, dict)
            else str(item)
            for item in detail
        )
    return str(detail)


def error_page(
    status: int, code: str, detail: Any, headers: Mapping[str, str] | None = None
) -> HTMLResponse:
    """A self-contained page (no external assets) saying what happened and what to do."""
    heading = _HEADINGS.get(status, "The export could not start")
    advice = _ADVICE.get(status, _DEFAULT_ADVICE)
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{escape(heading)}</title>
<style>
body {{ font: 16px/1.5 system-ui, sans-serif; color: #1f2328; background: #f6f8fa;
       margin: 0; padding: 3rem 1rem; }}
main {{ max-width: 36rem; margin: 0 auto; background: #fff; border: 1px solid #d0d7de;
        border-radius: 8px; padding: 1.5rem 2rem; }}
h1 {{ font-size: 1.4rem; margin: 0 0 1rem; }}
p.detail {{ color: #57606a; }}
code {{ font-size: 0.9em; }}
</style>
</head>
<body>
<main>
<h1>{escape(heading)}</h1>
<p>{escape(advice)}</p>
<p class="detail">What the server said: {escape(_describe(detail))}
(<code>{escape(code)}</code>, HTTP {status}).</p>
</main>
</body>
</html>
"""
    return HTMLResponse(
        page,
        status_code=status,
        headers={
            **(headers or {}),
            "Cache-Control": "no-store",
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
            "X-Content-Type-Options": "nosniff",
        },
    )
