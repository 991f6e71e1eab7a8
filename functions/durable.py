"""What the orchestrators share: bounded retry policies, waiting for every task of a fan-out, typed failures.

Activities return a typed failure (`ActivityFailure`: status "failed" and a detail) for a permanent error
(bad input: the same call would fail the same way) and raise for a transient one
(`shared_core.core.errors.is_transient`), so Durable retries exactly the transient ones, under the
policies below, each bounded in attempts. An activity whose retries ran out surfaces here as `attempt`'s
typed failure, so every failure path ends in `finalize_activity` with a reason. `settle` waits for every
task of a fan-out even when one of them fails: `task_all` raises at the first failure, while its siblings
are still running and unrecorded (and any action scheduled then would get a task ID the extension has
already given to a sibling's retry).

Everything here runs inside orchestrators: deterministic, no I/O, no clock; generators used with
`yield from`.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any

import azure.durable_functions as df

from shared_core.services.messages import ActivityFailure

#: build_plan, request_approval, start_execution: a restarting PostgreSQL or a GitHub blip, not an outage.
TRANSIENT_RETRY = df.RetryOptions(first_retry_interval_in_milliseconds=30_000, max_number_of_attempts=6)
#: finalize_activity: the job's outcome and its commit status must be recorded; wait longer (about 15 min).
FINALIZE_RETRY = df.RetryOptions(first_retry_interval_in_milliseconds=60_000, max_number_of_attempts=16)
#: run_step_activity: the first retry soon (the warehouse markers make it exact); attempts from the job.
STEP_RETRY_MS = 5_000
#: The most step activities one sub-orchestration fans out, so that no history replays more than this many.
STEPS_PER_CHUNK = 100


def reason(error: BaseException) -> str:
    """One line of an activity's or sub-orchestration's failure, as Durable reports it, without its wrapper.

    >>> reason(Exception("Activity function 'build_plan_activity' failed: ActivityError: down \\n {}"))
    'ActivityError: down'
    """
    text = str(error).split("\n", 1)[0].strip()
    for prefix in ("Activity function '", "Orchestrator function '"):
        if text.startswith(prefix) and "' failed: " in text:
            text = text.split("' failed: ", 1)[1]
    return text[:500] or type(error).__name__


# Any below: Durable tasks (the SDK ships no types) and what they produce, parsed JSON that the callers read
# through the types of `shared_core.services.messages`.
def attempt(context: df.DurableOrchestrationContext, name: str, payload: object,
            retry: df.RetryOptions = TRANSIENT_RETRY) -> Generator[Any, Any, Any]:
    """Call an activity under `retry`; its result, or an `ActivityFailure` when every attempt failed."""
    try:
        result = yield context.call_activity_with_retry(name, retry, payload)
    except Exception as exc:  # the SDK raises a plain Exception once the retries ran out
        return ActivityFailure(status="failed", detail=f"{name} kept failing after {retry.max_number_of_attempts} "
                                                       f"attempts: {reason(exc)}")
    return result


@dataclass(frozen=True)
class Settled:
    """How one task of a fan-out ended: its result, or the failure that ended it (`ok` False)."""

    ok: bool
    value: Any  # the result, or the exception

    @property
    def error(self) -> str:
        return "" if self.ok else reason(self.value)


def settle(context: df.DurableOrchestrationContext,
           tasks: Sequence[Any]) -> Generator[Any, Any, list[Settled]]:
    """Wait for every task, even after one failed; how each ended, in order.

    `task_all` fails as soon as one task fails. Its siblings keep running (and the extension keeps waiting
    for them), so after a failure each task is waited for in turn; a task already finished answers at once.
    """
    if not tasks:
        return []
    try:
        results = yield context.task_all(list(tasks))
    except Exception:  # one task failed: wait for the others before anything is decided
        settled: list[Settled] = []
        for task in tasks:
            try:
                settled.append(Settled(True, (yield task)))
            except Exception as exc:
                settled.append(Settled(False, exc))
        return settled
    return [Settled(True, result) for result in results]


def chunks(items: Sequence[int], size: int = STEPS_PER_CHUNK) -> list[list[int]]:
    """`items` cut into runs of at most `size`, in order.

    >>> chunks([1, 2, 3, 4, 5], 2)
    [[1, 2], [3, 4], [5]]
    """
    return [list(items[start:start + size]) for start in range(0, len(items), size)]
