"""Execution: the stale check before the first step, the sub-orchestration of a chunk of steps, one step, and
the final bookkeeping.

`run_steps_orchestrator` runs at most `STEPS_PER_CHUNK` steps of one wave (the parent passes their
positions in the plan and which of them to record as skipped): each step is a `run_step_activity` with
the job's retry policy, and every step finishes and is recorded before the chunk reports, even when one
step's retries ran out. Its history holds only its own steps, so a 2,000-step plan never replays a
history that grows with the plan.

`run_step_activity` runs a step with exactly the code of `ironlayer apply` (`shared_core.services.apply`)
and the executor of the job's repository (`functions.resources.clients_for`: resolved from the job's
tenant and repository, never from deployment-wide settings). A step whose SQL fails or whose BLOCK test
fails returns `failed`, and so does a permanent error around it (a plan that is not there); a transient
failure (PostgreSQL or GitHub unavailable) raises, so Durable's retry policy runs it again, and the
warehouse markers make the retry exact. Every activity's output and failure is scrubbed before Durable
history records it (`functions.history.scrubbed`).
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from typing import Any

import azure.durable_functions as df

from functions.history import scrubbed
from shared_core.services.messages import (
    ChunkRequest,
    ChunkResult,
    ExecutionStarted,
    ExhaustedStep,
    FinalizeRequest,
    FinalizeResult,
    JobIds,
    StepRequest,
    StepResult,
    StepStatus,
)
from shared_core.settings import get_settings

bp = df.Blueprint()
logger = logging.getLogger(__name__)
SKIPPED = "skipped: an upstream step did not succeed"


# Any: the orchestrator yields Durable tasks (the SDK ships no types) and is sent back their results, parsed JSON
# read through the types of `shared_core.services.messages`.
@bp.orchestration_trigger(context_name="context")
def run_steps_orchestrator(context: df.DurableOrchestrationContext) -> Generator[Any, Any, ChunkResult]:
    """Run a chunk of one wave (`ChunkRequest`): every step, each under the job's retry policy; then hand the
    steps' telemetry to the telemetry function (its failure is ignored).

    Returns:
        Each step's status, in order, and the steps whose activity kept failing after every attempt (`failed`
        in the statuses, and listed with the reason).
    """
    from functions.durable import STEP_RETRY_MS, settle
    from functions.telemetry import record_wave_telemetry

    chunk: ChunkRequest = context.get_input()
    skip = set(chunk["skip"])
    retry = df.RetryOptions(first_retry_interval_in_milliseconds=STEP_RETRY_MS,
                            max_number_of_attempts=chunk["attempts"])
    tasks = [context.call_activity_with_retry(
        "run_step_activity", retry,
        StepRequest(**chunk["ids"], step=step, skip_reason=SKIPPED if step in skip else None))
        for step in chunk["steps"]]
    statuses: list[StepStatus] = []
    exhausted: list[ExhaustedStep] = []
    results: list[StepResult] = []
    for step, settled in zip(chunk["steps"], (yield from settle(context, tasks)), strict=True):
        if settled.ok:
            result: StepResult = settled.value
            statuses.append(result["status"])
            results.append(result)
        else:
            statuses.append("failed")
            exhausted.append(ExhaustedStep(step=step, detail=settled.error))
    yield from record_wave_telemetry(context, chunk["ids"], results)  # best effort: never fails the chunk
    return ChunkResult(statuses=statuses, exhausted=exhausted)


@bp.activity_trigger(input_name="ids")
@scrubbed
async def start_execution_activity(ids: JobIds) -> ExecutionStarted:
    """Refuse a missing or stale plan (its consulted watermarks moved since planning); mark it running.

    Returns:
        `ok`, or `failed` with why; a transient failure raises (retried by the orchestrator).
    """
    from functions.resources import clients_for, get_store
    from shared_core.core.errors import CoreError, is_transient
    from shared_core.services.apply import start_execution
    from shared_core.services.failures import failure_text

    settings = get_settings()
    try:
        clients = await clients_for(ids["tenant_id"], ids["repository"], settings)
        started = await start_execution(await get_store(settings), clients.blobs, tenant_id=ids["tenant_id"],
                                        plan_id=ids["plan_id"], instance=ids["instance_id"])
    except CoreError as exc:
        if is_transient(exc):
            raise
        return ExecutionStarted(status="failed", detail=f"the plan cannot be executed: {failure_text(exc)}")
    return ExecutionStarted(status=started.status, detail=started.detail)


@bp.activity_trigger(input_name="request")
@scrubbed
async def run_step_activity(request: StepRequest) -> StepResult:
    """Run (or, with `skip_reason`, record as skipped) the step at position `step` of the plan, on the
    repository's own warehouse.

    Returns:
        How the step ended, with its ID and model; a permanent error around it (the plan is not there) is
        `failed`; a transient failure raises (retried by the chunk's policy).
    """
    from functions.resources import clients_for, get_store
    from shared_core.core.errors import CoreError, is_transient
    from shared_core.services.apply import run_job_step
    from shared_core.services.failures import failure_text

    settings = get_settings()
    try:
        clients = await clients_for(request["tenant_id"], request["repository"], settings)
        report = await run_job_step(
            await get_store(settings), clients.blobs, clients.source, clients.open_executor,
            tenant_id=request["tenant_id"], plan_id=request["plan_id"], step=request["step"],
            skip_reason=request.get("skip_reason"), engine=clients.resources.engine,
        )
    except CoreError as exc:
        if is_transient(exc):
            raise
        return StepResult(status="failed", error=failure_text(exc), step_id="", model="")
    result = StepResult(status=report.status, error=report.error, step_id=report.step_id, model=report.model)
    if report.rows_written is not None and report.batches is not None:
        result["rows_written"], result["batches"] = report.rows_written, report.batches
    if report.telemetry is not None:  # recorded by the telemetry function after the chunk
        result["telemetry"] = report.telemetry
    return result


@bp.activity_trigger(input_name="request")
@scrubbed
async def finalize_activity(request: FinalizeRequest) -> FinalizeResult:
    """Record the plan's outcome (when there is a plan), set the job status and the final commit status on the
    repository's status target (success or failure).

    Everything it writes is idempotent, so it raises on a transient failure (PostgreSQL down, GitHub
    unavailable for the commit status) and the orchestrator's policy runs it again; a commit status GitHub
    refuses for good (the token's permission) is logged, and the job's outcome is recorded either way, even
    when the repository's clients cannot be built (it was offboarded meanwhile).
    """
    from functions.resources import clients_for, get_store
    from shared_core.core.errors import CoreError, is_transient
    from shared_core.ports import StatusPublisher
    from shared_core.services.jobs import finish_job

    settings = get_settings()
    outcome = request["outcome"]
    publisher: StatusPublisher | None
    try:
        publisher = (await clients_for(request["tenant_id"], request["repository"], settings)).publisher
    except CoreError as exc:
        if is_transient(exc):
            raise
        logger.warning("job %s: no commit status target: %s", request["instance_id"], exc)
        publisher = None
    await finish_job(await get_store(settings), publisher, tenant_id=request["tenant_id"],
                     plan_id=request["plan_id"], instance=request["instance_id"], target=request["target"],
                     outcome=outcome, detail=request["detail"])
    return FinalizeResult(status=outcome)
