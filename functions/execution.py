"""Execution activities: the stale check before the first step, one step, and the final bookkeeping.

`run_step_activity` runs a step with exactly the code of `ironlayer apply` (`shared_core.services.apply`)
and the executor of the job's repository (`functions.resources.clients_for`: resolved from the job's
tenant and repository, never from deployment-wide settings). A step whose SQL fails or whose BLOCK test
fails returns `failed`; an infrastructure failure (state store down) raises, so Durable's retry policy
runs it again, and the warehouse markers make the retry exact. Every activity's output and failure is
scrubbed before Durable history records it (`functions.history.scrubbed`).
"""

from __future__ import annotations

import logging

import azure.durable_functions as df

from functions.history import scrubbed
from shared_core.services.messages import (
    ExecutionStarted,
    FinalizeRequest,
    FinalizeResult,
    JobIds,
    StepRequest,
    StepResult,
)
from shared_core.settings import get_settings

bp = df.Blueprint()
logger = logging.getLogger(__name__)


@bp.activity_trigger(input_name="ids")
@scrubbed
async def start_execution_activity(ids: JobIds) -> ExecutionStarted:
    """Refuse a missing or stale plan (its consulted watermarks moved since planning); mark it running."""
    from functions.resources import clients_for, get_store
    from shared_core.services.apply import start_execution

    settings = get_settings()
    clients = await clients_for(ids["tenant_id"], ids["repository"], settings)
    started = await start_execution(await get_store(settings), clients.blobs, tenant_id=ids["tenant_id"],
                                    plan_id=ids["plan_id"], instance=ids["instance_id"])
    return ExecutionStarted(status=started.status, detail=started.detail)


@bp.activity_trigger(input_name="request")
@scrubbed
async def run_step_activity(request: StepRequest) -> StepResult:
    """Run (or, with `skip_reason`, record as skipped) one step of the plan, on the repository's own warehouse."""
    from functions.resources import clients_for, get_store
    from shared_core.services.apply import run_job_step

    settings = get_settings()
    clients = await clients_for(request["tenant_id"], request["repository"], settings)
    report = await run_job_step(
        await get_store(settings), clients.blobs, clients.source, clients.open_executor,
        tenant_id=request["tenant_id"], plan_id=request["plan_id"], step_id=request["step_id"],
        skip_reason=request.get("skip_reason"),
    )
    result = StepResult(status=report.status, error=report.error)
    if report.rows_written is not None and report.batches is not None:
        result["rows_written"], result["batches"] = report.rows_written, report.batches
    return result


@bp.activity_trigger(input_name="request")
@scrubbed
async def finalize_activity(request: FinalizeRequest) -> FinalizeResult:
    """Record the plan's outcome (when there is a plan), set the job status and the final commit status on the
    repository's status target (success or failure)."""
    from functions.resources import clients_for, get_store
    from shared_core.services.jobs import finish_job

    settings = get_settings()
    outcome = request["outcome"]
    clients = await clients_for(request["tenant_id"], request["repository"], settings)
    await finish_job(await get_store(settings), clients.publisher, tenant_id=request["tenant_id"],
                     plan_id=request["plan_id"], instance=request["instance_id"], target=request["target"],
                     outcome=outcome, detail=request["detail"])
    return FinalizeResult(status=outcome)
