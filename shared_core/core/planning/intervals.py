"""Half-open time ranges `[start, end)` in batches of an hour, a day or a month.

Pure arithmetic on aware UTC datetimes: flooring to batch boundaries, counting batches, merging and
subtracting range sets, and grouping contiguous batches into bounded chunks. Nothing here reads a clock;
"now" is always the caller's explicit `as_of`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from shared_core.core.errors import DateRangeError

Range = tuple[datetime, datetime]


def floor_batch(value: datetime, unit: str) -> datetime:
    """The start of the batch containing `value`.

    >>> from shared_core.core.project.headers import parse_instant, format_instant
    >>> format_instant(floor_batch(parse_instant("2024-05-17T13:45:00Z"), "month"))
    '2024-05-01T00:00:00Z'
    """
    if unit == "hour":
        return value.replace(minute=0, second=0, microsecond=0)
    if unit == "day":
        return value.replace(hour=0, minute=0, second=0, microsecond=0)
    return value.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def ceil_batch(value: datetime, unit: str) -> datetime:
    """The first batch boundary at or after `value`."""
    floor = floor_batch(value, unit)
    return floor if floor == value else add_batches(floor, unit, 1)


def add_batches(value: datetime, unit: str, count: int) -> datetime:
    """`value` moved by `count` batches (negative moves back); `value` must be on a boundary.

    Raises:
        DateRangeError: the result would fall outside the dates 0001-01-01 to 9999-12-31.
    """
    try:
        if unit == "hour":
            return value + timedelta(hours=count)
        if unit == "day":
            return value + timedelta(days=count)
        months = value.year * 12 + value.month - 1 + count
        return value.replace(year=months // 12, month=months % 12 + 1)
    except (OverflowError, ValueError):
        moved = f"{count} {unit} {'batch' if abs(count) == 1 else 'batches'}"
        raise DateRangeError(f"{value.year:04d}{value:-%m-%dT%H:%M:%S}Z moved by {moved} falls outside the dates "
                             "0001-01-01 to 9999-12-31; use dates within them") from None


def count_batches(start: datetime, end: datetime, unit: str) -> int:
    """How many batches `[start, end)` holds; both ends on boundaries."""
    if unit == "month":
        return (end.year - start.year) * 12 + end.month - start.month
    seconds = 3600 if unit == "hour" else 86400
    return int((end - start).total_seconds()) // seconds


def merge_ranges(ranges: Iterable[Range]) -> list[Range]:
    """Sorted, non-overlapping ranges covering the same instants; touching ranges are joined.

    >>> from shared_core.core.project.headers import parse_instant as p
    >>> ranges = [(p("2024-01-05"), p("2024-01-07")), (p("2024-01-01"), p("2024-01-05"))]
    >>> [(a.day, b.day) for a, b in merge_ranges(ranges)]
    [(1, 7)]
    """
    merged: list[Range] = []
    for start, end in sorted(r for r in ranges if r[0] < r[1]):
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def subtract_ranges(whole: Range, done: Sequence[Range]) -> list[Range]:
    """The parts of `whole` not covered by `done` (which must be merged)."""
    missing: list[Range] = []
    cursor, end = whole
    for done_start, done_end in done:
        if done_end <= cursor:
            continue
        if done_start >= end:
            break
        if done_start > cursor:
            missing.append((cursor, done_start))
        cursor = max(cursor, done_end)
        if cursor >= end:
            break
    if cursor < end:
        missing.append((cursor, end))
    return missing


def intersect_ranges(ranges: Sequence[Range], window: Range) -> list[Range]:
    """`ranges` clipped to `window`, empty pieces dropped."""
    low, high = window
    return [(max(s, low), min(e, high)) for s, e in ranges if max(s, low) < min(e, high)]


def align_ranges(ranges: Iterable[Range], unit: str) -> list[Range]:
    """Widen every range outward to whole batches of `unit` and merge."""
    return merge_ranges((floor_batch(s, unit), ceil_batch(e, unit)) for s, e in ranges)


def chunk_ranges(ranges: Sequence[Range], unit: str, max_batches: int) -> list[tuple[Range, int]]:
    """Split merged, aligned ranges into chunks of at most `max_batches` batches, with their counts."""
    chunks: list[tuple[Range, int]] = []
    for start, end in ranges:
        cursor = start
        while cursor < end:
            left = count_batches(cursor, end, unit)
            stop = end if left <= max_batches else add_batches(cursor, unit, max_batches)  # never past `end`
            chunks.append(((cursor, stop), min(left, max_batches)))
            cursor = stop
    return chunks
