"""Download file names that say what is inside: the filters, then the time of the export."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, time
from urllib.parse import quote

_NOT_ASCII_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _when(moment: datetime) -> str:
    """A date alone when the bound is midnight UTC, else the date and time to the minute."""
    moment = moment.astimezone(UTC) if moment.tzinfo else moment
    if moment.time() == time(0):
        return f"{moment:%Y-%m-%d}"
    return f"{moment:%Y-%m-%dT%H%MZ}"


def export_filename(
    extension: str,
    *,
    client_ids: Sequence[str] | None,
    created_from: datetime | None,
    created_to: datetime | None,
    active: bool | None,
    now: datetime,
) -> tuple[str, str]:
    """(ASCII fallback, full UTF-8 name) for an export with these filters, made at `now`."""
    ascii_parts: list[str] = []
    full_parts: list[str] = []

    def both(part: str) -> None:
        ascii_parts.append(part)
        full_parts.append(part)

    if client_ids and len(client_ids) == 1:
        both(f"client-{_NOT_ASCII_SAFE.sub('-', client_ids[0])[:8]}")
    elif client_ids:
        both(f"{len(client_ids)}-clients")
    if active is not None:
        both("active" if active else "inactive")
    if created_from and created_to:
        both(f"{_when(created_from)}_to_{_when(created_to)}")
    elif created_from:
        both(f"from_{_when(created_from)}")
    elif created_to:
        both(f"before_{_when(created_to)}")
    if not full_parts:
        both("all")
    stamp = f"{now.astimezone(UTC):%Y%m%dT%H%MZ}"
    ext = _NOT_ASCII_SAFE.sub("", extension)
    return (
        "-".join(["learners", *ascii_parts, stamp]) + f".{ext}",
        "-".join(["learners", *full_parts, stamp]) + f".{ext}",
    )


def content_disposition(ascii_name: str, full_name: str) -> str:
    """An attachment header with an ASCII `filename` and the UTF-8 `filename*` (RFC 6266)."""
    fallback = _NOT_ASCII_SAFE.sub("_", ascii_name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(full_name, safe='')}"
