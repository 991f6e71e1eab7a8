"""Job use cases: the typed input of a plan job (a push or a schedule), starting it once, ending it, cancelling it.

The webhook and the schedule tick build a `JobInput` here and start it through `start_job`, which starts
each piece of work exactly once: a redelivered webhook delivery starts nothing; a push is numbered on its
branch (the same push delivered again, or by a second webhook, keeps its number; the same commits pushed
again after another push, a force-push back and forth, get a new one), which makes its deterministic
instance ID; and the job row, inserted once per instance in PostgreSQL, is the claim that lets exactly one
caller start it. The orchestrator reads the same model back with `JobInput.model_validate`. The
orchestration client, state store and status publisher are arguments: nothing here builds an adapter.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal, Protocol

from pydantic import BaseModel, ConfigDict

from shared_core.core.errors import CoreError
from shared_core.core.state import JobKind, JobStatus
from shared_core.services.messages import JobMessage, JobOutcome

if TYPE_CHECKING:
    from shared_core.core.project.models import Project
    from shared_core.ports import (
        DeploymentStore,
        GitSource,
        JobStore,
        LedgerStore,
        Orchestrations,
        QueryAnalyzer,
        StateStore,
        StatusPublisher,
    )

    class ScheduleStore(LedgerStore, JobStore, DeploymentStore, Protocol):
        """What finding due schedules reads: the ledger, the jobs that are busy, the deployed versions."""

__all__ = [
    "ORCHESTRATOR",
    "JobCancel",
    "JobInput",
    "JobKind",
    "JobOutcome",
    "JobPolicy",
    "JobStart",
    "cancel_job",
    "due_schedule_jobs",
    "finish_job",
    "instance_id",
    "push_job",
    "schedule_job",
    "start_job",
]

logger = logging.getLogger(__name__)
ORCHESTRATOR = "plan_orchestrator"


def instance_id(kind: str, *parts: str) -> str:
    """A deterministic orchestration instance ID: the same work always gets the same ID.

    >>> instance_id("push", "o/r", "a" * 40, "b" * 40)[:10]
    'push-33632'
    """
    digest = hashlib.sha256("\0".join((kind, *parts)).encode()).hexdigest()
    return f"{kind}-{digest[:32]}"


class JobInput(BaseModel):
    """What a plan job is: the orchestration's input, fixed when the job is started (JSON via `to_input`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: JobKind
    tenant_id: str
    repository: str
    base: str
    target: str
    branch: str | None = None  # push: the pushed branch
    models: tuple[str, ...] | None = None  # schedule: the due models
    as_of: str | None = None  # schedule: the cron's fire time the models catch up to
    author: str = ""
    sequence: int | None = None  # push: its number among the pushes of its branch (see `start_job`)
    auto_approve: bool
    approval_ttl_hours: int
    step_retries: int

    def to_input(self) -> JobMessage:
        """The JSON object handed to the orchestration (fields that do not apply to the kind are left out).

        It is `model_dump(mode="json", exclude_none=True)`, written out so that its type is the message's.
        """
        message: JobMessage = {
            "kind": self.kind, "tenant_id": self.tenant_id, "repository": self.repository, "base": self.base,
            "target": self.target, "author": self.author, "auto_approve": self.auto_approve,
            "approval_ttl_hours": self.approval_ttl_hours, "step_retries": self.step_retries,
        }
        if self.branch is not None:
            message["branch"] = self.branch
        if self.models is not None:
            message["models"] = list(self.models)
        if self.as_of is not None:
            message["as_of"] = self.as_of
        if self.sequence is not None:
            message["sequence"] = self.sequence
        return message

    @property
    def instance_id(self) -> str:
        """The orchestration instance ID: a push by repository, branch, commits and its number on the branch; a
        schedule by commit, fire time and models."""
        if self.kind == "push":
            return instance_id("push", self.repository.lower(), self.branch or "", self.base, self.target,
                               str(self.sequence or 0))
        return instance_id("schedule", self.repository.lower(), self.target, self.as_of or "", *(self.models or ()))


@dataclass(frozen=True)
class JobPolicy:
    """How this deployment runs jobs (from the settings): approval and retries."""

    auto_approve: bool
    approval_ttl_hours: int
    step_retries: int


def push_job(*, tenant_id: str, repository: str, base: str, target: str, branch: str, author: str,
             policy: JobPolicy) -> JobInput:
    """The job of a push: plan `base` -> `target` of `repository`."""
    return JobInput(kind="push", tenant_id=tenant_id, repository=repository, base=base, target=target,
                    branch=branch, author=author, auto_approve=policy.auto_approve,
                    approval_ttl_hours=policy.approval_ttl_hours, step_retries=policy.step_retries)


def schedule_job(*, tenant_id: str, repository: str, sha: str, models: Sequence[str], as_of: str,
                 policy: JobPolicy) -> JobInput:
    """The job of a schedule: catch up `models` at commit `sha` up to `as_of`."""
    return JobInput(kind="schedule", tenant_id=tenant_id, repository=repository, base=sha, target=sha,
                    models=tuple(models), as_of=as_of, author="schedule", auto_approve=policy.auto_approve,
                    approval_ttl_hours=policy.approval_ttl_hours, step_retries=policy.step_retries)


async def due_schedule_jobs(source: GitSource, store: ScheduleStore, analyzer: QueryAnalyzer, *, tenant_id: str,
                            repository: str, branch: str, now: datetime, policy: JobPolicy) -> list[JobInput]:
    """The catch-up jobs due at `now`: incremental models of the branch head whose cron fired, by fire time.

    A schedule runs only what was approved, and never twice at once: a due model is left out while a job
    with a step of it is planned, awaiting approval or running, and unless it is deployed exactly as it is
    at the branch head (same content hash and tests: a change pushed since, or rejected, waits for an
    approved plan; a model never deployed waits for its first plan).

    Raises:
        CoreError: the branch, its models or the ledger cannot be read.
    """
    from shared_core.core.planning.schedules import due_models
    from shared_core.core.project.headers import format_instant
    from shared_core.core.project.loading import load_commit

    sha = await asyncio.to_thread(source.resolve, branch)
    project = (await asyncio.to_thread(load_commit, source, sha)).project
    ledger = await store.load_ledger(tenant_id)
    due = due_models(project, ledger, now)
    busy = await store.busy_models(tenant_id)
    runnable = await _deployed_as_at_head(store, analyzer, tenant_id, project,
                                          [model.name for model in due if model.name not in busy])
    for name in sorted({model.name for model in due} - set(runnable)):
        why = "a run of it is planned, awaiting approval or running" if name in busy else (
            "its version at the branch head is not the deployed one; it waits for an approved plan")
        logger.info("schedule %s: %s not caught up: %s", format_instant(now), name, why)
    groups: dict[datetime, list[str]] = {}
    for model in due:
        if model.name in runnable:
            groups.setdefault(model.fired_at, []).append(model.name)
    return [schedule_job(tenant_id=tenant_id, repository=repository, sha=sha, models=names,
                         as_of=format_instant(fired_at), policy=policy) for fired_at, names in sorted(groups.items())]


async def _deployed_as_at_head(store: DeploymentStore, analyzer: QueryAnalyzer, tenant_id: str, project: Project,
                               names: Sequence[str]) -> set[str]:
    """The models of `names` whose deployed version is their version in `project` (content hash and tests)."""
    from shared_core.core.planning.base import render_tests

    if not names:
        return set()
    models = [project[name] for name in names]
    analyses = await asyncio.to_thread(analyzer.analyze_many, [(m.key, m.path, m.text) for m in models])
    deployed = await store.deployed_versions(tenant_id, list(names))
    runnable = set()
    for model in models:
        now = deployed.get(model.name)
        if now is None or now["content_hash"] != model.content_hash(analyses[model.key]):
            continue
        if now["tests"] is None or now["tests"] == render_tests(model.header):
            runnable.add(model.name)
    return runnable


@dataclass(frozen=True)
class JobStart:
    """What starting a job did: `accepted` (started now) or `duplicate` (with the reason)."""

    status: Literal["accepted", "duplicate"]
    instance_id: str
    reason: str = ""


async def start_job(store: JobStore, orchestrations: Orchestrations, job: JobInput, *,
                    delivery_id: str | None = None) -> JobStart:
    """Start the job's orchestration unless this delivery, or this push or schedule, was started before.

    "The same push" is the same webhook delivery (GitHub's redelivery keeps its ID), or the same move of the
    branch head (`before` -> `after`) while it is the branch's newest push: concurrent deliveries of one
    push (a second webhook, a retry) share one run. The same commits pushed again after another push of the
    branch (A->B, B->A, A->B) are a new push and run again. A schedule is the same when its repository,
    commit, fire time and models are. Claims are atomic in PostgreSQL (no check-then-start): the delivery
    row, the branch's push number, then the job row; only the caller that inserted the job row starts the
    orchestration. When the start fails, both claims are released so that GitHub's redelivery can try again.

    Raises:
        StateUnavailableError: the state store or the Durable task hub cannot be reached (safe to retry).
    """
    from shared_core.core.errors import StateUnavailableError

    if delivery_id is not None and not await store.claim_delivery(job.tenant_id, delivery_id, job.kind, None):
        return JobStart("duplicate", "", "this delivery was already received")
    if job.kind == "push":
        sequence = await store.push_sequence(job.tenant_id, job.repository, job.branch or "", job.base, job.target)
        job = job.model_copy(update={"sequence": sequence})
    instance = job.instance_id
    detail = None if job.kind == "push" else f"schedule for {', '.join(job.models or ())}"
    claimed = await store.claim_job(job.tenant_id, instance, kind=job.kind, repository=job.repository,
                                    target=job.target, author=job.author, detail=detail, delivery_id=delivery_id)
    if not claimed:
        what = "this push" if job.kind == "push" else "this schedule"
        return JobStart("duplicate", instance, f"a run for {what} already exists")
    try:
        await orchestrations.start_new(ORCHESTRATOR, instance, job.to_input())
    except Exception as exc:
        await store.release_job(job.tenant_id, instance)
        if delivery_id is not None:
            await store.release_delivery(job.tenant_id, delivery_id)  # let GitHub redeliver
        logger.warning("orchestration %s could not be started: %s", instance, type(exc).__name__)
        raise StateUnavailableError(f"the orchestration {instance} could not be started "
                                    f"({type(exc).__name__}); safe to retry") from exc
    return JobStart("accepted", instance)


async def finish_job(store: StateStore, publisher: StatusPublisher | None, *, tenant_id: str, plan_id: str | None,
                     instance: str, target: str, outcome: JobOutcome, detail: str) -> None:
    """Record how the job ended: the plan's status (when it got a plan), the job's status, the final commit status.

    A job without a plan failed before one could be made (its commits cannot be planned). A succeeded plan
    also deploys the tests it changed without rebuilding their models. A rejected or expired plan is a
    failure on the commit, never neutral. Every write is idempotent, so the caller may run it again: a
    commit status GitHub cannot take right now (`SourceUnavailableError`) is raised after the job's outcome
    is recorded, so the retry sets it; one GitHub refuses for good (the token's permission), or no publisher
    at all (the repository's clients cannot be built), is logged. The detail is scrubbed once
    (`failure_text`) for the job row and the commit status alike.

    Raises:
        StateUnavailableError: the state store cannot be reached (safe to retry).
        SourceUnavailableError: the commit status could not be set yet (safe to retry).
    """
    from shared_core.core.errors import is_transient
    from shared_core.services.failures import failure_text

    detail = failure_text(detail)
    if plan_id is not None:
        if outcome == "succeeded":
            from shared_core.services.bases import deploy_plan_tests

            await deploy_plan_tests(store, tenant_id, plan_id)
        await store.set_plan_status(tenant_id, plan_id, outcome)
    job_status: JobStatus = outcome if outcome in ("succeeded", "cancelled") else "failed"
    await store.upsert_job(tenant_id, instance, status=job_status, detail=detail)
    if publisher is None:
        logger.warning("job %s ended %s; no commit status can be set for %s", instance, outcome, target[:12])
        return
    state = "success" if outcome == "succeeded" else "failure"
    subject = f"IronLayer plan {plan_id[:12]}" if plan_id is not None else "IronLayer planning"
    try:
        await asyncio.to_thread(publisher.publish, target, state, f"{subject} {outcome}: {detail}")
    except CoreError as exc:
        if is_transient(exc):
            raise
        logger.warning("could not set the commit status of %s: %s", target[:12], exc)


@dataclass(frozen=True)
class JobCancel:
    """What cancelling did: `cancelled`, or why not (`not_found`, or `finished` with the job's final status).

    `status` is the job's status afterwards (None when there is no such job).
    """

    result: Literal["cancelled", "not_found", "finished"]
    status: JobStatus | None = None
    runs_cancelled: int = 0


async def cancel_job(store: StateStore, orchestrations: Orchestrations, tenant_id: str, instance: str, *, actor: str,
                     role: str, via: str) -> JobCancel:
    """Stop a job that has not finished: terminate the orchestration, cancel its runs and plan, audit it.

    Args:
        store: the state store.
        orchestrations: the orchestration client.
        tenant_id: the job's tenant.
        instance: the job's orchestration instance ID.
        actor, role: who cancels (audited).
        via: through what, for the orchestration's termination reason (e.g. "the API").
    """
    from shared_core.services.audit import record_audit

    job = await store.get_job(tenant_id, instance)
    if job is None:
        return JobCancel("not_found")
    if job["status"] in ("succeeded", "failed", "cancelled"):
        return JobCancel("finished", status=job["status"])
    await orchestrations.terminate(instance, f"cancelled through {via} by {actor}")
    plan_id = job["plan_id"]
    cancelled = await store.cancel_runs(tenant_id, plan_id) if plan_id else 0
    if plan_id:
        await store.set_plan_status(tenant_id, plan_id, "cancelled")
    await store.upsert_job(tenant_id, instance, status="cancelled", detail=f"cancelled by {actor}")
    await record_audit(store, tenant_id, actor=actor, role=role, action="job.cancelled", target=instance,
                       details={"plan_id": job["plan_id"], "runs_cancelled": cancelled})
    return JobCancel("cancelled", status="cancelled", runs_cancelled=cancelled)
