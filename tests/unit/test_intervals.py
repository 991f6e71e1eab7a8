"""Half-open batch arithmetic, range sets and chunking."""

from __future__ import annotations

from datetime import datetime
from itertools import pairwise

import pytest

from shared_core.core.planning.intervals import (
    add_batches,
    align_ranges,
    ceil_batch,
    chunk_ranges,
    count_batches,
    floor_batch,
    merge_ranges,
    subtract_ranges,
)
from shared_core.core.project.headers import parse_instant as t


@pytest.mark.parametrize(
    ("value", "unit", "floor", "ceil"),
    [
        ("2024-05-17T13:45:00Z", "hour", "2024-05-17T13:00:00Z", "2024-05-17T14:00:00Z"),
        ("2024-05-17T13:45:00Z", "day", "2024-05-17", "2024-05-18"),
        ("2024-05-17T13:45:00Z", "month", "2024-05-01", "2024-06-01"),
        ("2024-12-31T23:00:00Z", "month", "2024-12-01", "2025-01-01"),
        ("2024-05-01", "month", "2024-05-01", "2024-05-01"),
    ],
)
def test_floor_and_ceil(value: str, unit: str, floor: str, ceil: str) -> None:
    assert floor_batch(t(value), unit) == t(floor)
    assert ceil_batch(t(value), unit) == t(ceil)


@pytest.mark.parametrize(
    ("start", "unit", "count", "end"),
    [
        ("2024-01-31", "month", 0, "2024-01-31"),
        ("2024-01-01", "month", 14, "2025-03-01"),
        ("2024-03-01", "month", -3, "2023-12-01"),
        ("2024-02-28", "day", 2, "2024-03-01"),
        ("2024-03-10T23:00:00Z", "hour", 3, "2024-03-11T02:00:00Z"),
    ],
)
def test_add_and_count(start: str, unit: str, count: int, end: str) -> None:
    assert add_batches(t(start), unit, count) == t(end)
    if count >= 0:
        assert count_batches(t(start), t(end), unit) == count


def _r(a: str, b: str) -> tuple[datetime, datetime]:
    return (t(a), t(b))


def test_merge_joins_overlapping_and_touching_ranges() -> None:
    assert merge_ranges([_r("2024-01-05", "2024-01-07"), _r("2024-01-01", "2024-01-03"), _r("2024-01-03", "2024-01-04"),
                         _r("2024-01-06", "2024-01-09")]) == [_r("2024-01-01", "2024-01-04"), _r("2024-01-05", "2024-01-09")]


def test_subtract_finds_gaps_and_tail() -> None:
    done = [_r("2023-12-01", "2024-01-03"), _r("2024-01-05", "2024-01-06")]
    assert subtract_ranges(_r("2024-01-01", "2024-01-10"), done) == [
        _r("2024-01-03", "2024-01-05"),
        _r("2024-01-06", "2024-01-10"),
    ]
    assert subtract_ranges(_r("2024-01-01", "2024-01-02"), [_r("2023-01-01", "2025-01-01")]) == []
    assert subtract_ranges(_r("2024-01-01", "2024-01-02"), []) == [_r("2024-01-01", "2024-01-02")]


def test_align_widens_to_whole_batches() -> None:
    assert align_ranges([_r("2024-01-01T05:00:00Z", "2024-01-02T01:00:00Z")], "day") == [_r("2024-01-01", "2024-01-03")]


def test_chunking_bounds_batches_per_step() -> None:
    five_years_hourly = [_r("2020-01-01", "2025-01-01")]
    chunks = chunk_ranges(five_years_hourly, "hour", 366)
    total = count_batches(t("2020-01-01"), t("2025-01-01"), "hour")
    assert total == 43848
    assert len(chunks) == -(-total // 366)
    assert sum(n for _, n in chunks) == total
    assert all(n <= 366 for _, n in chunks)
    assert all(a[0][1] == b[0][0] for a, b in pairwise(chunks))
