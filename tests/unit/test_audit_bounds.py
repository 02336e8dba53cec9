"""The audit trail's bounds, without a database: the refusal limiter slows a caller after N
refusals a minute, and stored filters keep at most 20 client ids and 2 KB."""

from __future__ import annotations

import orjson
import pytest

from learner_export.audit import (
    MAX_FILTERS_BYTES,
    RefusalLimiter,
    capped_filters,
    first_throttle,
)
from learner_export.errors import TooManyExports
from tests.db.test_audit_bounds import IDS


def test_stored_filters_keep_20_client_ids_and_their_count() -> None:
    stored = orjson.loads(capped_filters({"client_id": IDS, "limit": 5}))
    assert stored["client_id"] == IDS[:20]
    assert stored["client_id_count"] == 1000
    assert stored["limit"] == 5


def test_stored_filters_never_exceed_2_kb() -> None:
    text = capped_filters({"columns": ["x" * 100] * 100, "limit": 2**64})
    assert len(text.encode()) <= MAX_FILTERS_BYTES
    assert len(capped_filters({"columns": ["x" * 100] * 100}).encode()) <= MAX_FILTERS_BYTES


def test_limiter_slows_a_caller_after_n_refusals_a_minute() -> None:
    now = [0.0]
    limiter = RefusalLimiter(3, clock=lambda: now[0])
    for _ in range(3):
        limiter.check("a")
        limiter.note("a")
    firsts = []
    for _ in range(3):
        with pytest.raises(TooManyExports) as slowed:
            limiter.check("a")
        firsts.append(first_throttle(slowed.value))
    assert firsts == [True, False, False]
    assert slowed.value.headers["Retry-After"] == "60"
    limiter.check("b")  # others are not slowed
    now[0] = 60.5
    limiter.check("a")
