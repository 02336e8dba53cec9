"""The opaque resume cursor: the keyset position (created_at, learner id) of a row, written in
SQL by the formats (learner_export.formats.cells.cursor) and read back here."""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from datetime import UTC, datetime

_BASE64URL = re.compile(r"[A-Za-z0-9_-]{1,512}")


def decode_cursor(token: str) -> tuple[datetime, str]:
    """The row's key, or ValueError when `token` is not a cursor an export wrote."""
    if not _BASE64URL.fullmatch(token):
        raise ValueError("not a cursor")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise ValueError("not a cursor") from None
    stamp, _, learner = raw.partition("|")
    try:
        created_at = datetime.fromisoformat(stamp)
        if created_at.tzinfo is None:
            raise ValueError("no offset")
        created_at = created_at.astimezone(UTC)
    except OverflowError:
        raise ValueError("not a cursor") from None
    return created_at, str(uuid.UUID(learner))
