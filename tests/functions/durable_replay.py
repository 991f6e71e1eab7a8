"""Run a Durable orchestrator episode by episode through the SDK's own executor, as the Functions host does.

`run_orchestration` plays the Durable extension's part. It keeps the instance's history in the JSON the
extension sends the Python worker (`OrchestratorStarted`, `ExecutionStarted`, `TaskScheduled`/`TaskCompleted`/
`TaskFailed`, `TimerCreated`/`TimerFired`, `EventRaised`, `SubOrchestrationInstanceCreated`/`Completed`/`Failed`,
`ExecutionCompleted`, `OrchestratorCompleted`), hands the orchestrator's `handle` the whole history at every
episode (a real replay: `is_replaying` is true for old events), and answers the actions it returns from a
`Script` of the outside world: activity results, external events, timers that fire, child orchestrations run
the same way. Task IDs, retries (`TaskFailed`, a retry timer, a new attempt, and one last timer after the last
attempt) and the waiting of `task_all`/`task_any` follow the extension's replay of those actions
(tests/functions/durable_extension.py), so an orchestrator whose actions drift from its history, or whose task
IDs the SDK and the extension read differently, fails or gets stuck here.

`check_replays` replays a finished history again with fresh executors and `check_replays_in_subprocesses` in
fresh interpreters (other `PYTHONHASHSEED`s, a bare environment, another time zone); both require the very
actions, output and custom status of the live run. Run as `python -m tests.functions.durable_replay`, this
module is that subprocess: it reads `[{"ref", "context"}]` on stdin and writes the SDK's states on stdout.
"""

from __future__ import annotations

import heapq
import importlib
import itertools
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import azure.durable_functions as df
from azure.durable_functions.models.actions.CreateTimerAction import CreateTimerAction
from azure.durable_functions.models.actions.NoOpAction import NoOpAction
from azure.durable_functions.models.history.HistoryEventType import HistoryEventType as Event

from tests.functions.durable_extension import (
    ORCHESTRATIONS,
    Json,
    Leaf,
    NonDeterminismError,
    ReplayError,
    Shim,
    StuckOrchestrationError,
    TaskIdError,
    compact,
    history_event,
    instant,
    iso,
)

__all__ = [
    "START", "EpisodeStat", "NonDeterminismError", "Orchestration", "Raise", "ReplayError", "Run", "Script",
    "StuckOrchestrationError", "TaskIdError", "app_orchestrations", "check_replays", "check_replays_in_subprocesses",
    "compact", "compare_states", "context_json", "execute", "iso", "load_orchestrator", "run_orchestration",
]

OrchestratorFunction = Callable[[df.DurableOrchestrationContext], Generator[Any, Any, Any]]
Respond = Callable[[str, Any], Any]
Duration = Callable[[str, Any], timedelta]

REPO_ROOT = Path(__file__).resolve().parents[2]
START = datetime(2024, 1, 10, 12, 0, tzinfo=UTC)
EPISODE_TIME = timedelta(milliseconds=20)  # one episode's duration: keeps OrchestratorStarted times increasing
# Sent with every orchestration by the extension (Azure Storage provider): replay schemas V2 and V3, timer limits.
CONTEXT_FIELDS: Json = {"upperSchemaVersion": 1, "upperSchemaVersionNew": 2,
                        "maximumShortTimerDuration": "6.00:00:00", "longRunningTimerIntervalDuration": "3.00:00:00",
                        "defaultHttpAsyncRequestSleepTimeMillseconds": 30000}
_ERROR_MARKER = "\n\n$OutOfProcData$:"  # how the SDK appends its state to an orchestrator's exception
_COMPLETED, _FAILED = 1, 3  # DTFx OrchestrationStatus


@dataclass(frozen=True)
class Orchestration:
    """An orchestrator's generator function, its registered name, and `module:attribute` to import it afresh."""

    name: str
    function: OrchestratorFunction
    ref: str


@dataclass(frozen=True)
class Raise:
    """An external event the outside world raises (once) `after` the orchestrator starts waiting for `name`."""

    name: str
    payload: Any
    after: timedelta = timedelta(minutes=5)


def one_second(name: str, payload: Any) -> timedelta:
    """The default time an activity takes."""
    return timedelta(seconds=1)


@dataclass(frozen=True)
class Script:
    """How the outside world answers.

    `respond(activity, input)` returns the activity's result or raises to fail it (an `AssertionError`, a
    mistake in the script, propagates). `max_batch` caps the messages delivered per episode (None: every
    message due by then, as the extension batches a queue's messages for one instance).
    """

    respond: Respond
    events: Sequence[Raise] = ()
    duration: Duration = one_second
    orchestrators: Mapping[str, Orchestration] = field(default_factory=dict)
    max_batch: int | None = None


@dataclass(frozen=True)
class EpisodeStat:
    """One call of the orchestrator: the size of the context JSON it replayed and the CPU time of the call."""

    context_bytes: int
    cpu_seconds: float


@dataclass
class Run:
    """A finished instance: its history as the extension would store it, what it did and what it returned."""

    orchestration: Orchestration
    instance_id: str
    input: Any
    parent_instance_id: str | None
    history: list[Json]
    final_state: str
    status: str  # "Completed" | "Failed"
    output: Any
    custom_status: Any
    error: str | None
    calls: list[tuple[str, Any]]  # activities in the order they were scheduled, retries included
    children: list[Run]
    episodes: list[EpisodeStat]
    finished_at: datetime

    def actions(self) -> list[Json]:
        """The actions of the last episode: every action of the run, in order (replay schema V2 and later)."""
        return list(json.loads(self.final_state)["actions"][0])

    def replay_context(self) -> str:
        """The context JSON of the finished history, as the worker would receive it to replay it."""
        return context_json(self.instance_id, self.history, self.input, self.parent_instance_id)

    def events(self, kind: Event) -> list[Json]:
        """The history events of one type, in order."""
        return [e for e in self.history if e["EventType"] == kind]

    def all_runs(self) -> Iterator[Run]:
        """This run, then its child orchestrations' runs, depth first."""
        yield self
        for child in self.children:
            yield from child.all_runs()


def context_json(instance_id: str, history: Sequence[Json], input_: Any, parent_instance_id: str | None) -> str:
    """The orchestration trigger's payload: the history and the fields the extension adds."""
    replaying = sum(e["EventType"] == Event.ORCHESTRATOR_STARTED for e in history) > 1
    return _context_text(",".join(compact(e) for e in history), instance_id, input_, parent_instance_id, replaying)


def _context_text(history: str, instance_id: str, input_: Any, parent_instance_id: str | None,
                  replaying: bool) -> str:
    """`context_json` from the history's events already serialized and joined by commas."""
    fields = compact({"input": input_, "instanceId": instance_id, "isReplaying": replaying,
                      "parentInstanceId": parent_instance_id, **CONTEXT_FIELDS})
    return f'{{"history":[{history}],{fields[1:]}'


def execute(function: OrchestratorFunction, context: str) -> tuple[str, float]:
    """One episode, as the worker runs it: a fresh `Orchestrator` replays `context`; returns its state and CPU time.

    An exception of the orchestrator comes back as the state the SDK attached to it (with `error` set).
    """
    state, cpu, _ = _execute(function, context)
    return state, cpu


def _execute(function: OrchestratorFunction, context: str) -> tuple[str, float, df.DurableOrchestrationContext]:
    """`Orchestrator.create(function)(context)`, keeping the context to compare the SDK's open tasks."""
    started = time.process_time()
    orchestration_context = df.DurableOrchestrationContext.from_json(context)
    try:
        state = df.Orchestrator(function).handle(orchestration_context)
    except Exception as exc:
        text = str(exc)
        if _ERROR_MARKER not in text:
            raise
        state = text.rsplit(_ERROR_MARKER, 1)[1]
    return state, time.process_time() - started, orchestration_context


def _sdk_waits(orchestration_context: df.DurableOrchestrationContext) -> dict[int, tuple[str, str]]:
    """The SDK's open tasks by ID: `("task", name)` for activities and sub-orchestrations, `("timer", "")`."""
    waits: dict[int, tuple[str, str]] = {}
    for task_id, tasks in orchestration_context.open_tasks.items():
        if not isinstance(task_id, int):
            continue  # external events wait by name
        for task in tasks if isinstance(tasks, list) else [tasks]:
            action = task.action_repr[0] if isinstance(task.action_repr, list) else task.action_repr
            if isinstance(action, CreateTimerAction):
                waits[task_id] = ("timer", "")
            elif isinstance(action, NoOpAction):  # a retry's timer, or its next attempt (named by the retried task)
                retried = getattr(task.parent, "actions", None)
                is_timer = "timer" in (action.metadata or "")
                waits[task_id] = ("timer", "") if is_timer else ("task", getattr(retried, "function_name", ""))
            else:
                waits[task_id] = ("task", getattr(action, "function_name", type(action).__name__))
    return waits


def load_orchestrator(ref: str) -> OrchestratorFunction:
    """The generator function behind `module:attribute` (a plain function or a blueprint's registered function)."""
    module_name, _, attribute = ref.partition(":")
    target: Any = getattr(importlib.import_module(module_name), attribute)
    if hasattr(target, "build"):  # a FunctionBuilder from a blueprint decorator
        target = target.build().get_user_function()
    function: OrchestratorFunction = getattr(target, "orchestrator_function", target)
    return function


def app_orchestrations(functions: Iterable[Any]) -> dict[str, Orchestration]:
    """The orchestrators among a Functions app's indexed functions (`app.get_functions()`), by registered name."""
    found: dict[str, Orchestration] = {}
    for function in functions:
        code = getattr(function.get_user_function(), "orchestrator_function", None)
        if code is not None:
            name = function.get_function_name()
            found[name] = Orchestration(name, code, f"{code.__module__}:{code.__name__}")
    return found


def run_orchestration(orchestration: Orchestration, input_: Any, script: Script, *,
                      instance_id: str = "push-" + "0" * 32, verify_episodes: bool = True) -> Run:
    """Run an orchestration to its end, episode by episode, answering its actions from `script`.

    Args:
        orchestration: the orchestrator to run.
        input_: its input (JSON-able).
        script: the outside world's answers; child orchestrations are looked up in `script.orchestrators`.
        instance_id: the instance ID.
        verify_episodes: require each episode's actions to start with the previous episode's actions.

    Returns:
        The finished run.

    Raises:
        NonDeterminismError: an episode's actions contradict an earlier episode or the history.
        StuckOrchestrationError: nothing more arrives and the orchestration is not done.
    """
    pool: dict[str, list[Raise]] = {}
    for event in script.events:
        pool.setdefault(event.name, []).append(event)
    return _Instance(orchestration, input_, script, instance_id, START, None, pool, verify_episodes).run()


def check_replays(run: Run, *, times: int = 2) -> None:
    """Replay every instance of `run` `times` times with fresh executors; all must give the live run's state.

    Raises:
        NonDeterminismError: a replay's actions, output, custom status or error differ from the live run's.
    """
    for instance in run.all_runs():
        for attempt in range(1, times + 1):
            state, _ = execute(instance.orchestration.function, instance.replay_context())
            compare_states(instance, state, f"in-process replay {attempt}")


def check_replays_in_subprocesses(runs: Sequence[Run], *, hash_seeds: Sequence[int] = (1, 2)) -> None:
    """Replay every instance of `runs` in fresh interpreters, one per hash seed, run side by side.

    The first interpreter inherits this environment; the others get a bare one (PATH and PYTHONPATH only)
    and another time zone, so an orchestrator that reads the environment, the local time or iterates a set
    of strings diverges from the live run.

    Raises:
        NonDeterminismError: a replay's state differs from the live run's.
        ReplayError: an interpreter failed.
    """
    instances = [instance for run in runs for instance in run.all_runs()]
    payload = json.dumps([{"ref": i.orchestration.ref, "context": i.replay_context()} for i in instances])
    workers = []
    for index, seed in enumerate(hash_seeds):
        base = dict(os.environ) if index == 0 else {"PATH": os.environ.get("PATH", ""), "TZ": "Pacific/Kiritimati"}
        env = {**base, "PYTHONHASHSEED": str(seed), "PYTHONPATH": str(REPO_ROOT)}
        worker = subprocess.Popen([sys.executable, "-m", "tests.functions.durable_replay"], cwd=REPO_ROOT, env=env,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        workers.append((seed, worker))
    with ThreadPoolExecutor(len(workers)) as pool:
        answers = list(pool.map(lambda worker: worker.communicate(payload, timeout=300), [w for _, w in workers]))
    outputs = [(seed, out, err, worker.returncode) for (seed, worker), (out, err) in zip(workers, answers, strict=True)]
    for seed, stdout, stderr, code in outputs:
        if code != 0:
            raise ReplayError(f"replay interpreter (PYTHONHASHSEED={seed}) exited {code}: {stderr[-2000:]}")
        for instance, state in zip(instances, json.loads(stdout), strict=True):
            compare_states(instance, state, f"replay in a fresh interpreter (PYTHONHASHSEED={seed})")


def compare_states(run: Run, state: str, label: str) -> None:
    """Require `state` (from a replay of `run`) to equal the live run's final state, naming the first difference.

    Raises:
        NonDeterminismError: they differ.
    """
    live, replayed = json.loads(run.final_state), json.loads(state)
    if live == replayed:
        return
    where = f"{run.orchestration.name} {run.instance_id}, {label}"
    live_actions, new_actions = live.get("actions", [[]])[0], replayed.get("actions", [[]])[0]
    if live_actions != new_actions:
        raise NonDeterminismError(f"{where}: actions differ from the live run: "
                                  f"{_first_difference(live_actions, new_actions)}")
    keys = sorted(k for k in live.keys() | replayed.keys() if live.get(k) != replayed.get(k))
    raise NonDeterminismError(f"{where}: {', '.join(keys)} differ from the live run: "
                              f"live {_short({k: live.get(k) for k in keys})}, "
                              f"replay {_short({k: replayed.get(k) for k in keys})}")


def _first_difference(old: Sequence[Json], new: Sequence[Json]) -> str:
    for index, (a, b) in enumerate(zip(old, new, strict=False)):
        if a != b:
            return f"action #{index} was {_short(a)}, now {_short(b)}"
    return f"{len(old)} actions before, {len(new)} now"


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= 400 else text[:400] + "..."


def _uncancelled(actions: Sequence[Json]) -> list[Json]:
    """Actions without `isCanceled`: a timer's action is cancelled in place once its race is won."""
    def strip(action: Json) -> Json:
        out = {k: v for k, v in action.items() if k != "isCanceled"}
        if "compoundActions" in out:
            out["compoundActions"] = [strip(a) for a in out["compoundActions"]]
        return out
    return [strip(a) for a in actions]


# --------------------------------------------------------------------------------------------------
# The instance: episodes, history and the outside world
# --------------------------------------------------------------------------------------------------


class _Instance:
    """One orchestration instance: its history, its inbox of answers due, and its episodes."""

    def __init__(self, orchestration: Orchestration, input_: Any, script: Script, instance_id: str, start: datetime,
                 parent: tuple[Orchestration, str, str, int] | None, pool: dict[str, list[Raise]],
                 verify: bool) -> None:
        self.orchestration, self.input, self.script = orchestration, input_, script
        self.instance_id, self.pool, self.verify = instance_id, pool, verify
        self.execution_id = uuid.uuid5(uuid.NAMESPACE_URL, instance_id).hex
        self.parent_instance_id = parent[1] if parent else None
        self.now = start
        self.history: list[Json] = []
        self.history_text = ""  # the history's events, serialized once played, joined by commas
        self.inbox: list[tuple[datetime, int, Json]] = []
        self.order = itertools.count()
        self.calls: list[tuple[str, Any]] = []
        self.children: list[Run] = []
        self.episodes: list[EpisodeStat] = []
        parent_instance = None if parent is None else {
            "Name": parent[0].name, "Version": "", "TaskScheduleId": parent[3],
            "OrchestrationInstance": {"InstanceId": parent[1], "ExecutionId": parent[2]}}
        self._deliver(start, history_event(
            Event.EXECUTION_STARTED, -1, start, Name=orchestration.name, Version="", Input=compact(input_),
            OrchestrationInstance={"InstanceId": instance_id, "ExecutionId": self.execution_id},
            ParentInstance=parent_instance, Tags=None, Correlation=None, ScheduledStartTime=None, Generation=0))

    def run(self) -> Run:
        """Episodes until the SDK and the extension both consider the orchestration over."""
        previous: list[Json] = []
        shim: Shim | None = None
        while True:
            if not self.inbox:
                raise StuckOrchestrationError(self._stuck(previous))
            self.now = max(self.inbox[0][0], self.now + EPISODE_TIME) if self.history else self.inbox[0][0]
            new = [history_event(Event.ORCHESTRATOR_STARTED, -1, self.now)]
            while self.inbox and self.inbox[0][0] <= self.now and (
                    self.script.max_batch is None or len(new) <= self.script.max_batch):
                new.append(heapq.heappop(self.inbox)[2])
            new_text = ",".join(compact(e) for e in new)
            context = _context_text(f"{self.history_text},{new_text}" if self.history else new_text, self.instance_id,
                                    self.input, self.parent_instance_id, replaying=bool(self.history))
            state_text, cpu, orchestration_context = _execute(self.orchestration.function, context)
            self.episodes.append(EpisodeStat(len(context), cpu))
            state = json.loads(state_text)
            actions: list[Json] = state["actions"][0] if state["actions"] else []
            same_head = actions[:len(previous)] == previous
            if self.verify and not same_head:
                self._check_prefix(previous, actions)
            # The extension replays every episode from the start; doing so only when an action changed (a timer
            # cancelled since) or appeared behind a finished replay gives the same task IDs for less work.
            if shim is None or not same_head or (shim.finished and len(actions) > len(previous)):
                shim = Shim(actions)
                shim.replay([*self.history, *new])
            else:
                shim.actions = actions
                shim.replay(new)
            previous = actions
            if self.verify:
                self._check_task_ids(shim.open_waits(), _sdk_waits(orchestration_context))
            decisions = [self._decide(task_id, what, leaf) for task_id, what, leaf in shim.unrecorded()]
            ended = bool(state.get("isDone") or state.get("error")) and shim.finished
            if ended:
                decisions.append(self._completion(state, shim.next_id))
            played = [*new, *decisions, history_event(Event.ORCHESTRATOR_COMPLETED, -1, self.now)]
            for event in played:  # the framework marks each event it processed; OrchestratorStarted never
                event["IsPlayed"] = event["EventType"] != Event.ORCHESTRATOR_STARTED
            text = ",".join(compact(e) for e in played)
            self.history_text = f"{self.history_text},{text}" if self.history else text
            self.history.extend(played)
            if ended:
                return self._result(state_text, state)
            self._answer_waits(shim)

    def _check_prefix(self, previous: list[Json], actions: list[Json]) -> None:
        head = actions[:len(previous)]
        if head != previous and _uncancelled(head) != _uncancelled(previous):
            raise NonDeterminismError(
                f"{self.orchestration.name} {self.instance_id}, episode {len(self.episodes)}: the replay's actions "
                f"differ from the previous episode's: {_first_difference(previous, actions)}")

    def _check_task_ids(self, extension: dict[int, tuple[str, str]], sdk: dict[int, tuple[str, str]]) -> None:
        for task_id in sorted(extension.keys() & sdk.keys()):
            if extension[task_id] != sdk[task_id]:
                raise TaskIdError(
                    f"{self.orchestration.name} {self.instance_id}, episode {len(self.episodes)}: task #{task_id} is "
                    f"{' '.join(extension[task_id]).strip()} for the extension but {' '.join(sdk[task_id]).strip()} "
                    f"for the SDK")

    def _decide(self, task_id: int, what: str, leaf: Leaf) -> Json:
        """The history event of a new decision; the outside world starts answering it."""
        now = self.now
        if what in ("timer", "retry"):
            fire_at = leaf.retry_fire_at if what == "retry" else instant(leaf.fire_at or "", {})
            fires = max(fire_at, now)
            self._deliver(fires, history_event(Event.TIMER_FIRED, -1, fires, TimerId=task_id, FireAt=iso(fire_at)))
            return history_event(Event.TIMER_CREATED, task_id, now, FireAt=iso(fire_at))
        if leaf.type in ORCHESTRATIONS:
            return self._start_child(task_id, leaf)
        payload = None if leaf.input is None else json.loads(leaf.input)
        self.calls.append((leaf.name, payload))
        done = now + self.script.duration(leaf.name, payload)
        try:
            result = self.script.respond(leaf.name, payload)
        except AssertionError:
            raise
        except Exception as exc:
            reason = f"Activity function '{leaf.name}' failed: {type(exc).__name__}: {exc}"
            details = compact({"ClassName": type(exc).__name__, "Message": str(exc)})
            self._deliver(done, history_event(Event.TASK_FAILED, -1, done, TaskScheduledId=task_id, Reason=reason,
                                              Details=details, FailureDetails=None))
        else:
            self._deliver(done, history_event(Event.TASK_COMPLETED, -1, done, TaskScheduledId=task_id,
                                              Result=compact(result)))
        # The shim passes the action's input (JSON text) as the one parameter DTFx wraps in an array.
        return history_event(Event.TASK_SCHEDULED, task_id, now, Name=leaf.name, Version="",
                             Input=compact([leaf.input]))

    def _start_child(self, task_id: int, leaf: Leaf) -> Json:
        """Run the child orchestration to its end now; its outcome reaches the parent when the child finishes.

        The child's input is the action's JSON text: the extension stores it as a JSON string and hands it over
        as one (the SDK's `get_input` parses it).
        """
        spec = self.script.orchestrators.get(leaf.name)
        if spec is None:
            raise ReplayError(f"{self.orchestration.name} calls sub-orchestrator '{leaf.name}', "
                              f"which is not in the script's orchestrators")
        child_id = leaf.instance_id or f"{self.execution_id}:{task_id}"
        child = _Instance(spec, leaf.input, self.script, child_id, self.now,
                          (self.orchestration, self.instance_id, self.execution_id, task_id), self.pool,
                          self.verify).run()
        self.children.append(child)
        done = child.finished_at
        if child.status == "Completed":
            self._deliver(done, history_event(Event.SUB_ORCHESTRATION_INSTANCE_COMPLETED, -1, done,
                                              TaskScheduledId=task_id, Result=compact(child.output)))
        else:
            self._deliver(done, history_event(
                Event.SUB_ORCHESTRATION_INSTANCE_FAILED, -1, done, TaskScheduledId=task_id,
                Reason=f"Orchestrator function '{leaf.name}' failed: {child.error}",
                Details=compact({"Message": child.error}), FailureDetails=None))
        return history_event(Event.SUB_ORCHESTRATION_INSTANCE_CREATED, task_id, self.now, Name=leaf.name,
                             Version="", InstanceId=child_id, Input=compact(leaf.input))

    def _answer_waits(self, shim: Shim) -> None:
        coming: dict[str, int] = {}
        for _, _, event in self.inbox:
            if event["EventType"] == Event.EVENT_RAISED:
                coming[event["Name"]] = coming.get(event["Name"], 0) + 1
        for name, leaves in shim.waiting.items():
            for _ in range(len(leaves) - coming.get(name, 0)):
                scripted = self.pool.get(name)
                if not scripted:
                    break
                raised = scripted.pop(0)
                at = self.now + raised.after
                self._deliver(at, history_event(Event.EVENT_RAISED, -1, at, Name=name, Input=compact(raised.payload)))

    def _completion(self, state: Json, task_id: int) -> Json:
        if state.get("error"):
            return history_event(Event.EXECUTION_COMPLETED, task_id, self.now, OrchestrationStatus=_FAILED,
                                 Result=f"Orchestrator function '{self.orchestration.name}' failed: {state['error']}",
                                 FailureDetails=None)
        return history_event(Event.EXECUTION_COMPLETED, task_id, self.now, OrchestrationStatus=_COMPLETED,
                             Result=compact(state.get("output")), FailureDetails=None)

    def _result(self, state_text: str, state: Json) -> Run:
        return Run(orchestration=self.orchestration, instance_id=self.instance_id, input=self.input,
                   parent_instance_id=self.parent_instance_id, history=self.history, final_state=state_text,
                   status="Failed" if state.get("error") else "Completed", output=state.get("output"),
                   custom_status=state.get("customStatus"), error=state.get("error"), calls=self.calls,
                   children=self.children, episodes=self.episodes, finished_at=self.now)

    def _deliver(self, at: datetime, event: Json) -> None:
        heapq.heappush(self.inbox, (at, next(self.order), event))

    def _stuck(self, actions: list[Json]) -> str:
        shim = Shim(actions)
        shim.replay(self.history)
        waits = ", ".join(shim.describe_waits()) or "nothing the extension knows of"
        return (f"{self.orchestration.name} {self.instance_id} is not done after {len(self.episodes)} episodes and "
                f"nothing more arrives; the extension waits for {waits}")


def _replay_main() -> None:
    """Subprocess entry point: replay `[{"ref", "context"}]` from stdin, write the states to stdout."""
    items = json.load(sys.stdin)
    functions: dict[str, OrchestratorFunction] = {}
    states = []
    for item in items:
        function = functions.get(item["ref"]) or functions.setdefault(item["ref"], load_orchestrator(item["ref"]))
        states.append(execute(function, item["context"])[0])
    json.dump(states, sys.stdout)


if __name__ == "__main__":
    _replay_main()
