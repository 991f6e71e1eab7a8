"""Execution telemetry use cases: describe a step that ran, record steps and batches with their estimated cost,
and summarize per model.

A step's activity reports its `StepTelemetry` (`step_telemetry`); the telemetry function turns a wave's
reports into records (`telemetry_records`, costed with the engine rates) and writes them (`record_steps`).
Recording is best effort by design: `record_steps` logs and swallows a store failure, so a telemetry write
never fails a run. `telemetry_summary` feeds `ironlayer runs --stats`, `GET /api/telemetry` and the runtime
chart of the documentation site.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, TypedDict

from shared_core.core.errors import CoreError
from shared_core.core.state import JSONValue
from shared_core.core.telemetry import ModelPoint, ModelStats, TelemetryRecord, estimate_cost, model_points, summarize
from shared_core.ports import TelemetryStore
from shared_core.security.scrub import scrub
from shared_core.services.messages import StepTelemetry

if TYPE_CHECKING:
    from shared_core.services.apply import StepOutcome

__all__ = ["TelemetrySummary", "record_steps", "step_telemetry", "telemetry_records", "telemetry_summary"]

logger = logging.getLogger(__name__)


def step_telemetry(outcome: StepOutcome, engine: str) -> StepTelemetry | None:
    """What a step that ran reports for telemetry; None when it ran no batch (done before, skipped, locked out)."""
    if not outcome.telemetry:
        return None
    read = [b["rows_read"] for b in outcome.telemetry if b["rows_read"] is not None]
    sizes = [b["bytes"] for b in outcome.telemetry if b["bytes"] is not None]
    return StepTelemetry(
        step_id=outcome.step_id, model=outcome.model, engine=engine, status=outcome.status,
        seconds=round(outcome.seconds, 6), engine_seconds=round(outcome.engine_seconds, 6),
        rows_written=outcome.rows_written, rows_read=sum(read) if read else None, bytes=sum(sizes) if sizes else None,
        error=scrub(outcome.error) if outcome.error else None, batches=list(outcome.telemetry),
    )


def telemetry_records(plan_id: str, instance_id: str | None, steps: Iterable[StepTelemetry],
                      rates: Mapping[str, float]) -> list[TelemetryRecord]:
    """A step record and a record per batch for each step, with the cost estimated from `rates` (per hour).

    Keys are derived from the runs, so writing the same reports again replaces the same rows.
    """
    records: list[TelemetryRecord] = []
    for step in steps:
        batches = step["batches"]
        first_run = min((b["run_id"] for b in batches), default=0)
        attributes: dict[str, JSONValue] = {"error": scrub(step["error"])} if step["error"] else {}
        records.append(TelemetryRecord(
            record_key=f"step:{plan_id}:{step['step_id']}:{first_run}", kind="step", plan_id=plan_id,
            step_id=step["step_id"], run_id=None, instance_id=instance_id, model=step["model"], engine=step["engine"],
            status=step["status"], batch_start=None, batch_end=None, batches=len(batches), seconds=step["seconds"],
            engine_seconds=step["engine_seconds"], rows_read=step["rows_read"], rows_written=step["rows_written"],
            bytes=step["bytes"], cost_usd=estimate_cost(step["engine"], step["engine_seconds"], rates),
            attributes=attributes,
        ))
        for batch in batches:
            records.append(TelemetryRecord(
                record_key=f"batch:{batch['run_id']}", kind="batch", plan_id=plan_id, step_id=step["step_id"],
                run_id=batch["run_id"], instance_id=instance_id, model=step["model"], engine=step["engine"],
                status=batch["status"], batch_start=_instant(batch["batch_start"]),
                batch_end=_instant(batch["batch_end"]), batches=1, seconds=batch["seconds"],
                engine_seconds=batch["seconds"], rows_read=batch["rows_read"], rows_written=batch["rows_written"],
                bytes=batch["bytes"], cost_usd=estimate_cost(step["engine"], batch["seconds"], rates), attributes={},
            ))
    return records


async def record_steps(store: TelemetryStore, tenant_id: str, plan_id: str, instance_id: str | None,
                       steps: Sequence[StepTelemetry], rates: Mapping[str, float]) -> int:
    """Write the telemetry of `steps`; a store failure is logged and answered with 0, never raised."""
    try:
        return await store.record_telemetry(tenant_id, telemetry_records(plan_id, instance_id, steps, rates))
    except CoreError as exc:
        logger.warning("telemetry of plan %s was not recorded: %s", plan_id[:12], exc)
        return 0


class TelemetrySummary(TypedDict):
    """Per-model statistics and, for charts, each model's newest executed steps."""

    models: list[ModelStats]
    points: dict[str, list[ModelPoint]]


async def telemetry_summary(store: TelemetryStore, tenant_id: str, model: str | None = None) -> TelemetrySummary:
    """Summarize the tenant's executed steps per model (or one model): p50/p95 runtime, rows, estimated cost."""
    samples = await store.step_samples(tenant_id, model)
    return TelemetrySummary(models=summarize(samples), points=model_points(samples))


def _instant(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None
