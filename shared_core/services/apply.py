"""Apply a plan: wave by wave, bounded parallelism, range locks, one run per batch, resumable.

The same `run_step` serves `ironlayer apply` and the Functions execution activity, and the rules of
which step runs, which is skipped and how a plan ends (`first_broken_upstream`, `failed_steps`,
`plan_waves`) are written here once for the runner and the orchestrator. Guarantees:

- a plan whose consulted watermarks or base (the deployed model versions it was built against) moved since
  planning is refused (`StalePlanError`, `shared_core.services.bases`);
- each batch is one engine transaction that records its own marker, keyed by model version and range, so
  a batch is never applied twice, even when the process dies between the engine's commit and the state
  store's record: a resume of the plan records it, and so does a catch-up of an APPEND_ONLY model by
  another plan (`shared_core.core.planning.markers.batch_action`); a backfill asked for again
  (`RunOptions.rerun`) re-runs its batches, replacing their rows, and one that would append rows twice (an
  APPEND_ONLY model without a time column) is refused before anything runs;
- the ledger advances only for batches that committed; a failed step skips its downstream steps and
  lets independent branches finish; re-applying the plan resumes (successful batches are not re-run);
- overlapping ranges of one model never run at the same time: the second apply waits for the lock up to
  a timeout and then fails naming the holder; locks of a dead process on this host are broken at once,
  others expire with their TTL;
- a failure's text is `failure_text` (scrubbed) everywhere it goes: the run table, the step's outcome
  (the CLI's apply summary) and the job step's report (the Functions' activity output);
- an apply that is cancelled (Ctrl-C) stops the engine's running statement, marks its unfinished runs and
  the plan `cancelled` and releases its locks before the cancellation goes on: nothing stays `running`,
  and applying the plan again resumes.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, TypeVar

from shared_core.core.errors import CoreError, ExecutionError, LockTimeoutError, PlanError, StalePlanError
from shared_core.core.planning.base import Version, render_tests
from shared_core.core.planning.intervals import add_batches
from shared_core.core.planning.markers import (
    BatchAction,
    BatchMarker,
    CommittedBatch,
    batch_action,
    reappend_conflict,
    reappend_refusal,
)
from shared_core.core.planning.plan import Plan, Step
from shared_core.core.project.headers import parse_instant
from shared_core.core.project.loading import load_commit
from shared_core.core.project.models import Model, Project
from shared_core.core.sql.canonical import resolve_canonical
from shared_core.core.state import QualityResult
from shared_core.core.telemetry import StatementLike, engine_counts
from shared_core.ports import (
    BatchOutcome,
    BlobStore,
    Executor,
    GitSource,
    QueryAnalyzer,
    RunStore,
    StatementOutcome,
    StateStore,
)
from shared_core.services.bases import check_not_stale, consulted_models, deploy_plan_tests, record_plan_base
from shared_core.services.failures import failure_text
from shared_core.services.messages import BatchTelemetry, StepStatus, StepTelemetry

__all__ = [
    "NOT_SUCCEEDED",
    "Event",
    "ExecutionStart",
    "Executor",
    "RunOptions",
    "StepOutcome",
    "StepReport",
    "StepStatus",
    "VerifiedPlan",
    "acquire_lock",
    "apply_plan",
    "check_not_stale",
    "consulted_models",
    "failed_steps",
    "first_broken_upstream",
    "plan_outcome",
    "plan_waves",
    "refuse_reappends",
    "run_apply",
    "run_job_step",
    "run_step",
    "start_execution",
    "step_actions",
    "step_batches",
    "step_positions",
    "verify_plan",
]

K = TypeVar("K", str, int)  # a step's name in a statuses mapping: its ID, or its position in the plan
NOT_SUCCEEDED = frozenset({"failed", "skipped"})  # step statuses that make the plan fail and skip downstream


@dataclass
class StepOutcome:
    """How one step ended."""

    step_id: str
    model: str
    status: StepStatus  # done: already succeeded in an earlier apply
    rows_written: int = 0
    seconds: float = 0.0
    engine_seconds: float = 0.0
    batches: int = 0
    tests: list[QualityResult] = field(default_factory=list)  # (test, severity, passed, failing rows)
    error: str | None = None
    telemetry: list[BatchTelemetry] = field(default_factory=list)  # each batch the engine ran, for telemetry
    statements: list[StatementOutcome] = field(default_factory=list)  # each statement's time, rows, bytes, query ID


@dataclass(frozen=True)
class RunOptions:
    tenant: str
    parallelism: int = 4
    lock_timeout: float = 60.0
    lock_ttl: int = 300
    holder: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    rerun: bool = False  # run every batch again, even those an earlier apply of the plan committed (a backfill)
    engine: str = "duckdb"  # the engine's name in telemetry
    rates: tuple[tuple[str, float], ...] = ()  # engine rates (US dollars per hour) for telemetry's cost estimates


Event = Callable[[Literal["start", "batch", "end"], Step, StepOutcome | None], None]
"""Called when a step starts (without an outcome), after each of its batches that committed, and when it
ends (with its outcome)."""


def plan_waves(plan: Plan) -> list[list[Step]]:
    """The plan's steps grouped by `parallel_group`, in wave order (topological order within a wave)."""
    waves: dict[int, list[Step]] = {}
    for step in plan.steps:
        waves.setdefault(step.parallel_group, []).append(step)
    return [waves[wave] for wave in sorted(waves)]


def step_positions(plan: Plan) -> tuple[list[list[int]], list[list[int]]]:
    """The plan's steps by position in `plan.steps`: each wave's positions, and each step's upstream positions.

    Orchestrations pass these small numbers instead of step IDs; the plan (stored by its ID) names the steps.
    """
    position = {step.step_id: index for index, step in enumerate(plan.steps)}
    waves = [[position[step.step_id] for step in wave] for wave in plan_waves(plan)]
    return waves, [[position[upstream] for upstream in step.depends_on] for step in plan.steps]


def first_broken_upstream(depends_on: Sequence[K], statuses: Mapping[K, str]) -> K | None:
    """The first upstream step that did not succeed (its step is skipped), or None when the step may run.

    Steps are named by ID or by position, as long as `depends_on` and `statuses` agree.

    >>> first_broken_upstream(["a", "b"], {"a": "success", "b": "skipped"})
    'b'
    """
    return next((d for d in depends_on if statuses.get(d) in NOT_SUCCEEDED), None)


def failed_steps(statuses: Mapping[K, str]) -> list[K]:
    """The steps (IDs or positions) that failed or were skipped, sorted.

    >>> failed_steps({"b": "failed", "a": "done", "c": "success"})
    ['b']
    """
    return sorted(step for step, status in statuses.items() if status in NOT_SUCCEEDED)


def plan_outcome(statuses: Mapping[K, str]) -> Literal["succeeded", "failed"]:
    """How a plan ends: failed when any step failed or was skipped, else succeeded."""
    return "failed" if failed_steps(statuses) else "succeeded"


def step_batches(step: Step) -> list[tuple[datetime | None, datetime | None]]:
    """The batches of a step, each one engine transaction: `(None, None)` for non-incremental steps."""
    if step.start is None or step.end is None or step.batch is None:
        return [(None, None)]
    cursor, end, unit = parse_instant(step.start), parse_instant(step.end), step.batch
    batches: list[tuple[datetime | None, datetime | None]] = []
    while cursor < end:
        nxt = add_batches(cursor, unit, 1)
        batches.append((cursor, nxt))
        cursor = nxt
    return batches


def step_actions(
    plan_id: str, step: Step, recorded: set[tuple[str, datetime | None]],
    committed: Sequence[CommittedBatch], *, rerun: bool,
) -> list[tuple[datetime | None, datetime | None, BatchAction, int]]:
    """Each batch of a step with what the apply does about it (`batch_action`) and the rows its marker holds."""
    return [
        (start, end, *batch_action(
            plan_id=plan_id, step_id=step.step_id, kind=step.kind, run_type=step.run_type, start=start,
            end=end, recorded=(step.step_id, start) in recorded, committed=committed, rerun=rerun,
        ))
        for start, end in step_batches(step)
    ]


def refuse_reappends(
    plan: Plan, project: Project, markers: Mapping[str, Sequence[CommittedBatch]],
    recorded: set[tuple[str, datetime | None]], *, rerun: bool,
) -> None:
    """Refuse, before anything runs, a plan that would append rows the warehouse already holds: a batch to run
    of an APPEND_ONLY model without a time column over a committed range (unless the plan rebuilds that model
    from empty).

    Raises:
        ExecutionError: naming the model, the range and what to do.
    """
    rebuilt = {s.model for s in plan.steps if s.reset}
    for step in plan.steps:
        model = project[step.model]
        header = model.header
        if step.model in rebuilt or header.kind != "APPEND_ONLY" or header.time_column:
            continue
        committed = markers.get(step.model, [])
        for start, end, action, _ in step_actions(plan.plan_id, step, recorded, committed, rerun=rerun):
            held = reappend_conflict(header.kind, header.time_column, start, end, committed)
            if action == "run" and held is not None and start is not None and end is not None:
                raise ExecutionError(reappend_refusal(model.name, model.path, start, end, held)
                                     + "; nothing was run")


async def apply_plan(
    plan: Plan,
    project: Project,
    store: StateStore,
    executor: Executor,
    options: RunOptions,
    *,
    canonical: Mapping[str, str] | None = None,
    on_event: Event | None = None,
) -> list[StepOutcome]:
    """Execute every step of `plan` (resuming an earlier apply of it) and return their outcomes."""
    plan_id = plan.plan_id
    await check_not_stale(store, options.tenant, plan)
    done = await store.successful_batches(options.tenant, plan_id)
    # one warehouse read for the whole plan; the executor re-checks, inside each batch's transaction, that it
    # never appends rows twice, and the range locks keep other applies off these ranges meanwhile
    markers = await asyncio.to_thread(executor.committed_batches, plan.step_models)
    refuse_reappends(plan, project, markers, done, rerun=options.rerun)
    await store.set_plan_status(options.tenant, plan_id, "running")
    outcomes: dict[str, StepOutcome] = {}
    statuses: dict[str, str] = {}
    limit = asyncio.Semaphore(max(1, options.parallelism))

    async def one(step: Step) -> None:
        broken = first_broken_upstream(step.depends_on, statuses)
        if broken is not None:
            reason = f"skipped: upstream step of {outcomes[broken].model} did not succeed"
            await store.record_skipped(options.tenant, plan_id, step.step_id, step.model, reason)
            outcomes[step.step_id] = StepOutcome(step.step_id, step.model, "skipped", error=reason)
        else:
            async with limit:
                if on_event:
                    on_event("start", step, None)
                outcomes[step.step_id] = await run_step(
                    plan_id, step, project[step.model], store, executor, options, done=done,
                    canonical=(canonical or {}).get(step.model), committed=markers.get(step.model, []),
                    on_batch=(lambda outcome: on_event("batch", step, outcome)) if on_event else None,
                )
        statuses[step.step_id] = outcomes[step.step_id].status
        if on_event:
            on_event("end", step, outcomes[step.step_id])

    try:
        for wave in plan_waves(plan):
            await asyncio.gather(*(one(step) for step in wave))
    except asyncio.CancelledError:
        executor.interrupt()  # stop the statement a worker thread is running: its transaction rolls back
        await store.cancel_runs(options.tenant, plan_id)
        await store.set_plan_status(options.tenant, plan_id, "cancelled")
        raise
    await store.set_plan_status(options.tenant, plan_id, plan_outcome(statuses))
    from shared_core.services.telemetry import record_steps, step_telemetry

    reports = [report for o in outcomes.values() if (report := step_telemetry(o, options.engine)) is not None]
    await record_steps(store, options.tenant, plan_id, None, reports, dict(options.rates))  # never raises
    return [outcomes[s.step_id] for s in plan.steps]


async def run_step(
    plan_id: str,
    step: Step,
    model: Model,
    store: RunStore,
    executor: Executor,
    options: RunOptions,
    *,
    done: set[tuple[str, datetime | None]] | None = None,
    canonical: str | None = None,
    committed: Sequence[CommittedBatch] | None = None,
    on_batch: Callable[[StepOutcome], None] | None = None,
) -> StepOutcome:
    """Run the batches of one step under its range lock; never raises for a batch failure.

    `done` and `committed` (the model's warehouse markers) are read here when the caller has not read them;
    `on_batch(outcome)` is called after each batch that committed now.
    """
    started = time.perf_counter()
    outcome = StepOutcome(step.step_id, model.name, "success")
    recorded = done if done is not None else await store.successful_batches(options.tenant, plan_id)
    if committed is None:
        committed = (await asyncio.to_thread(executor.committed_batches, [model.name])).get(model.name, [])
    batches = step_actions(plan_id, step, recorded, committed, rerun=options.rerun)
    if all(action == "done" for _, _, action, _ in batches):
        outcome.status = "done"
        return outcome
    start_all = parse_instant(step.start) if step.start else None
    end_all = parse_instant(step.end) if step.end else None
    try:
        lock_id = await acquire_lock(store, options, model.name, start_all, end_all, (plan_id, step.step_id))
    except LockTimeoutError as exc:
        run_id = await store.start_run(options.tenant, plan_id, step.step_id, model.name, start_all, end_all)
        outcome.status, outcome.error = "failed", failure_text(exc)
        await store.finish_run(options.tenant, run_id, "failed", error=outcome.error)
        return outcome
    try:
        for index, (start, end, action, rows) in enumerate(batches):
            if action == "done":
                continue
            reset = step.reset and index == 0
            error = await _run_batch(
                plan_id, step, model, store, executor, options, start, end, reset, outcome,
                rows if action == "record" else None,
            )
            if error:
                outcome.status, outcome.error = "failed", error
                break
            if on_batch is not None:
                on_batch(outcome)
            if index < len(batches) - 1:  # the last batch is followed by the release
                await store.renew_lock(options.tenant, lock_id, options.lock_ttl)
        outcome.seconds = time.perf_counter() - started
        header = model.header
        await store.finish_step(  # one transaction: release the lock, telemetry, the deployed model version
            options.tenant, lock_id, plan_id, step.step_id,
            {"step_seconds": outcome.seconds, "engine_seconds": outcome.engine_seconds,
             "rows_written": outcome.rows_written, "batches": outcome.batches},
            {"model": model.name, "status": outcome.status},
            (model.name, header.kind, header.materialization, step.model_hash, canonical or "", dict(header.raw),
             render_tests(header)) if outcome.status == "success" else None,
        )
    except BaseException:
        await store.release_lock(options.tenant, lock_id)
        raise
    return outcome


async def _run_batch(
    plan_id: str, step: Step, model: Model, store: RunStore, executor: Executor, options: RunOptions,
    start: datetime | None, end: datetime | None, reset: bool, outcome: StepOutcome, committed: int | None,
) -> str | None:
    """Run (or, when it already committed in the warehouse, only record) one batch; returns an error or None."""
    tenant, step_id = options.tenant, step.step_id
    run_id = await store.start_run(tenant, plan_id, step_id, model.name, start, end)
    if committed is None:
        began = time.perf_counter()
        try:
            marker = BatchMarker(plan_id, step_id, step.model_hash)
            result = await _in_thread(executor, model, start, end, reset, marker)
        except CoreError as exc:
            tests = [(t.test, t.severity, t.passed, t.failing_rows) for t in getattr(exc, "outcomes", ())]
            outcome.tests.extend(tests)
            error = failure_text(exc)
            outcome.telemetry.append(_batch_telemetry(run_id, start, end, "failed", time.perf_counter() - began,
                                                      None, ()))
            await store.finish_run(tenant, run_id, "failed", error=error, tests=tests)
            return error
        finally:
            outcome.engine_seconds += time.perf_counter() - began
        rows = int(result.rows_written)
        tests = [(t.test, t.severity, t.passed, t.failing_rows) for t in result.tests]
        outcome.telemetry.append(_batch_telemetry(run_id, start, end, "success", time.perf_counter() - began, rows,
                                                  result.statements))
        outcome.statements.extend(result.statements)
    else:  # committed by an apply that died before recording it: record, never re-apply
        rows, tests = committed, []
    outcome.tests.extend(tests)
    outcome.rows_written += rows
    outcome.batches += 1
    completed = (model.name, start, end, plan_id, step_id, reset) if start is not None and end is not None else None
    await store.finish_run(tenant, run_id, "success", rows_written=rows, tests=tests, completed=completed)
    return None


def _batch_telemetry(run_id: int, start: datetime | None, end: datetime | None, status: str, seconds: float,
                     rows: int | None, statements: Sequence[StatementLike]) -> BatchTelemetry:
    """One batch as telemetry records it; rows read and bytes are what the engine's statements reported."""
    counts = engine_counts(statements)
    return BatchTelemetry(run_id=run_id, batch_start=start.isoformat() if start else None,
                          batch_end=end.isoformat() if end else None, status=status, seconds=round(seconds, 6),
                          rows_written=rows, rows_read=counts["rows_read"], bytes=counts["bytes"])


async def _in_thread(executor: Executor, model: Model, start: datetime | None, end: datetime | None, reset: bool,
                     marker: BatchMarker) -> BatchOutcome:
    """`executor.run_batch` in a worker thread; when this task is cancelled (Ctrl-C, a job cancelled, a
    timeout), the running statements are stopped too rather than left to finish unattended."""
    try:
        return await asyncio.to_thread(executor.run_batch, model, start=start, end=end, reset=reset, marker=marker)
    except asyncio.CancelledError:
        executor.interrupt()  # never blocks: a warehouse's cancellation requests leave from a thread of their own
        raise


async def acquire_lock(
    store: RunStore, options: RunOptions, model: str, start: datetime | None, end: datetime | None,
    interrupted: tuple[str, str] | None = None,
) -> int:
    """Wait for the range lock of `model` up to the timeout; with `interrupted` = (plan_id, step_id), taking it
    also fails that step's runs left `running` by a dead process.

    Raises:
        LockTimeoutError: naming the holder.
    """
    deadline = time.monotonic() + options.lock_timeout
    while True:
        lock_id, holder = await store.try_lock(
            options.tenant, model, start, end, options.holder, options.lock_ttl, interrupted=interrupted
        )
        if lock_id is not None:
            return int(lock_id)
        if holder and _dead_local_holder(holder):
            await store.break_locks(options.tenant, holder.split(" ")[0])
            continue
        if time.monotonic() >= deadline:
            window = f" [{start:%Y-%m-%d %H:%M}, {end:%Y-%m-%d %H:%M})" if start and end else ""
            raise LockTimeoutError(
                f"{model}{window} is locked by {holder}; waited {options.lock_timeout:g}s. Wait for that apply "
                "to finish, or raise --lock-timeout"
            )
        await asyncio.sleep(0.2)


def _dead_local_holder(holder: str) -> bool:
    """Whether a `host:pid` holder is a process of this host that no longer exists."""
    host, _, pid = holder.split(" ")[0].rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@dataclass(frozen=True)
class VerifiedPlan:
    """A plan checked against the repository it is applied from: the target's project and canonical SQL."""

    plan: Plan
    project: Project
    canonical: dict[str, str]  # the canonical SQL of each step's model, recorded as the deployed version
    tests: dict[str, Version] = field(default_factory=dict)  # tests deployed without a run (no step, tests changed)


def verify_plan(plan: Plan, source: GitSource, analyzer: QueryAnalyzer, *, where: str) -> VerifiedPlan:
    """Check that every step's model is in the plan's target commit of `source` exactly as it was planned.

    Args:
        plan: the plan document.
        source: the repository the plan is applied from (`where` names it in errors).
        analyzer: turns the steps' model files into canonical SQL.
        where: how errors name the repository, e.g. its path.

    Raises:
        SourceError: the target commit is not in the repository.
        PlanError: a step's model is missing or differs from the planned version.
    """
    project = load_commit(source, source.resolve(plan.target)).project
    step_models = plan.step_models
    missing = [m for m in step_models if m not in project]
    if missing:
        raise PlanError(f"plan step model {missing[0]} is not in {where} at {plan.target[:12]}; "
                        "apply the plan to the repository it was made from")
    analyses = analyzer.analyze_many([(project[m].key, project[m].path, project[m].text) for m in step_models])
    canonical = {m: resolve_canonical(analyses[project[m].key], project[m].ref_targets) for m in step_models}
    for step in plan.steps:
        model = project[step.model]
        if model.content_hash(analyses[model.key]) != step.model_hash:
            raise PlanError(f"{model.path}: {model.name} differs from the version the plan was made from; re-plan")
    return VerifiedPlan(plan, project, canonical, metadata_tests(plan, source, project))


def metadata_tests(plan: Plan, source: GitSource, target: Project) -> dict[str, Version]:
    """The tests a plan deploys without a run: of each model whose change is metadata only, has no step and
    whose tests changed, its content hash and tests at the plan's target (the base commit is read only then).
    """
    from shared_core.core.planning.review import check_changes, deployed_tests

    stepped = set(plan.step_models)
    if not any(entry.name not in stepped for entry in plan.changes("metadata")):
        return {}
    base = load_commit(source, source.resolve(plan.base)).project
    return deployed_tests(plan, check_changes(plan, base, target))


async def run_apply(verified: VerifiedPlan, store: StateStore, executor: Executor, options: RunOptions, *, actor: str,
                    on_event: Event | None = None, record_base: bool = False) -> list[StepOutcome]:
    """Apply a verified plan as an engineer: record the plan, audit the start, apply, audit the end; when every
    step succeeded, deploy the tests the plan changed without a run.

    Args:
        record_base: record what is deployed now as the plan's base first (a backfill, planned and applied at
            once); otherwise the base recorded when the plan was made applies, or the one its content states.

    Raises:
        StalePlanError: the plan's consulted watermarks or base moved since planning.
        StateError: the state store refuses or cannot be reached.
    """
    from shared_core.core.planning.plan_codec import plan_to_json
    from shared_core.services.audit import record_audit

    plan = verified.plan
    await store.save_plan(options.tenant, plan, plan_to_json(plan))
    if record_base:
        await record_plan_base(store, options.tenant, plan, tests=verified.tests)
    await record_audit(store, options.tenant, actor=actor, role="engineer", action="apply.started",
                       target=plan.plan_id, details={"steps": len(plan.steps), "target": plan.target})
    try:
        outcomes = await apply_plan(plan, verified.project, store, executor, options, canonical=verified.canonical,
                                    on_event=on_event)
    except asyncio.CancelledError:
        await record_audit(store, options.tenant, actor=actor, role="engineer", action="apply.interrupted",
                           target=plan.plan_id, details={"steps": len(plan.steps)})
        raise
    failed = len(failed_steps({o.step_id: o.status for o in outcomes}))
    if not failed:
        await deploy_plan_tests(store, options.tenant, plan.plan_id, verified.tests)
    await record_audit(store, options.tenant, actor=actor, role="engineer", action="apply.finished",
                       target=plan.plan_id, details={"failed_or_skipped": failed, "steps": len(outcomes)})
    return outcomes


@dataclass(frozen=True)
class ExecutionStart:
    """Whether a job's plan may execute (`ok`), or why not (`failed` with the detail)."""

    status: Literal["ok", "failed"]
    detail: str = ""


async def start_execution(store: StateStore, blobs: BlobStore, *, tenant_id: str, plan_id: str,
                          instance: str) -> ExecutionStart:
    """Before a job's first step: refuse a missing or stale plan, or one whose approval was not recorded (its
    decision failed after the event went out: fail closed), else mark the plan and the job running."""
    from shared_core.services.plans import read_stored_plan

    plan = await read_stored_plan(blobs, plan_id)
    if plan is None:
        return ExecutionStart("failed", f"plan {plan_id[:12]} is missing from the blob store")
    if await store.settled_plan_status(tenant_id, plan_id) == "awaiting_approval":
        return ExecutionStart("failed", f"the approval of plan {plan_id[:12]} was not recorded (the decision failed "
                                        "part-way), so nothing ran; push again to ask for a new approval")
    try:
        await check_not_stale(store, tenant_id, plan)
    except StalePlanError as exc:
        return ExecutionStart("failed", failure_text(exc))
    await store.set_plan_status(tenant_id, plan_id, "running")
    await store.upsert_job(tenant_id, instance, status="running", detail="running steps")
    return ExecutionStart("ok")


@dataclass(frozen=True)
class StepReport:
    """How one step of a job ended; `rows_written` and `batches` are None when the step did not run, `telemetry`
    None when it ran no batch.

    `step_id` and `model` name the step (empty when the position is not in the plan).
    """

    status: StepStatus
    error: str | None
    rows_written: int | None = None
    batches: int | None = None
    step_id: str = ""
    model: str = ""
    telemetry: StepTelemetry | None = None


async def run_job_step(store: RunStore, blobs: BlobStore, source: GitSource, open_executor: Callable[[], Executor], *,
                       tenant_id: str, plan_id: str, step: int, skip_reason: str | None,
                       engine: str = "duckdb") -> StepReport:
    """Run (or, with `skip_reason`, record as skipped) one step of a job's stored plan, as `ironlayer apply` does.

    `step` is the step's position in the plan's `steps` (orchestrations pass positions: the stored plan,
    found by its ID, names the step). A step whose SQL or BLOCK test fails, or whose engine cannot be
    opened, reports `failed`; an infrastructure failure (the state store unreachable) raises, so that the
    step is retried. Every blocking call (blob, git, engine, SQL parser) runs in a worker thread.

    Raises:
        PlanError: the plan is missing from the blob store.
        StateUnavailableError: the state store cannot be reached (safe to retry).
    """
    from shared_core.ports import InlineAnalyzer
    from shared_core.services.plans import require_stored_plan

    plan = await require_stored_plan(blobs, plan_id)
    if not 0 <= step < len(plan.steps):
        return StepReport("failed", f"plan {plan_id[:12]} has no step #{step}")
    planned = plan.steps[step]
    step_id, name = planned.step_id, planned.model
    if skip_reason:
        await store.record_skipped(tenant_id, plan_id, step_id, name, skip_reason)
        return StepReport("skipped", skip_reason, step_id=step_id, model=name)
    project = (await asyncio.to_thread(load_commit, source, plan.target)).project
    model = project[name]
    try:
        executor = await asyncio.to_thread(open_executor)
    except CoreError as exc:  # a configured engine that cannot run: the step fails, clearly
        run_id = await store.start_run(tenant_id, plan_id, step_id, model.name, None, None)
        error = failure_text(exc)
        await store.finish_run(tenant_id, run_id, "failed", error=error)
        return StepReport("failed", error, step_id=step_id, model=name)
    try:
        analyses = await asyncio.to_thread(InlineAnalyzer().analyze_many, [(model.key, model.path, model.text)])
        outcome = await run_step(plan_id, planned, model, store, executor, RunOptions(tenant=tenant_id, parallelism=1),
                                 canonical=resolve_canonical(analyses[model.key], model.ref_targets))
    finally:
        await asyncio.to_thread(executor.close)
    from shared_core.services.telemetry import step_telemetry

    return StepReport(outcome.status, outcome.error, outcome.rows_written, outcome.batches, step_id, name,
                      step_telemetry(outcome, engine))
