"""The messages of a plan job: the JSON objects the orchestrator, its activities and its clients pass each other.

Durable Functions passes JSON, so every message is a `TypedDict`: a plain `dict` at run time, with its keys
and value types known to mypy. The activities annotate their input and output with these classes (Azure's
Python worker binds a `TypedDict` class, and refuses generic annotations such as `dict[str, Any]`). This
module imports nothing but `typing`, so the Functions can import it at start-up without cost.

The orchestrator passes the plan's ID and its steps' positions in the plan, never plan bodies (nor step IDs:
its history stays small whatever the plan's size):

    JobMessage -> build_plan_activity(PlanJobRequest) -> PlanRef, or ActivityFailure (the job ends: no plan)
    request_approval_activity(ApprovalRequest) -> ApprovalRequested or ActivityFailure;  event "approval":
        ApprovalEvent
    start_execution_activity(JobIds) -> ExecutionStarted
    check_quota_activity(QuotaRequest) -> QuotaChecked, before the plan executes and before each later wave
    run_steps_orchestrator(ChunkRequest) -> ChunkResult, for each chunk of at most 100 steps of each wave:
        run_step_activity(StepRequest) -> StepResult, for each step of the chunk (with its StepTelemetry)
        record_telemetry_activity(TelemetryRequest) -> TelemetryRecorded, after the chunk (a failure is ignored)
    finalize_activity(FinalizeRequest) -> FinalizeResult;  the orchestration returns JobResult

An activity answers a permanent error (bad input: the same call fails the same way) with its typed failure
(`status` "failed" and a `detail`) and raises a transient one, which Durable retries; a result's `status`
tells the two apart.
"""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict, final

from shared_core.core.state import JobKind

__all__ = [
    "ActivityFailure",
    "ApprovalEvent",
    "ApprovalRequest",
    "ApprovalRequested",
    "BatchTelemetry",
    "ChunkRequest",
    "ChunkResult",
    "Decision",
    "ExecutionStarted",
    "ExhaustedStep",
    "FinalizeRequest",
    "FinalizeResult",
    "JobIds",
    "JobKind",
    "JobMessage",
    "JobOutcome",
    "JobRef",
    "JobResult",
    "PlanFailure",
    "PlanJobRequest",
    "PlanRef",
    "QuotaChecked",
    "QuotaRequest",
    "StepRequest",
    "StepResult",
    "StepStatus",
    "StepTelemetry",
    "TelemetryRecorded",
    "TelemetryRequest",
]

JobOutcome = Literal["succeeded", "failed", "rejected", "expired", "cancelled"]
"""How a job ends (its plan's final status)."""
StepStatus = Literal["success", "failed", "skipped", "done"]
"""How a step ended: ran, failed, skipped (an upstream step did not succeed), or done by an earlier apply."""
Decision = Literal["approve", "reject"]


class JobMessage(TypedDict):
    """The orchestration's input: a `JobInput` as JSON (fields that do not apply to the kind are left out)."""

    kind: JobKind
    tenant_id: str
    repository: str
    base: str
    target: str
    branch: NotRequired[str]  # push: the pushed branch
    models: NotRequired[list[str]]  # schedule: the due models
    as_of: NotRequired[str]  # schedule: the cron's fire time the models catch up to
    author: str
    sequence: NotRequired[int]  # push: its number among the pushes of its branch
    auto_approve: bool
    approval_ttl_hours: int
    step_retries: int


class PlanJobRequest(JobMessage):
    """`build_plan_activity`'s input: the job and the orchestration instance it runs in."""

    instance_id: str


@final
class PlanRef(TypedDict):
    """`build_plan_activity`'s result: the stored plan's ID and its steps as positions in `plan.steps`.

    `waves[w]` lists the positions of wave w's steps; `depends_on[p]` the positions of step p's upstream steps.
    """

    status: Literal["planned"]
    plan_id: str
    waves: list[list[int]]
    depends_on: list[list[int]]
    # tests or contracts change: the plan needs approval even with no step (absent from histories before it)
    checks_changed: NotRequired[bool]


@final
class ActivityFailure(TypedDict):
    """An activity's result when its work failed for good (an invalid model, a commit status GitHub refuses), or
    the orchestrator's stand-in for one whose retries ran out."""

    status: Literal["failed"]
    detail: str


PlanFailure = ActivityFailure
"""`build_plan_activity`'s result when the commits cannot be planned (an unknown commit, an invalid model)."""


class JobRef(TypedDict):
    """What names a job for an activity: its tenant, orchestration instance, repository and target commit."""

    tenant_id: str
    instance_id: str
    repository: str
    target: str


class JobIds(JobRef):
    """A job and its plan (`start_execution_activity`'s input)."""

    plan_id: str


class ApprovalRequest(JobIds):
    """`request_approval_activity`'s input: who pushed (they may not approve alone) and how long the link lives."""

    author: str
    ttl_hours: int


class ApprovalRequested(TypedDict):
    """`request_approval_activity`'s result when the pending commit status carries the link."""

    status: Literal["requested"]
    link_expires_in_hours: int


class ApprovalEvent(TypedDict):
    """The `approval` event raised on the orchestration when a reviewer decides."""

    decision: Decision
    by: str
    comment: str


class ExecutionStarted(TypedDict):
    """`start_execution_activity`'s result: `ok`, or `failed` with why (the plan is missing or stale)."""

    status: Literal["ok", "failed"]
    detail: str


class ChunkRequest(TypedDict):
    """`run_steps_orchestrator`'s input: at most 100 steps of one wave, by position, and which to record skipped."""

    ids: JobIds
    steps: list[int]
    skip: list[int]
    attempts: int  # each step's attempts (the job's step_retries)


class ExhaustedStep(TypedDict):
    """A step whose activity kept failing after every attempt (its infrastructure, not its SQL)."""

    step: int
    detail: str


class ChunkResult(TypedDict):
    """`run_steps_orchestrator`'s result: each step's status, in order; the exhausted steps count as failed."""

    statuses: list[StepStatus]
    exhausted: list[ExhaustedStep]


class StepRequest(JobIds):
    """`run_step_activity`'s input: one step (its position in the plan), and why it is skipped (None: run it)."""

    step: int
    skip_reason: str | None


class BatchTelemetry(TypedDict):
    """One batch of a step as it ran: its run, window, status, runtime and what the engine reported."""

    run_id: int
    batch_start: str | None  # ISO time; None for a step without batches
    batch_end: str | None
    status: str
    seconds: float
    rows_written: int | None
    rows_read: int | None  # None: the engine reports none
    bytes: int | None


class StepTelemetry(TypedDict):
    """One executed step: runtime, engine time, rows and bytes, its batches; cost is estimated when recorded."""

    step_id: str
    model: str
    engine: str
    status: str
    seconds: float
    engine_seconds: float
    rows_written: int
    rows_read: int | None
    bytes: int | None
    error: str | None  # the step's failure text (scrubbed)
    batches: list[BatchTelemetry]


class StepResult(TypedDict):
    """`run_step_activity`'s result: the step's ID and model name (empty when the position is not in the plan);
    `rows_written` and `batches` only when the step ran, `telemetry` when it ran batches."""

    status: StepStatus
    error: str | None
    step_id: str
    model: str
    rows_written: NotRequired[int]
    batches: NotRequired[int]
    telemetry: NotRequired[StepTelemetry]


class TelemetryRequest(JobIds):
    """`record_telemetry_activity`'s input: the steps of a chunk that ran, as their activities reported them."""

    steps: list[StepTelemetry]


class TelemetryRecorded(TypedDict):
    """`record_telemetry_activity`'s result: how many records were written."""

    recorded: int


class QuotaRequest(JobIds):
    """`check_quota_activity`'s input: how many steps are about to start (the plan's, or the next wave's)."""

    steps: int
    first: bool  # before the plan's first wave (True) or a later one


class QuotaChecked(TypedDict):
    """`check_quota_activity`'s result: ok, wait (concurrency, 429) or blocked (402), the message, when to re-check."""

    status: Literal["ok", "wait", "blocked"]
    message: str
    http_status: int
    retry_after_seconds: int


class FinalizeRequest(JobRef):
    """`finalize_activity`'s input: how the job ended, and a line saying why (no plan: planning failed)."""

    plan_id: str | None
    outcome: JobOutcome
    detail: str


class FinalizeResult(TypedDict):
    """`finalize_activity`'s result."""

    status: JobOutcome


class JobResult(TypedDict):
    """What the orchestration returns (no plan ID when the commits could not be planned)."""

    plan_id: str | None
    status: JobOutcome
