"""Measure the Durable history of `plan_orchestrator` on a synthetic plan: bytes kept, bytes replayed, CPU.

It runs the orchestrator registered in `function_app` (and any sub-orchestrator it calls) episode by episode
through the Durable SDK's own executor, with the driver of tests/functions/durable_replay.py playing the
Durable extension: the whole history is replayed at every episode, as on the Functions host. The plan has
`--waves` waves of `--steps` steps (default 20 x 100 = 2,000 steps), each step after the first wave depends on
one step of the wave before; the push needs approval, which arrives a minute after it is requested; every
activity answers at once and succeeds. Two deliveries bound what the host does with a wave's completions:
`one` gives every message its own episode (the worst case: completions trickle in), `wave` delivers every
message due in one episode (a whole wave at once).

For each delivery it prints the instances and episodes, the final history's size (compact JSON, as stored;
the host sends it indented, which the last column shows for the largest instance), the bytes replayed (the
sum of every episode's context JSON over all instances), the CPU time of all episodes (the SDK's executor in
this process: parsing the context, replaying, serializing the actions) and of the slowest one, and the wall
time with the driver. Figures, no asserts on time.

Run it with `python bench/orchestration_history.py [--waves 20] [--steps 100] [--delivery one|wave|both]`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: `tests` is not installed

from tests.functions.durable_replay import (
    Orchestration,
    Raise,
    Script,
    app_orchestrations,
    compact,
    run_orchestration,
)

PLAN_ID = "p" * 64
INSTANCE = "push-" + "0" * 32
JOB: dict[str, Any] = {"kind": "push", "tenant_id": "bench", "repository": "octo/warehouse", "base": "a" * 40,
                       "target": "b" * 40, "branch": "main", "author": "octocat", "auto_approve": False,
                       "approval_ttl_hours": 24, "step_retries": 3}
APPROVAL = Raise("approval", {"decision": "approve", "by": "reviewer@example.com", "comment": ""},
                 after=timedelta(minutes=1))


def synthetic_waves(waves: int, steps: int) -> tuple[list[list[int]], list[list[int]]]:
    """`waves` waves of `steps` steps, as the plan's positions (what `build_plan_activity` returns): step i of a
    wave depends on step i of the wave before."""
    positions = [[w * steps + i for i in range(steps)] for w in range(waves)]
    depends_on = [[(w - 1) * steps + i] if w else [] for w in range(waves) for i in range(steps)]
    return positions, depends_on


def instant(name: str, payload: Any) -> timedelta:
    """Activities answer at once."""
    return timedelta(0)


class World:
    """Every activity succeeds; the plan is the synthetic one."""

    def __init__(self, plan: tuple[list[list[int]], list[list[int]]]) -> None:
        self.waves, self.depends_on = plan

    def respond(self, name: str, payload: Any) -> Any:
        if name == "build_plan_activity":
            return {"status": "planned", "plan_id": PLAN_ID, "waves": self.waves, "depends_on": self.depends_on}
        if name == "request_approval_activity":
            return {"status": "requested", "link_expires_in_hours": payload["ttl_hours"]}
        if name == "start_execution_activity":
            return {"status": "ok", "detail": ""}
        if name == "run_step_activity":
            step_id = hashlib.sha256(f"step/{payload['step']}".encode()).hexdigest()
            return {"status": "success", "error": None, "step_id": step_id, "model": f"gold.model_{payload['step']}",
                    "rows_written": 1000, "batches": 1}
        if name == "finalize_activity":
            return {"status": payload["outcome"]}
        raise AssertionError(f"unexpected activity {name}")


@dataclass(frozen=True)
class Figures:
    delivery: str
    instances: int
    episodes: int
    root_history_bytes: int
    largest_history_bytes: int
    largest_indented_bytes: int
    all_histories_bytes: int
    replayed_bytes: int
    cpu_seconds: float
    slowest_episode_seconds: float
    wall_seconds: float
    steps_run: int


def measure(orchestrators: dict[str, Orchestration], plan: tuple[list[list[int]], list[list[int]]],
            delivery: str) -> Figures:
    """Run the plan once with `delivery` and collect the figures of every instance."""
    script = Script(World(plan).respond, (APPROVAL,), duration=instant, orchestrators=orchestrators,
                    max_batch=1 if delivery == "one" else None)
    started = time.perf_counter()
    run = run_orchestration(orchestrators["plan_orchestrator"], JOB, script, instance_id=INSTANCE)
    wall = time.perf_counter() - started
    if run.output != {"plan_id": PLAN_ID, "status": "succeeded"}:
        raise SystemExit(f"the plan did not succeed: {run.output} {run.error}")
    instances = list(run.all_runs())
    sizes = {id(i): len(compact(i.history)) for i in instances}
    largest = max(instances, key=lambda i: sizes[id(i)])
    indented = len(json.dumps(json.loads(largest.replay_context()), indent=2))
    episodes = [e for i in instances for e in i.episodes]
    return Figures(
        delivery=delivery, instances=len(instances), episodes=len(episodes), root_history_bytes=sizes[id(run)],
        largest_history_bytes=sizes[id(largest)], largest_indented_bytes=indented,
        all_histories_bytes=sum(sizes.values()), replayed_bytes=sum(e.context_bytes for e in episodes),
        cpu_seconds=sum(e.cpu_seconds for e in episodes), slowest_episode_seconds=max(e.cpu_seconds for e in episodes),
        wall_seconds=wall, steps_run=sum(name == "run_step_activity" for i in instances for name, _ in i.calls))


def _mb(size: int) -> str:
    return f"{size / 1e6:,.2f} MB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--waves", type=int, default=20)
    parser.add_argument("--steps", type=int, default=100, help="steps per wave")
    parser.add_argument("--delivery", choices=("one", "wave", "both"), default="both")
    args = parser.parse_args(argv)

    import os

    os.environ["IRONLAYER_ENVIRONMENT"] = "test"  # the app loads only in an explicit environment; no I/O is done
    import function_app  # the app as the host indexes it

    orchestrators = app_orchestrations(function_app.app.get_functions())
    plan = synthetic_waves(args.waves, args.steps)
    deliveries = ("wave", "one") if args.delivery == "both" else (args.delivery,)
    print(f"plan_orchestrator, {args.waves} waves x {args.steps} steps = {args.waves * args.steps:,} steps; "
          f"orchestrators in the app: {', '.join(sorted(orchestrators))}")
    header = ("delivery", "instances", "episodes", "root history", "largest", "largest (indented)", "all histories",
              "replayed", "CPU", "slowest episode", "wall")
    print(" | ".join(header))
    for delivery in deliveries:
        f = measure(orchestrators, plan, delivery)
        if f.steps_run != args.waves * args.steps:
            raise SystemExit(f"{f.steps_run} steps ran, expected {args.waves * args.steps}")
        label = "one message per episode" if delivery == "one" else "a wave per episode"
        print(" | ".join([
            label, f"{f.instances:,}", f"{f.episodes:,}", _mb(f.root_history_bytes), _mb(f.largest_history_bytes),
            _mb(f.largest_indented_bytes), _mb(f.all_histories_bytes), _mb(f.replayed_bytes),
            f"{f.cpu_seconds:,.1f} s", f"{f.slowest_episode_seconds:.3f} s", f"{f.wall_seconds:,.1f} s"]),
            flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
