"""Apply a plan: wave by wave, bounded parallelism, range locks, one run per batch, resumable.

The same `run_step` serves `ironlayer apply` and the Functions execution activity. Guarantees:

- a plan whose consulted watermarks moved since planning is refused (`StalePlanError`);
- each batch is one engine transaction that records its own marker, so a batch is never applied twice,
  even when the process dies between the engine's commit and the state store's record;
- the ledger advances only for batches that committed; a failed step skips its downstream steps and
  lets independent branches finish; re-applying the plan resumes (successful batches are not re-run);
- overlapping ranges of one model never run at the same time: the second apply waits for the lock up to
  a timeout and then fails naming the holder; locks of a dead process on this host are broken at once,
  others expire with their TTL.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from shared_core.core.errors import CoreError, StateError
from shared_core.core.planning.intervals import add_batches
from shared_core.core.planning.watermarks import snapshot
from shared_core.core.project.headers import parse_instant
from shared_core.core.project.models import Model, Project


class StalePlanError(StateError):
    """The watermarks a plan was built on have moved; re-plan."""


class LockTimeoutError(StateError):
    """A range stayed locked by another apply longer than the lock timeout."""


class Executor(Protocol):
    """What the runner needs from an engine adapter (DuckDB now, Databricks later)."""

    def run_batch(
        self, model: Model, *, start: datetime | None, end: datetime | None, reset: bool,
        marker: tuple[str, str] | None = None,
    ) -> Any: ...

    def committed_batches(self, plan_id: str, step_id: str) -> dict[datetime | None, int]: ...

    def committed_plan_batches(self, plan_id: str) -> dict[str, dict[datetime | None, int]]: ...


@dataclass
class StepOutcome:
    """How one step ended."""

    step_id: str
    model: str
    status: str  # success | failed | skipped | done (already succeeded in an earlier apply)
    rows_written: int = 0
    seconds: float = 0.0
    engine_seconds: float = 0.0
    batches: int = 0
    tests: list[tuple[str, str, bool, int]] = field(default_factory=list)  # (test, severity, passed, failing)
    error: str | None = None


@dataclass(frozen=True)
class RunOptions:
    tenant: str
    parallelism: int = 4
    lock_timeout: float = 60.0
    lock_ttl: int = 300
    holder: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")


Event = Callable[[str, dict[str, Any], StepOutcome | None], None]


def step_batches(step: Mapping[str, Any]) -> list[tuple[datetime | None, datetime | None]]:
    """The batches of a step, each one engine transaction: `(None, None)` for non-incremental steps."""
    if step["start"] is None:
        return [(None, None)]
    cursor, end, unit = parse_instant(step["start"]), parse_instant(step["end"]), step["batch"]
    batches: list[tuple[datetime | None, datetime | None]] = []
    while cursor < end:
        nxt = add_batches(cursor, unit, 1)
        batches.append((cursor, nxt))
        cursor = nxt
    return batches


def consulted_models(plan: Mapping[str, Any]) -> list[str]:
    """The models whose ledger the planner read (incremental steps that are not backfills)."""
    return sorted({s["model"] for s in plan["steps"] if s["run_type"] == "incremental"})


async def check_not_stale(store: Any, tenant: str, plan: Mapping[str, Any]) -> None:
    """Refuse a plan whose consulted watermarks moved (other plans' ranges only; its own are progress).

    Raises:
        StalePlanError: naming the first model whose ledger differs.
    """
    models = consulted_models(plan)
    now = snapshot(await store.ledger_before(tenant, models, plan["plan_id"]), models)
    then = plan["inputs"]["watermarks"]
    for model in models:
        if now.get(model, []) != then.get(model, []):
            raise StalePlanError(
                f"stale plan {plan['plan_id'][:12]}: the watermarks of {model} moved since planning "
                f"(planned on {then.get(model, [])}, now {now.get(model, [])}); re-plan and apply the new plan"
            )


async def apply_plan(
    plan: Mapping[str, Any],
    project: Project,
    store: Any,
    executor: Executor,
    options: RunOptions,
    *,
    canonical: Mapping[str, str] | None = None,
    on_event: Event | None = None,
) -> list[StepOutcome]:
    """Execute every step of `plan` (resuming an earlier apply of it) and return their outcomes."""
    plan_id = plan["plan_id"]
    await check_not_stale(store, options.tenant, plan)
    done = await store.successful_batches(options.tenant, plan_id)
    # one warehouse read for the whole plan: a DuckDB file has one writer process, so no batch of this plan
    # commits elsewhere while this apply runs
    markers = await asyncio.to_thread(executor.committed_plan_batches, plan_id)
    await store.set_plan_status(options.tenant, plan_id, "running")
    outcomes: dict[str, StepOutcome] = {}
    limit = asyncio.Semaphore(max(1, options.parallelism))
    waves: dict[int, list[Mapping[str, Any]]] = {}
    for step in plan["steps"]:
        waves.setdefault(step["parallel_group"], []).append(step)

    async def one(step: Mapping[str, Any]) -> None:
        broken = [d for d in step["depends_on"] if outcomes[d].status in ("failed", "skipped")]
        if broken:
            reason = f"skipped: upstream step of {outcomes[broken[0]].model} did not succeed"
            await store.record_skipped(options.tenant, plan_id, step["step_id"], step["model"], reason)
            outcomes[step["step_id"]] = StepOutcome(step["step_id"], step["model"], "skipped", error=reason)
        else:
            async with limit:
                if on_event:
                    on_event("start", dict(step), None)
                outcomes[step["step_id"]] = await run_step(
                    plan_id, step, project[step["model"]], store, executor, options, done=done,
                    canonical=(canonical or {}).get(step["model"]), committed=markers.get(step["step_id"], {}),
                )
        if on_event:
            on_event("end", dict(step), outcomes[step["step_id"]])

    for wave in sorted(waves):
        await asyncio.gather(*(one(step) for step in waves[wave]))
    failed = any(o.status in ("failed", "skipped") for o in outcomes.values())
    await store.set_plan_status(options.tenant, plan_id, "failed" if failed else "succeeded")
    return [outcomes[s["step_id"]] for s in plan["steps"]]


async def run_step(
    plan_id: str,
    step: Mapping[str, Any],
    model: Model,
    store: Any,
    executor: Executor,
    options: RunOptions,
    *,
    done: set[tuple[str, datetime | None]] | None = None,
    canonical: str | None = None,
    committed: Mapping[datetime | None, int] | None = None,
) -> StepOutcome:
    """Run the batches of one step under its range lock; never raises for a batch failure.

    `done` and `committed` (the step's warehouse markers) are read here when the caller has not read them.
    """
    started = time.perf_counter()
    outcome = StepOutcome(step["step_id"], model.name, "success")
    batches = step_batches(step)
    recorded = done if done is not None else await store.successful_batches(options.tenant, plan_id)
    if committed is None:
        committed = await asyncio.to_thread(executor.committed_batches, plan_id, step["step_id"])
    finished = {start for start, _ in batches if start in committed and (step["step_id"], start) in recorded}
    if len(finished) == len(batches):
        outcome.status = "done"
        return outcome
    start_all = parse_instant(step["start"]) if step["start"] else None
    end_all = parse_instant(step["end"]) if step["end"] else None
    try:
        lock_id = await acquire_lock(store, options, model.name, start_all, end_all, (plan_id, step["step_id"]))
    except LockTimeoutError as exc:
        run_id = await store.start_run(options.tenant, plan_id, step["step_id"], model.name, start_all, end_all)
        await store.finish_run(options.tenant, run_id, "failed", error=str(exc))
        outcome.status, outcome.error = "failed", str(exc)
        return outcome
    try:
        for index, (start, end) in enumerate(batches):
            if start in finished:
                continue
            reset = bool(step["reset"]) and index == 0
            error = await _run_batch(
                plan_id, step, model, store, executor, options, start, end, reset, outcome, committed.get(start)
            )
            if error:
                outcome.status, outcome.error = "failed", error
                break
            if index < len(batches) - 1:  # the last batch is followed by the release
                await store.renew_lock(options.tenant, lock_id, options.lock_ttl)
        outcome.seconds = time.perf_counter() - started
        header = model.header
        await store.finish_step(  # one transaction: release the lock, telemetry, the deployed model version
            options.tenant, lock_id, plan_id, step["step_id"],
            {"step_seconds": outcome.seconds, "engine_seconds": outcome.engine_seconds,
             "rows_written": outcome.rows_written, "batches": outcome.batches},
            {"model": model.name, "status": outcome.status},
            (model.name, header.kind, header.materialization, step["model_hash"], canonical or "", dict(header.raw))
            if outcome.status == "success" else None,
        )
    except BaseException:
        await store.release_lock(options.tenant, lock_id)
        raise
    return outcome


async def _run_batch(
    plan_id: str, step: Mapping[str, Any], model: Model, store: Any, executor: Executor, options: RunOptions,
    start: datetime | None, end: datetime | None, reset: bool, outcome: StepOutcome, committed: int | None,
) -> str | None:
    """Run (or, when it already committed in the warehouse, only record) one batch; returns an error or None."""
    tenant, step_id = options.tenant, step["step_id"]
    run_id = await store.start_run(tenant, plan_id, step_id, model.name, start, end)
    if committed is None:
        began = time.perf_counter()
        try:
            result = await asyncio.to_thread(
                executor.run_batch, model, start=start, end=end, reset=reset, marker=(plan_id, step_id)
            )
        except CoreError as exc:
            tests = [(t.test, t.severity, t.passed, t.failing_rows) for t in getattr(exc, "outcomes", ())]
            outcome.tests.extend(tests)
            await store.finish_run(tenant, run_id, "failed", error=str(exc), tests=tests)
            return str(exc)
        finally:
            outcome.engine_seconds += time.perf_counter() - began
        rows = int(result.rows_written)
        tests = [(t.test, t.severity, t.passed, t.failing_rows) for t in result.tests]
    else:  # committed by an apply that died before recording it: record, never re-apply
        rows, tests = committed, []
    outcome.tests.extend(tests)
    outcome.rows_written += rows
    outcome.batches += 1
    completed = (model.name, start, end, plan_id, step_id, reset) if start is not None and end is not None else None
    await store.finish_run(tenant, run_id, "success", rows_written=rows, tests=tests, completed=completed)
    return None


async def acquire_lock(
    store: Any, options: RunOptions, model: str, start: datetime | None, end: datetime | None,
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
