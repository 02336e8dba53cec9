"""Download file names that say what is inside: the filters, then the time of the export."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from datetime import UTC, datetime, time
from urllib.parse import quote

MAX_NAME_CHARACTERS = 40
# Path separators, quotes, control characters and what Windows refuses in a file name.
_UNSAFE = re.compile(r'[\x00-\x1f\x7f-\x9f/\\"\'<>:|?*;%\s]+')
_NOT_ASCII_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _when(moment: datetime) -> str:
    """A date alone when the bound is midnight UTC, else the date and time to the minute."""
    moment = moment.astimezone(UTC) if moment.tzinfo else moment
    if moment.time() == time(0):
        return f"{moment:%Y-%m-%d}"
    return f"{moment:%Y-%m-%dT%H%MZ}"


def _label(word: str) -> tuple[str, str]:
    """An operator's word (the scope unit) as (ASCII, UTF-8) file-name parts, or ("", "")."""
    # Format characters too: a right-to-left override would make "…txt.exe" read as "…exe.txt".
    visible = "".join(
        "-" if unicodedata.category(c)[0] in "CZ" else c for c in unicodedata.normalize("NFC", word)
    )
    full = _UNSAFE.sub("-", visible).strip("-.")[:MAX_NAME_CHARACTERS]
    decomposed = unicodedata.normalize("NFKD", full).encode("ascii", "ignore").decode()
    ascii_part = _NOT_ASCII_SAFE.sub("-", decomposed).strip("-.")
    return ascii_part, full.strip("-.")


def export_filename(
    extension: str,
    *,
    client_ids: Sequence[str] | None,
    created_from: datetime | None,
    created_to: datetime | None,
    active: bool | None,
    now: datetime,
    unit: str = "client",
    units: str = "clients",
) -> tuple[str, str]:
    """(ASCII fallback, full UTF-8 name) for an export with these filters, made at `now`; a
    scope unit is called `unit` (`units`), in the operator's words (the adapter's)."""
    unit_ascii, unit_full = _label(unit)
    units_ascii, units_full = _label(units)
    unit_ascii, units_ascii = unit_ascii or "client", units_ascii or "clients"
    unit_full, units_full = unit_full or unit_ascii, units_full or units_ascii
    ascii_parts: list[str] = []
    full_parts: list[str] = []

    def both(part: str) -> None:
        ascii_parts.append(part)
        full_parts.append(part)

    if client_ids and len(client_ids) == 1:
        short_id = _NOT_ASCII_SAFE.sub("-", client_ids[0])[:8]
        ascii_parts.append(f"{unit_ascii}-{short_id}")
        full_parts.append(f"{unit_full}-{short_id}")
    elif client_ids:
        ascii_parts.append(f"{len(client_ids)}-{units_ascii}")
        full_parts.append(f"{len(client_ids)}-{units_full}")
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
    # To the second: two downloads in the same minute get two names.
    stamp = f"{now.astimezone(UTC):%Y%m%dT%H%M%SZ}"
    ext = _NOT_ASCII_SAFE.sub("", extension)
    return (
        "-".join(["learners", *ascii_parts, stamp]) + f".{ext}",
        "-".join(["learners", *full_parts, stamp]) + f".{ext}",
    )


def content_disposition(ascii_name: str, full_name: str) -> str:
    """An attachment header with an ASCII `filename` and the UTF-8 `filename*` (RFC 6266)."""
    fallback = _NOT_ASCII_SAFE.sub("_", ascii_name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(full_name, safe='')}"
