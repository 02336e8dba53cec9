"""The opaque resume cursor: the keyset position (created_at, learner id) of a row."""

from __future__ import annotations

import base64
import uuid
from datetime import datetime

from service.errors import InvalidParameter
from service.formats.cells import iso_timestamp


def encode_cursor(created_at: datetime, learner_id: str) -> str:
    # The timestamp as service.copy_select writes the cursor in SQL.
    raw = f"{iso_timestamp(created_at)}|{learner_id}".encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(token: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        stamp, _, learner = raw.partition("|")
        created_at = datetime.fromisoformat(stamp)
        if created_at.tzinfo is None:
            raise ValueError("no offset")
        return created_at, str(uuid.UUID(learner))
    except (ValueError, UnicodeDecodeError):
        raise InvalidParameter([{"parameter": "after",
                                 "message": "not a cursor from a previous export"}]) from None
