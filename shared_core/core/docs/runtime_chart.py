"""The runtime and cost panel of a model page: its executed steps as a bar chart, with p50/p95 and estimated cost.

Optional and deterministic: the numbers are passed in (`ironlayer docs --telemetry FILE`, the JSON of
`ironlayer runs --stats --json` or `GET /api/telemetry`); a model without telemetry gets no panel, and the same
numbers give the same bytes. `read_telemetry` reads that JSON into `ModelRuntime`s.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from shared_core.core.docs.pages import esc, plural
from shared_core.core.errors import InputError
from shared_core.core.telemetry import ModelPoint, ModelStats

__all__ = ["ModelRuntime", "read_telemetry", "runtime_panel", "runtimes"]

WIDTH, HEIGHT, GAP = 640, 120, 2


@dataclass(frozen=True)
class ModelRuntime:
    """A model's telemetry for its page: the summary and its newest executed steps, oldest first."""

    stats: ModelStats
    points: tuple[ModelPoint, ...]


def runtime_panel(runtime: ModelRuntime | None) -> str:
    """The panel's HTML (empty without telemetry): a bar per executed step, its height the runtime.

    >>> runtime_panel(None)
    ''
    """
    if runtime is None or not runtime.points:
        return ""
    stats, points = runtime.stats, runtime.points
    tallest = max(p["seconds"] for p in points) or 1.0
    width = (WIDTH - GAP * (len(points) - 1)) / len(points)
    bars = []
    for index, point in enumerate(points):
        height = max(1.0, point["seconds"] / tallest * (HEIGHT - 4))
        x, y = index * (width + GAP), HEIGHT - height
        label = f"{point['at'][:16].replace('T', ' ')}: {_seconds(point['seconds'])}, ${point['cost_usd']:.4f}"
        bars.append(f'<rect x="{x:.2f}" y="{y:.2f}" width="{width:.2f}" height="{height:.2f}" rx="1.5">'
                    f"<title>{esc(label)}</title></rect>")
    described = f"the last {plural(len(points), 'executed step')}"
    svg = (f'<svg class="runtime" viewBox="0 0 {WIDTH} {HEIGHT}" width="100%" height="{HEIGHT}" role="img" '
           f'aria-label="Runtime of {esc(described)}" preserveAspectRatio="none">{"".join(bars)}</svg>')
    facts = (f"{plural(stats['steps'], 'step')} · p50 {_seconds(stats['p50_seconds'])} · "
             f"p95 {_seconds(stats['p95_seconds'])} · {stats['rows_written']:,} rows · "
             f"est. ${stats['cost_usd']:.4f} on {stats['engine']}")
    if stats["failed"]:
        facts += f" · {stats['failed']} failed"
    return ('<section class="panel"><div class="panel-head"><h2>Runtime and cost</h2>'
            f'<div class="aside"><span>{esc(facts)}</span></div></div>'
            f'<div class="graph">{svg}</div>'
            f'<p class="note">{esc(described.capitalize())}, oldest first; the tallest took '
            f"{esc(_seconds(tallest))}.</p></section>")


def _seconds(value: float) -> str:
    return f"{value:.2f} s" if value < 60 else f"{value / 60:.1f} min"


def read_telemetry(text: str, where: str) -> dict[str, ModelRuntime]:
    """The models' telemetry from the JSON of `ironlayer runs --stats --json` (or `GET /api/telemetry`).

    Raises:
        InputError: naming `where`, when the text is not that JSON.
    """
    try:
        data: Any = json.loads(text)  # Any: parsed JSON, checked below
        models = {m["model"]: _stats(m) for m in data["models"]}
        points = {name: tuple(_point(p) for p in series) for name, series in data.get("points", {}).items()}
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{where}: not the JSON of 'ironlayer runs --stats --json' ({type(exc).__name__}: "
                         f"{str(exc)[:80]}); write it with that command") from None
    return {name: ModelRuntime(stats, points.get(name, ())) for name, stats in sorted(models.items())}


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{value!r} is not a number of seconds, rows or dollars")
    return float(value)


def _stats(raw: Mapping[str, Any]) -> ModelStats:  # Any: parsed JSON
    return ModelStats(model=str(raw["model"]), engine=str(raw["engine"]), steps=int(_number(raw["steps"])),
                      failed=int(_number(raw["failed"])), p50_seconds=_number(raw["p50_seconds"]),
                      p95_seconds=_number(raw["p95_seconds"]), rows_written=int(_number(raw["rows_written"])),
                      cost_usd=_number(raw["cost_usd"]), last_run=str(raw["last_run"]))


def _point(raw: Mapping[str, Any]) -> ModelPoint:  # Any: parsed JSON
    return ModelPoint(at=str(raw["at"]), seconds=_number(raw["seconds"]), cost_usd=_number(raw["cost_usd"]))


def runtimes(models: Sequence[ModelStats], points: Mapping[str, Sequence[ModelPoint]]) -> dict[str, ModelRuntime]:
    """`ModelRuntime`s from a telemetry summary's parts (what `read_telemetry` returns for its JSON)."""
    return {m["model"]: ModelRuntime(m, tuple(points.get(m["model"], ()))) for m in models}
