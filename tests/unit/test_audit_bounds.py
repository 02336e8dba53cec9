"""The audit trail's bounds, without a database: past a caller's allowance, rows are counted
into one row per kind; stored filters keep at most 20 client ids and 2 KB."""

from __future__ import annotations

import orjson

from learner_export.audit import MAX_FILTERS_BYTES, AuditAllowance, Outcome, capped_filters
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


def test_allowance_counts_what_is_past_it_into_one_row_per_kind() -> None:
    now = [0.0]
    allowance = AuditAllowance(3, clock=lambda: now[0])
    admitted = [allowance.admit("a") for _ in range(5)]
    assert admitted == [True, True, True, False, False]
    assert allowance.admit("b")  # others have their own allowance
    for detail in ("first", "second"):
        allowance.count(
            caller="a",
            kind="refused",
            outcome=Outcome.DENIED,
            request_id="r",
            via_link=False,
            fmt=None,
            filters={},
            detail=detail,
        )
    assert allowance.due() == []  # the minute has not ended
    now[0] = 60.0
    (row,) = allowance.due()
    assert (row.caller, row.count, row.detail) == ("a", 2, "second")
    assert allowance.admit("a")  # a new minute: rows of its own again
