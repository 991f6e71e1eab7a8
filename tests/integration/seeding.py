"""Seed the state store the way IronLayer itself writes it, for tests that need a ledger in place."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from shared_core.ports import PlanStore, RunStore
from tests.plans import stub_plan


class PlansAndRuns(PlanStore, RunStore, Protocol):
    """What seeding writes through: plans and runs (a `PostgresStateStore` is both)."""


async def record_completed(store: PlansAndRuns, tenant: str, model: str, start: datetime, end: datetime, *,
                           plan_id: str = "f" * 64, reset: bool = False) -> None:
    """Add `[start, end)` of `model` to the ledger as an apply of plan `plan_id` does: one successful run
    whose batch enters the ledger in the same transaction (`finish_run(..., completed=...)`).
    """
    await store.save_plan(tenant, stub_plan(plan_id, base="0" * 40, target="1" * 40, inputs_hash="seed"), "{}")
    step_id = f"seed-{model}"
    run_id = await store.start_run(tenant, plan_id, step_id, model, start, end)
    await store.finish_run(tenant, run_id, "success", rows_written=0,
                           completed=(model, start, end, plan_id, step_id, reset))
