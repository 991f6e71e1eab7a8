"""Execution telemetry, pure: the record of a step or batch, its estimated cost, and the per-model summary.

A record carries the runtime (wall clock and engine time), rows read and written, bytes where the engine
reports them, the engine and an estimated cost: engine seconds times the engine's rate per hour
(`IRONLAYER_ENGINE_RATES`, e.g. `duckdb=0,databricks=2.4`, US dollars). `ModelStats` is what
`ironlayer runs --stats`, `GET /api/telemetry` and the documentation site's runtime chart show.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Literal, Protocol, TypedDict

from shared_core.core.errors import SettingsError
from shared_core.core.state import JSONValue

__all__ = [
    "ModelPoint",
    "ModelStats",
    "StatementCounts",
    "StatementLike",
    "StepSample",
    "TelemetryRecord",
    "engine_counts",
    "estimate_cost",
    "model_points",
    "parse_engine_rates",
    "percentile",
    "summarize",
]


class TelemetryRecord(TypedDict):
    """One row of `step_telemetry`: a step (`kind` step, `batches` of them) or one of its batches."""

    record_key: str  # unique per tenant: a retried write replaces the row
    kind: Literal["step", "batch"]
    plan_id: str
    step_id: str
    run_id: int | None
    instance_id: str | None
    model: str
    engine: str
    status: str
    batch_start: datetime | None
    batch_end: datetime | None
    batches: int
    seconds: float
    engine_seconds: float
    rows_read: int | None
    rows_written: int | None
    bytes: int | None
    cost_usd: float
    attributes: dict[str, JSONValue]


class ModelStats(TypedDict):
    """The executed steps of one model: how many, runtime percentiles, rows and estimated cost."""

    model: str
    engine: str
    steps: int
    failed: int
    p50_seconds: float
    p95_seconds: float
    rows_written: int
    cost_usd: float
    last_run: str  # ISO time of the newest record


class ModelPoint(TypedDict):
    """One executed step of a model for the runtime/cost chart: when, how long, what it cost."""

    at: str  # ISO time
    seconds: float
    cost_usd: float


def parse_engine_rates(text: str, name: str = "IRONLAYER_ENGINE_RATES") -> dict[str, float]:
    """`engine=rate` pairs (US dollars per engine hour), comma-separated.

    >>> parse_engine_rates("duckdb=0, databricks=2.4")
    {'duckdb': 0.0, 'databricks': 2.4}

    Raises:
        SettingsError: a pair is malformed or a rate is negative or not a number.
    """
    rates: dict[str, float] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        engine, sep, value = part.partition("=")
        try:
            rate = float(value)
        except ValueError:
            rate = -1.0
        if not sep or not engine.strip() or not math.isfinite(rate) or rate < 0:
            raise SettingsError(f"{name}: {part[:60]!r} is not engine=rate (US dollars per hour, >= 0), "
                                "e.g. databricks=2.4")
        rates[engine.strip().lower()] = rate
    return rates


def estimate_cost(engine: str, engine_seconds: float, rates: Mapping[str, float]) -> float:
    """The estimated cost of `engine_seconds` on `engine`: its hourly rate pro rata (0 without a rate).

    >>> estimate_cost("databricks", 1800, {"databricks": 2.4})
    1.2
    """
    return round(max(engine_seconds, 0.0) * rates.get(engine, 0.0) / 3600, 6)


class StatementLike(Protocol):
    """What telemetry reads of a statement an engine ran (`shared_core.ports.StatementOutcome`)."""

    @property
    def label(self) -> str: ...

    @property
    def rows(self) -> int | None: ...

    @property
    def bytes(self) -> int | None: ...


class StatementCounts(TypedDict):
    """Rows read and bytes of a batch's statements, None where the engine reported none."""

    rows_read: int | None
    bytes: int | None


def engine_counts(statements: Sequence[StatementLike]) -> StatementCounts:
    """Add up what the engine reported: rows of the statements that read (`read`, `scan`), bytes of all.

    >>> from types import SimpleNamespace as S
    >>> engine_counts([S(label="scan", rows=10, bytes=2048), S(label="publish", rows=3, bytes=None)])
    {'rows_read': 10, 'bytes': 2048}
    >>> engine_counts([])
    {'rows_read': None, 'bytes': None}
    """
    read = [s.rows for s in statements if s.label in ("read", "scan") and s.rows is not None]
    sizes = [s.bytes for s in statements if s.bytes is not None]
    return StatementCounts(rows_read=sum(read) if read else None, bytes=sum(sizes) if sizes else None)


def percentile(values: Sequence[float], q: float) -> float:
    """The `q` quantile (0..1) of `values` by linear interpolation (0.0 for no values).

    >>> percentile([1.0, 2.0, 3.0, 4.0], 0.5), percentile([5.0], 0.95), percentile([], 0.5)
    (2.5, 5.0, 0.0)
    """
    if not values:
        return 0.0
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


class StepSample(TypedDict):
    """One executed step as the summaries read it (`step_telemetry` rows of kind step)."""

    model: str
    engine: str
    status: str
    seconds: float
    rows_written: int | None
    cost_usd: float
    recorded_at: datetime


def summarize(samples: Sequence[StepSample]) -> list[ModelStats]:
    """Per model, by name: steps, failures, p50/p95 runtime, rows written, total estimated cost, last run.

    >>> t = datetime(2024, 5, 1)
    >>> s = [StepSample(model="m", engine="duckdb", status="success", seconds=x, rows_written=1, cost_usd=0.5,
    ...                 recorded_at=t) for x in (1.0, 2.0, 3.0)]
    >>> [(r["model"], r["steps"], r["p50_seconds"], r["cost_usd"]) for r in summarize(s)]
    [('m', 3, 2.0, 1.5)]
    """
    by_model: dict[str, list[StepSample]] = {}
    for sample in samples:
        by_model.setdefault(sample["model"], []).append(sample)
    stats: list[ModelStats] = []
    for model in sorted(by_model):
        group = sorted(by_model[model], key=lambda s: s["recorded_at"])
        seconds = [s["seconds"] for s in group]
        stats.append(ModelStats(
            model=model, engine=group[-1]["engine"], steps=len(group),
            failed=sum(1 for s in group if s["status"] == "failed"),
            p50_seconds=round(percentile(seconds, 0.5), 3), p95_seconds=round(percentile(seconds, 0.95), 3),
            rows_written=sum(s["rows_written"] or 0 for s in group),
            cost_usd=round(sum(s["cost_usd"] for s in group), 6), last_run=group[-1]["recorded_at"].isoformat(),
        ))
    return stats


def model_points(samples: Sequence[StepSample], limit: int = 30) -> dict[str, list[ModelPoint]]:
    """The newest `limit` executed steps of each model, oldest first, for its runtime/cost chart."""
    points: dict[str, list[ModelPoint]] = {}
    for sample in sorted(samples, key=lambda s: (s["model"], s["recorded_at"])):
        points.setdefault(sample["model"], []).append(ModelPoint(
            at=sample["recorded_at"].isoformat(), seconds=round(sample["seconds"], 3),
            cost_usd=round(sample["cost_usd"], 6)))
    return {model: series[-limit:] for model, series in points.items()}
