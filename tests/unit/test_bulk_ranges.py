"""Where the bulk pass splits: the first range smaller than the others, at keys the keyset walk
found, every row after the first page in exactly one range, the limit on the last."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from learner_export.pages import _NO_LIMIT, FIRST_RANGE_WEIGHT, bulk_ranges, range_sizes

START = datetime(2024, 1, 1, tzinfo=UTC)


def key(n: int) -> tuple[datetime, str]:
    """The key of the export's n-th row after the first page (1-based)."""
    return (START + timedelta(seconds=n), f"00000000-0000-0000-0000-{n:012d}")


def test_the_first_range_is_the_smaller_and_the_last_takes_the_rest() -> None:
    """The first range renders as it is sent, the others before their turn: it gets 0.72 of
    the rows of each other one (42% of two ranges, 26.5% of four)."""
    assert range_sizes(1_000_000, 2) == [418_604]
    assert range_sizes(1_000_000, 4) == [193_548, 268_817, 268_817]
    assert range_sizes(1_000_000, 1) == []
    assert range_sizes(2, 2) == [1]
    for total in (7, 1_000, 999_999):
        for ranges in (2, 3, 5):
            sizes = range_sizes(total, ranges)
            assert len(sizes) == ranges - 1
            last = total - sum(sizes)
            assert sizes[0] <= min([*sizes[1:], last])
            assert abs(sizes[0] - FIRST_RANGE_WEIGHT * last) <= ranges
    first, second = bulk_ranges(key(0), [key(418_604)], [418_604], 1000, None)
    assert (first.after, first.upto, first.row, first.limit) == (
        key(0),
        key(418_604),
        1000,
        _NO_LIMIT,
    )
    assert (second.after, second.upto, second.row, second.limit) == (
        key(418_604),
        (None, None),
        419_604,
        _NO_LIMIT,
    )


def test_a_limit_bounds_the_last_range_only() -> None:
    ranges = bulk_ranges(key(0), [key(20), key(50)], [20, 30], 100, 95)
    assert [r.after for r in ranges] == [key(0), key(20), key(50)]
    assert [r.upto for r in ranges] == [key(20), key(50), (None, None)]
    assert [r.row for r in ranges] == [100, 120, 150]
    assert [r.limit for r in ranges] == [_NO_LIMIT, _NO_LIMIT, 45]


def test_without_ends_one_range_is_the_whole_rest() -> None:
    (only,) = bulk_ranges(key(0), [], [], 100, 7)
    assert (only.after, only.upto, only.row, only.limit) == (key(0), (None, None), 100, 7)
    (unlimited,) = bulk_ranges(key(0), [], [], 100, None)
    assert unlimited.limit == _NO_LIMIT
