"""Seed the state store the way IronLayer itself writes it, for tests that need a ledger in place."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from shared_core.core.planning.plan import ChangeKind, ModelChange, Plan, PlanInputs, new_plan
from shared_core.core.planning.plan_codec import plan_to_json
from shared_core.core.project.config import PlannerSettings
from shared_core.ports import JobStatus, PlanStore, RunStore, StateStore
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


def small_plan(*changes: tuple[str, ChangeKind, str | None, str | None], target: str = "b" * 40) -> Plan:
    """A valid plan (its IDs check out, so `load_plan` reads it back) whose diff lists `(model, change, old_hash,
    new_hash)` and that has no steps: enough for deciding, staleness and review, without a repository."""
    inputs = PlanInputs(canonicalizer="1", planner=PlannerSettings(), watermarks={})
    return new_plan(base="a" * 40, target=target, as_of="2024-03-01T00:00:00Z", inputs=inputs, steps=(),
                    models=[ModelChange(name, change, old, new, change) for name, change, old, new in changes])


async def seed_awaiting_plan(store: StateStore, tenant: str, plan: Plan, instance: str, *,
                             status: JobStatus | None = "awaiting_approval", author: str = "octocat",
                             repository: str = "o/r") -> None:
    """Store `plan` and its base (what is deployed now) as the Functions do, and its job in `status`
    (None: no job), as `plan_job` and `request_approval` leave them."""
    from shared_core.services.bases import record_plan_base

    await store.ensure_tenant(tenant, tenant)
    await store.save_plan(tenant, plan, plan_to_json(plan))
    await record_plan_base(store, tenant, plan)
    if status is not None:
        await store.upsert_job(tenant, instance, kind="push", repository=repository, target=plan.target,
                               plan_id=plan.plan_id, status=status, author=author)
        await store.set_plan_status(tenant, plan.plan_id, "awaiting_approval")


async def deploy_version(store: StateStore, tenant: str, model: str, content_hash: str, *, tests: str = "",
                         plan_id: str = "e" * 64) -> None:
    """Make `content_hash` (with `tests`) the deployed version of `model`, as a successful step of plan `plan_id`
    records it: under the model's range lock, released in the same transaction (`finish_step`)."""
    lock_id, holder = await store.try_lock(tenant, model, None, None, "seed:1", 60)
    assert lock_id is not None, holder
    await store.finish_step(tenant, lock_id, plan_id, f"seed-{model}", {}, {},
                            (model, "FULL_REFRESH", "TABLE", content_hash, "SELECT 1", {}, tests))
