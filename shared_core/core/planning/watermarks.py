"""The watermark ledger: completed half-open ranges per model, parsed and snapshotted.

The ledger file (`--watermarks FILE`) is a JSON object from model name to a list of `[start, end]`
pairs (dates or UTC times), for example `{"analytics.events": [["2024-01-01", "2024-02-01"]]}`.
A snapshot is the ledger merged and sorted, so the same completed work always hashes the same,
whatever order or overlap the ranges were recorded in.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from shared_core.core.errors import WatermarkError
from shared_core.core.planning.intervals import Range, merge_ranges
from shared_core.core.planning.plan import WatermarkRange
from shared_core.core.project.headers import format_instant, parse_instant

Ledger = Mapping[str, Sequence[Range]]


def parse_watermarks(text: str, source: str) -> dict[str, list[Range]]:
    """Parse a ledger document into merged ranges per model.

    >>> ledger = parse_watermarks('{"a.b": [["2024-01-02", "2024-01-03"], ["2024-01-01", "2024-01-02"]]}', "w")
    >>> [(s.day, e.day) for s, e in ledger["a.b"]]
    [(1, 3)]

    Raises:
        WatermarkError: not JSON, not an object of lists of [start, end] pairs, or start >= end.
    """
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise WatermarkError(f"{source}: not valid JSON ({exc.msg} at line {exc.lineno}); fix the file") from None
    if not isinstance(document, dict):
        raise WatermarkError(f"{source}: expected an object of model name -> [[start, end], ...]")
    ledger: dict[str, list[Range]] = {}
    for model, ranges in document.items():
        if not isinstance(ranges, list):
            raise WatermarkError(f"{source}: '{model}' must map to a list of [start, end] pairs")
        parsed: list[Range] = []
        for item in ranges:
            if not (isinstance(item, list) and len(item) == 2 and all(isinstance(v, str) for v in item)):
                raise WatermarkError(f"{source}: '{model}' has {json.dumps(item)}; each range is [\"start\", \"end\"]")
            try:
                start, end = parse_instant(item[0]), parse_instant(item[1])
            except ValueError:
                raise WatermarkError(
                    f"{source}: '{model}' has range {json.dumps(item)} with an invalid date; use YYYY-MM-DD"
                ) from None
            if start >= end:
                raise WatermarkError(f"{source}: '{model}' has empty or reversed range {json.dumps(item)}")
            parsed.append((start, end))
        ledger[model.lower()] = merge_ranges(parsed)
    return ledger


def snapshot(ledger: Ledger, models: Sequence[str]) -> dict[str, tuple[WatermarkRange, ...]]:
    """The merged ledger of `models` (sorted), as `(start, end)` text pairs; models without entries omitted.

    >>> snapshot({"a.b": [(parse_instant("2024-01-02"), parse_instant("2024-01-03"))]}, ["a.b", "c.d"])
    {'a.b': (('2024-01-02T00:00:00Z', '2024-01-03T00:00:00Z'),)}
    """
    return {
        name: tuple((format_instant(s), format_instant(e)) for s, e in merge_ranges(ledger[name]))
        for name in sorted(models)
        if ledger.get(name)
    }
