"""`plan_orchestrator` and `build_plan_activity`: from a push (or a schedule) to an approved, executed plan.

The orchestrator only decides; every side effect is an activity. It is deterministic: time comes from
`context.current_utc_datetime`, settings from its input (a `JobInput`, fixed when the job was started),
and it passes plan and step IDs, never plan bodies. Which step is skipped and how the plan ends are the
runner's rules (`shared_core.services.apply`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Generator
from datetime import timedelta
from typing import Any

import azure.durable_functions as df

from functions.history import scrubbed
from shared_core.services.messages import (
    ApprovalEvent,
    ApprovalRequest,
    ExecutionStarted,
    FinalizeRequest,
    JobIds,
    JobOutcome,
    JobRef,
    JobResult,
    PlanFailure,
    PlanJobRequest,
    PlanRef,
    StepRequest,
    StepResult,
)
from shared_core.settings import get_settings

bp = df.Blueprint()
logger = logging.getLogger(__name__)


# Any: the orchestrator yields Durable tasks (the SDK ships no types) and is sent back what they produced,
# activity results and event payloads as parsed JSON, read through the types of `shared_core.services.messages`.
Orchestration = Generator[Any, Any, JobResult]


@bp.orchestration_trigger(context_name="context")
def plan_orchestrator(context: df.DurableOrchestrationContext) -> Orchestration:
    from shared_core.services.apply import failed_steps, first_broken_upstream, plan_outcome
    from shared_core.services.jobs import JobInput

    job = JobInput.model_validate(context.get_input())
    job_ref = JobRef(tenant_id=job.tenant_id, instance_id=context.instance_id, repository=job.repository,
                     target=job.target)
    request: PlanJobRequest = {**job.to_input(), "instance_id": context.instance_id}
    planned: PlanRef | PlanFailure = yield context.call_activity("build_plan_activity", request)
    if "status" in planned:  # the commits cannot be planned (unknown commit, invalid model): no plan
        yield context.call_activity("finalize_activity", FinalizeRequest(**job_ref, plan_id=None, outcome="failed",
                                                                         detail=planned["detail"]))
        return {"plan_id": None, "status": "failed"}
    ref = planned
    plan_id = ref["plan_id"]
    ids = JobIds(**job_ref, plan_id=plan_id)

    def finalize(outcome: JobOutcome, detail: str) -> Any:  # Any: a Durable task (untyped SDK)
        return context.call_activity("finalize_activity", FinalizeRequest(**ids, outcome=outcome, detail=detail))

    if not ref["waves"] and not ref.get("checks_changed"):
        yield finalize("succeeded", "nothing to run: no model's data, tests or contract changed")
        return {"plan_id": plan_id, "status": "succeeded"}
    if not job.auto_approve:
        yield context.call_activity("request_approval_activity",
                                    ApprovalRequest(**ids, author=job.author, ttl_hours=job.approval_ttl_hours))
        context.set_custom_status({"status": "awaiting_approval", "plan_id": plan_id})
        answer = yield from await_approval(context, job.approval_ttl_hours)
        if answer is None:
            yield finalize("expired", f"not approved within {job.approval_ttl_hours} h")
            return {"plan_id": plan_id, "status": "expired"}
        decision = _decision(answer)
        if decision["decision"] != "approve":
            yield finalize("rejected", f"rejected by {decision['by']}")
            return {"plan_id": plan_id, "status": "rejected"}
    started: ExecutionStarted = yield context.call_activity("start_execution_activity", ids)
    if started["status"] != "ok":
        yield finalize("failed", started["detail"])
        return {"plan_id": plan_id, "status": "failed"}
    context.set_custom_status({"status": "running", "plan_id": plan_id})
    retry = df.RetryOptions(first_retry_interval_in_milliseconds=5000, max_number_of_attempts=job.step_retries)
    outcomes: dict[str, str] = {}
    for wave in ref["waves"]:
        tasks = []
        for step in wave:
            broken = first_broken_upstream(step["depends_on"], outcomes)
            skip = "skipped: an upstream step did not succeed" if broken is not None else None
            tasks.append(context.call_activity_with_retry(
                "run_step_activity", retry, StepRequest(**ids, step_id=step["step_id"], skip_reason=skip)))
        try:
            results: list[StepResult] = yield context.task_all(tasks)
        except Exception as exc:  # retries exhausted: the step's infrastructure kept failing
            yield finalize("failed", f"a step kept failing after {job.step_retries} attempts: {exc}")
            return {"plan_id": plan_id, "status": "failed"}
        for step, result in zip(wave, results, strict=True):
            outcomes[step["step_id"]] = result["status"]
    failed, outcome = failed_steps(outcomes), plan_outcome(outcomes)
    yield finalize(outcome, f"{len(failed)} of {len(outcomes)} steps did not succeed" if failed else
                   f"{len(outcomes)} steps succeeded" if outcomes else "tests or contracts changed; nothing to rebuild")
    return {"plan_id": plan_id, "status": outcome}


#: The longest durable timer the orchestrator creates. Azure Storage's longest single timer is 6 days; the
#: SDK splits longer ones itself (azure-functions-durable>=1.3.0), but a split timer is not cancelled
#: with the decision (azure-functions-durable-python#573): waiting in slices keeps every timer a plain one.
TIMER_SLICE = timedelta(hours=72)


def await_approval(context: df.DurableOrchestrationContext, hours: int) -> Generator[Any, Any, object]:  # Any: as above
    """Wait for the `approval` event up to `hours` after now; its payload, or None when the time ran out.

    The wait is a race of the event with timers of at most `TIMER_SLICE`, one after the other up to the
    deadline; the timer running when the event arrives is cancelled. Used with `yield from`.
    """
    deadline = context.current_utc_datetime + timedelta(hours=hours)
    approval = context.wait_for_external_event("approval")
    fire_at = context.current_utc_datetime
    while fire_at < deadline:
        fire_at = min(deadline, fire_at + TIMER_SLICE)
        timer = context.create_timer(fire_at)
        winner = yield context.task_any([approval, timer])
        if winner is approval:
            timer.cancel()
            return approval.result
    return None


def _decision(value: object) -> ApprovalEvent:
    """The `approval` event's payload (a JSON object, or its text); anything but an approval rejects."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            value = None
    if not isinstance(value, dict):
        return ApprovalEvent(decision="reject", by="a reviewer", comment="")
    return ApprovalEvent(decision="approve" if value.get("decision") == "approve" else "reject",
                         by=str(value.get("by", "a reviewer")), comment=str(value.get("comment", "")))


@bp.activity_trigger(input_name="job")
@scrubbed
async def build_plan_activity(job: PlanJobRequest) -> PlanRef | PlanFailure:
    """Plan the job's commits (or its scheduled catch-up) with its repository's resources, store the plan in the
    tenant's blobs and PostgreSQL.

    Returns:
        The plan ID, its steps by wave, `[[{"step_id", "depends_on"}, ...], ...]`, and whether tests or contracts
        change (`checks_changed`: approval is needed even with no step): IDs only, never the body; or
        `{"status": "failed", "detail"}` when the commits cannot be planned (a commit that is not in the
        repository, an invalid model): a terminal failure of the job, not a retry. A state store or blob
        store that cannot be reached raises (safe to retry).
    """
    from functions.resources import clients_for, get_analyzer, get_store
    from shared_core.core.errors import CoreError, StateUnavailableError
    from shared_core.services.failures import failure_text
    from shared_core.services.jobs import JobInput
    from shared_core.services.plans import plan_job

    instance = job["instance_id"]
    parsed = JobInput.model_validate({key: value for key, value in job.items() if key != "instance_id"})
    settings = get_settings()
    store = await get_store(settings)
    try:
        clients = await clients_for(parsed.tenant_id, parsed.repository, settings)
        analyzer = get_analyzer(parsed.tenant_id, settings)
        try:
            planned = await plan_job(parsed, instance, store=store, blobs=clients.blobs, source=clients.source,
                                     analyzer=analyzer)
        finally:
            analyzer.close()
    except StateUnavailableError:
        raise
    except CoreError as exc:
        logger.warning("job %s of %s cannot be planned: %s", instance, parsed.repository, exc)
        return PlanFailure(status="failed",
                           detail=f"cannot plan {parsed.target[:12]} of {parsed.repository}: {failure_text(exc)}")
    return planned
