"""Where the bulk pass splits: ranges of as many rows each, at keys the keyset walk found,
every row after the first page in exactly one range, the limit on the last."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from learner_export.pages import _NO_LIMIT, bulk_ranges

START = datetime(2024, 1, 1, tzinfo=UTC)


def key(n: int) -> tuple[datetime, str]:
    """The key of the export's n-th row after the first page (1-based)."""
    return (START + timedelta(seconds=n), f"00000000-0000-0000-0000-{n:012d}")


def test_two_ranges_split_in_the_middle_and_the_last_takes_the_rest() -> None:
    first, second = bulk_ranges(key(0), [key(500_000)], 500_000, 1000, None)
    assert (first.after, first.upto, first.row, first.limit) == (
        key(0),
        key(500_000),
        1000,
        _NO_LIMIT,
    )
    assert (second.after, second.upto, second.row, second.limit) == (
        key(500_000),
        (None, None),
        501_000,
        _NO_LIMIT,
    )


def test_a_limit_bounds_the_last_range_only() -> None:
    ranges = bulk_ranges(key(0), [key(30), key(60)], 30, 100, 95)
    assert [r.after for r in ranges] == [key(0), key(30), key(60)]
    assert [r.upto for r in ranges] == [key(30), key(60), (None, None)]
    assert [r.row for r in ranges] == [100, 130, 160]
    assert [r.limit for r in ranges] == [_NO_LIMIT, _NO_LIMIT, 35]


def test_without_ends_one_range_is_the_whole_rest() -> None:
    (only,) = bulk_ranges(key(0), [], 0, 100, 7)
    assert (only.after, only.upto, only.row, only.limit) == (key(0), (None, None), 100, 7)
    (unlimited,) = bulk_ranges(key(0), [], 0, 100, None)
    assert unlimited.limit == _NO_LIMIT
