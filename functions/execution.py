"""Execution activities: the stale check before the first step, one step, and the final bookkeeping.

`run_step_activity` runs a step with exactly the code of `ironlayer apply` (`shared_core.services.apply.run_step`
and the configured executor). A step whose SQL fails or whose BLOCK test fails returns `failed`; an
infrastructure failure (state store down) raises, so Durable's retry policy runs it again, and the
warehouse markers make the retry exact.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import azure.durable_functions as df

from shared_core.core.errors import CoreError, StateUnavailableError
from shared_core.settings import get_settings

bp = df.Blueprint()
logger = logging.getLogger(__name__)


async def _load(ids: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    from functions.resources import get_git_source, read_stored_plan
    from shared_core.core.errors import PlanError
    from shared_core.core.project.loading import load_commit

    settings = get_settings()
    plan = await read_stored_plan(ids["plan_id"], settings)
    if plan is None:
        raise PlanError(f"plan {ids['plan_id'][:12]} is missing from the blob store")
    source = get_git_source(settings)
    commit = await asyncio.to_thread(load_commit, source, plan["target"])
    return plan, commit.project


@bp.activity_trigger(input_name="ids")
async def start_execution_activity(ids: dict[str, Any]) -> dict[str, Any]:
    """Refuse a stale plan (its consulted watermarks moved since planning); mark it running."""
    from functions.resources import get_store, read_stored_plan
    from shared_core.services.apply import StalePlanError, check_not_stale

    settings = get_settings()
    store = await get_store(settings)
    plan = await read_stored_plan(ids["plan_id"], settings)
    if plan is None:
        return {"status": "failed", "detail": f"plan {ids['plan_id'][:12]} is missing from the blob store"}
    try:
        await check_not_stale(store, ids["tenant_id"], plan)
    except StalePlanError as exc:
        return {"status": "failed", "detail": str(exc)}
    await store.set_plan_status(ids["tenant_id"], ids["plan_id"], "running")
    await store.upsert_job(ids["tenant_id"], ids["instance_id"], status="running", detail="running steps")
    return {"status": "ok", "detail": ""}


@bp.activity_trigger(input_name="request")
async def run_step_activity(request: dict[str, Any]) -> dict[str, Any]:
    """Run (or, with `skip_reason`, record as skipped) one step of the plan."""
    from functions.resources import get_executor, get_store
    from shared_core.core.sql.canonical import resolve_canonical
    from shared_core.ports import InlineAnalyzer
    from shared_core.services.apply import RunOptions, run_step

    settings = get_settings()
    store = await get_store(settings)
    tenant, plan_id, step_id = request["tenant_id"], request["plan_id"], request["step_id"]
    plan, project = await _load(request)
    step = next((s for s in plan["steps"] if s["step_id"] == step_id), None)
    if step is None:
        return {"status": "failed", "error": f"step {step_id[:12]} is not in plan {plan_id[:12]}"}
    if request.get("skip_reason"):
        await store.record_skipped(tenant, plan_id, step_id, step["model"], request["skip_reason"])
        return {"status": "skipped", "error": request["skip_reason"]}
    model = project[step["model"]]
    try:
        executor = get_executor(settings)
    except CoreError as exc:  # a configured engine that cannot run: the step fails, clearly
        run_id = await store.start_run(tenant, plan_id, step_id, model.name, None, None)
        await store.finish_run(tenant, run_id, "failed", error=str(exc))
        return {"status": "failed", "error": str(exc)}
    try:
        analysis = InlineAnalyzer().analyze_many([(model.key, model.path, model.text)])[model.key]
        options = RunOptions(tenant=tenant, parallelism=1)
        outcome = await run_step(plan_id, step, model, store, executor, options,
                                 canonical=resolve_canonical(analysis, model.ref_targets))
    except StateUnavailableError:
        raise  # transient: Durable retries the activity
    finally:
        executor.close()
    return {"status": outcome.status, "error": outcome.error, "rows_written": outcome.rows_written,
            "batches": outcome.batches}


@bp.activity_trigger(input_name="request")
async def finalize_activity(request: dict[str, Any]) -> dict[str, Any]:
    """Record the plan's outcome, set the job status and the final commit status (success or failure)."""
    from functions.resources import get_status_publisher, get_store

    settings = get_settings()
    store = await get_store(settings)
    outcome = request["outcome"]  # succeeded | failed | rejected | expired | cancelled
    await store.set_plan_status(request["tenant_id"], request["plan_id"], outcome)
    job_status = {"succeeded": "succeeded", "cancelled": "cancelled"}.get(outcome, "failed")
    await store.upsert_job(request["tenant_id"], request["instance_id"], status=job_status, detail=request["detail"])
    state = "success" if outcome == "succeeded" else "failure"  # rejected or expired is a failure, never neutral
    description = f"IronLayer plan {request['plan_id'][:12]} {outcome}: {request['detail']}"
    try:
        await asyncio.to_thread(get_status_publisher(settings).publish, request["target"], state, description)
    except CoreError as exc:
        logger.warning("could not set the commit status of %s: %s", request["target"][:12], exc)
    return {"status": outcome}
