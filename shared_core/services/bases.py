"""Plan bases: record what a plan was built against, refuse it once that moved, deploy what it carries.

Two things a plan is built against can move after it was made: the watermark ledger of the incremental
models it read (another plan ran their ranges), and the deployed versions of the models it touches (a
newer plan ran, or a backfill changed a model's version). `record_plan_base` stores the second beside the
plan when it is made (the plan's bytes never change; `shared_core.core.planning.base` defines the
document); `check_not_stale` refuses a plan, with "re-plan" as the answer, when either moved. Approving
(`services.approvals`), starting a job (`services.apply.start_execution`) and `ironlayer apply` all call
it, for push plans, scheduled catch-ups and backfills alike. A plan that succeeded deploys, with its
base, the quality tests of the models it changed without rebuilding them (`deploy_plan_tests`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from shared_core.core.errors import StalePlanError
from shared_core.core.planning.base import (
    PlanBase,
    Version,
    decode_base,
    deployed_base,
    drift_message,
    find_drift,
    plan_models,
    stated_base,
)
from shared_core.core.planning.plan import Plan
from shared_core.core.planning.watermarks import snapshot
from shared_core.ports import DeploymentStore, LedgerStore


class StalenessStore(LedgerStore, DeploymentStore, Protocol):
    """What the staleness check reads: the ledger and the deployed versions with the plans' bases."""


def consulted_models(plan: Plan) -> list[str]:
    """The models whose ledger decided the plan and must not have moved: those with incremental steps, and
    those without a `start` whose ledger placed their backfill (in the plan's watermark snapshot), except a
    backfill from empty (`reset`), which replaces the ledger it read."""
    incremental = {s.model for s in plan.steps if s.run_type == "incremental"}
    reset = {s.model for s in plan.steps if s.reset}
    return sorted(incremental | (set(plan.inputs.watermarks) - reset))


async def record_plan_base(store: DeploymentStore, tenant_id: str, plan: Plan, *,
                           tests: Mapping[str, Version] | None = None) -> PlanBase:
    """Record, beside the plan, the versions deployed now of every model it touches (its base).

    Args:
        store: the state store.
        tenant_id: the plan's tenant.
        plan: the plan document.
        tests: the tests the plan deploys for models it does not rebuild (`review.deployed_tests`).

    Returns:
        The recorded base.
    """
    deployed = await store.deployed_versions(tenant_id, plan_models(plan))
    base = deployed_base(plan, deployed, tests)
    await store.save_plan_base(tenant_id, base.plan_id, base.document(), base.base_hash)
    return base


async def plan_base_of(store: DeploymentStore, tenant_id: str, plan: Plan) -> PlanBase:
    """The plan's recorded base, or, for a plan made without a state store, the base its content states.

    Raises:
        PlanError: the recorded base is malformed or does not belong to the plan.
    """
    recorded = await store.plan_base(tenant_id, plan.plan_id)
    if recorded is None:
        return stated_base(plan)
    return decode_base(plan.plan_id, *recorded)


async def check_not_stale(store: StalenessStore, tenant_id: str, plan: Plan) -> None:
    """Refuse a plan whose consulted watermarks or whose base's deployed versions moved since it was made.

    The plan's own progress (its ranges, the versions it deployed) is not a move: a resumed apply passes.

    Raises:
        StalePlanError: naming the first model that moved and what to do (re-plan).
        PlanError: the plan's recorded base is damaged.
    """
    models = consulted_models(plan)
    now = snapshot(await store.ledger_before(tenant_id, models, plan.plan_id), models) if models else {}
    then = plan.inputs.watermarks
    for model in models:
        if now.get(model, ()) != then.get(model, ()):
            planned, current = [list(r) for r in then.get(model, ())], [list(r) for r in now.get(model, ())]
            raise StalePlanError(
                f"stale plan {plan.plan_id[:12]}: the watermarks of {model} moved since planning "
                f"(planned on {planned}, now {current}); re-plan and apply the new plan"
            )
    base = await plan_base_of(store, tenant_id, plan)
    drift = find_drift(base, await store.deployed_versions(tenant_id, sorted(base.base)))
    if drift is not None:
        raise StalePlanError(drift_message(plan.plan_id, drift))


async def deploy_plan_tests(store: DeploymentStore, tenant_id: str, plan_id: str,
                            tests: Mapping[str, Version] | None = None) -> int:
    """After a plan succeeded: deploy the quality tests it changed without rebuilding their models.

    Args:
        tests: model -> (content hash, tests); default: the `tests` recorded with the plan's base (none when
            no base was recorded).

    Returns:
        How many models now carry the plan's tests.

    Raises:
        PlanError: the plan's recorded base is damaged.
    """
    if tests is None:
        recorded = await store.plan_base(tenant_id, plan_id)
        tests = decode_base(plan_id, *recorded).tests if recorded else {}
    return await store.deploy_tests(tenant_id, plan_id, tests)
