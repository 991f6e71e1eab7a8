"""`plan_orchestrator` and `build_plan_activity`: from a push (or a schedule) to an approved, executed plan.

The orchestrator only decides; every side effect is an activity. It is deterministic: time comes from
`context.current_utc_datetime`, settings from its input (a `JobInput`, fixed when the job was started),
and it passes the plan's ID and its steps' positions, never plan bodies. Which step is skipped and how the
plan ends are the runner's rules (`shared_core.services.apply`); retries, fan-outs that wait for every
task and typed failures are `functions.durable`'s; the steps themselves run in `run_steps_orchestrator`
(`functions.execution`), one sub-orchestration per chunk of a wave.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Generator
from datetime import timedelta
from typing import Any

import azure.durable_functions as df

from functions.history import scrubbed
from shared_core.services.messages import (
    ActivityFailure,
    ApprovalEvent,
    ApprovalRequest,
    ApprovalRequested,
    ChunkRequest,
    ChunkResult,
    ExecutionStarted,
    FinalizeRequest,
    JobIds,
    JobOutcome,
    JobRef,
    JobResult,
    PlanJobRequest,
    PlanRef,
)
from shared_core.settings import get_settings

bp = df.Blueprint()
logger = logging.getLogger(__name__)


# Any: the orchestrator yields Durable tasks (the SDK ships no types) and is sent back what they produced,
# activity results and event payloads as parsed JSON, read through the types of `shared_core.services.messages`.
Orchestration = Generator[Any, Any, JobResult]


@bp.orchestration_trigger(context_name="context")
def plan_orchestrator(context: df.DurableOrchestrationContext) -> Orchestration:
    """Plan, ask for approval, execute wave by wave in sub-orchestrations, and always finalize with a reason.

    Every failure path ends in `finalize_activity` (a terminal job, a final commit status): a plan that
    cannot be built, an approval that cannot be requested, a stale plan, a step whose retries ran out, a quota
    that stays exceeded for a week (before the plan and before each later wave it waits for its quota). Steps
    run in `run_steps_orchestrator`s of at most `STEPS_PER_CHUNK` steps each, so no history grows with the
    plan: this one holds the waves as step positions and each chunk's statuses.
    """
    from functions.billing import await_quota
    from functions.durable import FINALIZE_RETRY, attempt, chunks, settle
    from shared_core.services.apply import failed_steps, first_broken_upstream, plan_outcome
    from shared_core.services.jobs import JobInput

    job = JobInput.model_validate(context.get_input())
    job_ref = JobRef(tenant_id=job.tenant_id, instance_id=context.instance_id, repository=job.repository,
                     target=job.target)
    plan_id: str | None = None

    def finalize(outcome: JobOutcome, detail: str) -> Orchestration:
        # retried longer than any other activity; if even that runs out, the orchestration fails loudly
        yield context.call_activity_with_retry("finalize_activity", FINALIZE_RETRY,
                                               FinalizeRequest(**job_ref, plan_id=plan_id, outcome=outcome,
                                                               detail=detail))
        return JobResult(plan_id=plan_id, status=outcome)

    request: PlanJobRequest = {**job.to_input(), "instance_id": context.instance_id}
    planned: PlanRef | ActivityFailure = yield from attempt(context, "build_plan_activity", request)
    if planned["status"] != "planned":  # the commits cannot be planned, or planning kept failing: no plan
        return (yield from finalize("failed", planned["detail"]))
    plan_id = planned["plan_id"]
    ids = JobIds(**job_ref, plan_id=plan_id)
    if not planned["waves"] and not planned.get("checks_changed"):
        return (yield from finalize("succeeded", "nothing to run: no model's data, tests or contract changed"))
    if not job.auto_approve:
        requested: ApprovalRequested | ActivityFailure = yield from attempt(
            context, "request_approval_activity", ApprovalRequest(**ids, author=job.author,
                                                                  ttl_hours=job.approval_ttl_hours))
        if requested["status"] != "requested":
            return (yield from finalize("failed", f"approval could not be requested: {requested['detail']}"))
        context.set_custom_status({"status": "awaiting_approval", "plan_id": plan_id})
        answer = yield from await_approval(context, job.approval_ttl_hours)
        if answer is None:
            return (yield from finalize("expired", f"not approved within {job.approval_ttl_hours} h"))
        decision = _decision(answer)
        if decision["decision"] != "approve":
            return (yield from finalize("rejected", f"rejected by {decision['by']}"))
    waves, depends_on = planned["waves"], planned["depends_on"]
    if waves:  # the tenant's quota before the plan executes: all its steps, and a concurrency slot (it waits)
        refused = yield from await_quota(context, ids, steps=sum(len(wave) for wave in waves), first=True)
        if refused is not None:
            return (yield from finalize("failed", refused))
    started: ExecutionStarted | ActivityFailure = yield from attempt(context, "start_execution_activity", ids)
    if started["status"] != "ok":
        return (yield from finalize("failed", started["detail"]))
    statuses: dict[int, str] = {}
    for number, wave in enumerate(waves):
        if number:  # and before each later wave: the month's steps may have run out meanwhile
            refused = yield from await_quota(context, ids, steps=len(wave), first=False)
            if refused is not None:
                return (yield from finalize("failed", refused))
        context.set_custom_status({"status": "running", "plan_id": plan_id, "wave": number + 1, "waves": len(waves)})
        parts = chunks(wave)
        tasks = [context.call_sub_orchestrator(
            "run_steps_orchestrator",
            ChunkRequest(ids=ids, steps=part, attempts=job.step_retries,
                         skip=[p for p in part if first_broken_upstream(depends_on[p], statuses) is not None]),
            f"{context.instance_id}-w{number}-c{index}") for index, part in enumerate(parts)]
        problems: list[str] = []  # steps that kept failing (their infrastructure, not their SQL), failed chunks
        for part, settled in zip(parts, (yield from settle(context, tasks)), strict=True):
            if settled.ok:
                result: ChunkResult = settled.value
                statuses.update(zip(part, result["statuses"], strict=True))
                problems += [f"step #{e['step']} kept failing after {job.step_retries} attempts: {e['detail']}"
                             for e in result["exhausted"]]
            else:  # the chunk itself failed (a bug): its steps are unaccounted for
                statuses.update(dict.fromkeys(part, "failed"))
                problems.append(f"the chunk of steps #{part[0]}-#{part[-1]} failed: {settled.error}")
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            return (yield from finalize("failed", f"{problems[0]}{more}; wave {number + 1} of {len(waves)} "
                                                  "finished, later waves did not run"))
    failed, outcome = failed_steps(statuses), plan_outcome(statuses)
    return (yield from finalize(outcome, f"{len(failed)} of {len(statuses)} steps did not succeed" if failed else
                                f"{len(statuses)} steps succeeded" if statuses else
                                "tests or contracts changed; nothing to rebuild"))


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
async def build_plan_activity(job: PlanJobRequest) -> PlanRef | ActivityFailure:
    """Plan the job's commits (or its scheduled catch-up) with its repository's resources, store the plan in the
    tenant's blobs and PostgreSQL.

    Returns:
        The plan's ID, its steps as positions in the plan (each wave's, and each step's upstream steps'),
        never the body, and whether tests or contracts change (`checks_changed`: approval is needed even with
        no step); or `{"status": "failed", "detail"}` when the commits cannot be planned (bad SQL pushed,
        a commit that is not in the repository, GitHub refusing the token): a terminal failure of the job, not
        a retry. A transient failure (PostgreSQL or GitHub unavailable) raises, and the orchestrator's policy
        retries it.
    """
    from functions.resources import clients_for, get_analyzer, get_store
    from shared_core.core.errors import CoreError, is_transient
    from shared_core.services.failures import failure_text
    from shared_core.services.jobs import JobInput
    from shared_core.services.plans import plan_job

    instance = job["instance_id"]
    parsed = JobInput.model_validate({key: value for key, value in job.items() if key != "instance_id"})
    settings = get_settings()
    try:
        store = await get_store(settings)
        clients = await clients_for(parsed.tenant_id, parsed.repository, settings)
        analyzer = get_analyzer(parsed.tenant_id, settings)
        try:
            planned = await plan_job(parsed, instance, store=store, blobs=clients.blobs, source=clients.source,
                                     analyzer=analyzer)
        finally:
            await asyncio.to_thread(analyzer.close)
    except CoreError as exc:
        if is_transient(exc):
            raise
        logger.warning("job %s of %s cannot be planned: %s", instance, parsed.repository, exc)
        return ActivityFailure(status="failed",
                               detail=f"cannot plan {parsed.target[:12]} of {parsed.repository}: {failure_text(exc)}")
    return planned
