"""Run a Durable orchestrator episode by episode through the SDK's own executor, as the Functions host does.

`run_orchestration` plays the Durable extension's part. It keeps the instance's history in the JSON the
extension sends the Python worker (`OrchestratorStarted`, `ExecutionStarted`, `TaskScheduled`/`TaskCompleted`/
`TaskFailed`, `TimerCreated`/`TimerFired`, `EventRaised`, `SubOrchestrationInstanceCreated`/`Completed`/`Failed`,
`ExecutionCompleted`, `OrchestratorCompleted`), hands the orchestrator's `handle` the whole history at every
episode (a real replay: `is_replaying` is true for old events), and answers the actions it returns from a
`Script` of the outside world: activity results, external events, timers that fire, child orchestrations run
the same way. Task IDs, retries (`TaskFailed`, a retry timer, a new attempt, and one last timer after the last
attempt) and the waiting of `task_all`/`task_any` follow the extension's replay of those actions
(`OutOfProcOrchestrationShim` over the Durable Task Framework, whose `Task.WhenAll` waits for every child even
after one failed), so an orchestrator whose actions drift from its history fails or gets stuck here.

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
from azure.durable_functions.models.actions.ActionType import ActionType
from azure.durable_functions.models.actions.CreateTimerAction import CreateTimerAction
from azure.durable_functions.models.actions.NoOpAction import NoOpAction
from azure.durable_functions.models.history.HistoryEventType import HistoryEventType as Event

OrchestratorFunction = Callable[[df.DurableOrchestrationContext], Generator[Any, Any, Any]]
Respond = Callable[[str, Any], Any]
Duration = Callable[[str, Any], timedelta]
Json = dict[str, Any]

REPO_ROOT = Path(__file__).resolve().parents[2]
START = datetime(2024, 1, 10, 12, 0, tzinfo=UTC)
EPISODE_TIME = timedelta(milliseconds=20)  # one episode's duration: keeps OrchestratorStarted times increasing
# Sent with every orchestration by the extension (Azure Storage provider): replay schemas V2 and V3, timer limits.
CONTEXT_FIELDS: Json = {"upperSchemaVersion": 1, "upperSchemaVersionNew": 2,
                        "maximumShortTimerDuration": "6.00:00:00", "longRunningTimerIntervalDuration": "3.00:00:00",
                        "defaultHttpAsyncRequestSleepTimeMillseconds": 30000}
_ERROR_MARKER = "\n\n$OutOfProcData$:"  # how the SDK appends its state to an orchestrator's exception
_COMPLETED, _FAILED = 1, 3  # DTFx OrchestrationStatus
_ACTIVITIES = {ActionType.CALL_ACTIVITY, ActionType.CALL_ACTIVITY_WITH_RETRY}
_ORCHESTRATIONS = {ActionType.CALL_SUB_ORCHESTRATOR, ActionType.CALL_SUB_ORCHESTRATOR_WITH_RETRY}
_SCHEDULED = {Event.TASK_SCHEDULED: "activity", Event.SUB_ORCHESTRATION_INSTANCE_CREATED: "orchestration",
              Event.TIMER_CREATED: "timer"}
_TASK_ENDS = {Event.TASK_COMPLETED: False, Event.TASK_FAILED: True,
              Event.SUB_ORCHESTRATION_INSTANCE_COMPLETED: False, Event.SUB_ORCHESTRATION_INSTANCE_FAILED: True}


class ReplayError(AssertionError):
    """The orchestration cannot run as the Durable extension would run it."""


class NonDeterminismError(ReplayError):
    """A replay of the same history gave other actions, output or custom status, or contradicts the history."""


class StuckOrchestrationError(ReplayError):
    """The orchestration waits for something the script never delivers, or for a task ID the extension never uses."""


class TaskIdError(ReplayError):
    """The SDK and the extension gave one task ID to different work: a result would reach the wrong task."""


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


def iso(moment: datetime) -> str:
    """A UTC instant as the extension (Newtonsoft) writes it: `2024-01-10T12:00:00Z`, fractions trimmed."""
    fraction = f".{moment.microsecond:06d}".rstrip("0") if moment.microsecond else ""
    return f"{moment.astimezone(UTC):%Y-%m-%dT%H:%M:%S}{fraction}Z"


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


def compact(value: Any) -> str:
    """JSON as the extension (Newtonsoft, no formatting) writes payloads into the history."""
    return json.dumps(value, separators=(",", ":"))


def _event(kind: Event, event_id: int, at: datetime, **fields: Any) -> Json:
    return {"EventType": int(kind), "EventId": event_id, "IsPlayed": False, "Timestamp": iso(at), **fields}


def _instant(text: str, cache: dict[str, datetime]) -> datetime:
    moment = cache.get(text)
    if moment is None:
        moment = cache[text] = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment


# --------------------------------------------------------------------------------------------------
# The extension's side: OutOfProcOrchestrationShim replaying the actions into the Durable Task Framework
# --------------------------------------------------------------------------------------------------


class _Node:
    def __init__(self, parent: _Group | None) -> None:
        self.parent = parent
        self.done = False


class _Group(_Node):
    """`Task.WhenAny` (done when one child is) or `Task.WhenAll` (done when every child is, failed or not)."""

    def __init__(self, parent: _Group | None, any_: bool) -> None:
        super().__init__(parent)
        self.any = any_
        self.children: list[_Node] = []
        self.pending = 0

    def settle(self) -> None:
        self.pending = sum(not c.done for c in self.children)
        self.done = self.pending < len(self.children) if self.any else self.pending == 0


class _Leaf(_Node):
    def __init__(self, parent: _Group | None, action: Json) -> None:
        super().__init__(parent)
        self.type = ActionType(action["actionType"])
        self.name: str = action.get("functionName") or action.get("externalEventName") or ""
        self.input: str | None = action.get("input")
        self.fire_at: str | None = action.get("fireAt")
        self.instance_id: str | None = action.get("instanceId")
        self.retry: Json | None = action.get("retryOptions")
        self.cancelled = bool(action.get("isCanceled"))
        self.attempts = 0
        self.first_attempt = START
        self.task_id = -1  # the current attempt's (or the timer's) task ID
        self.retry_timer = -1
        self.retry_fire_at = START


class _Shim:
    """Replays one episode's actions against the history as the extension does, from the start.

    Each top-level action is awaited before the next is issued; task IDs come from one counter in the order
    the Durable Task Framework allocates them (attempts, timers, retry timers, sub-orchestrations). The
    history's `TaskScheduled`/`TimerCreated`/`SubOrchestrationInstanceCreated` must match what is issued.
    """

    def __init__(self, actions: Sequence[Json], execution_id: str) -> None:
        self.actions = actions
        self.execution_id = execution_id
        self.now = START
        self.next_id = 0
        self.cursor = 0
        self.current: _Node | None = None
        self.by_id: dict[int, tuple[str, _Leaf]] = {}  # task ID -> ("task" | "timer" | "retry", leaf)
        self.recorded: set[int] = set()
        self.fresh: list[int] = []  # task IDs issued since `unrecorded` was last asked
        self.open: dict[int, _Leaf] = {}  # leaves with a task ID that are not done, by id()
        self.waiting: dict[str, list[_Leaf]] = {}
        self.buffered: dict[str, int] = {}
        self.finished = False
        self._instants: dict[str, datetime] = {}

    def replay(self, history: Sequence[Json]) -> None:
        for event in history:
            kind = event["EventType"]
            if kind == Event.ORCHESTRATOR_STARTED:
                self.now = _instant(event["Timestamp"], self._instants)
            elif kind == Event.EXECUTION_STARTED:
                self._advance()
            elif kind in _SCHEDULED:
                self._match(event, _SCHEDULED[Event(kind)])
            elif kind in _TASK_ENDS:
                self._task_ended(event["TaskScheduledId"], failed=_TASK_ENDS[Event(kind)])
            elif kind == Event.TIMER_FIRED:
                self._timer_fired(event["TimerId"])
            elif kind == Event.EVENT_RAISED:
                self._event_raised(event["Name"])

    def unrecorded(self) -> list[tuple[int, str, _Leaf]]:
        """Tasks issued that the history does not hold yet: the episode's new decisions (now taken as recorded)."""
        fresh = [(task_id, *self.by_id[task_id]) for task_id in self.fresh if task_id not in self.recorded]
        self.recorded.update(task_id for task_id, _, _ in fresh)
        self.fresh = []
        return fresh

    def open_waits(self) -> dict[int, tuple[str, str]]:
        """What the extension waits for, by task ID: `("task", name)` or `("timer", "")`."""
        waits: dict[int, tuple[str, str]] = {}
        for leaf in self.open.values():
            if leaf.retry_timer >= 0 or leaf.type == ActionType.CREATE_TIMER:
                waits[leaf.retry_timer if leaf.retry_timer >= 0 else leaf.task_id] = ("timer", "")
            elif leaf.task_id >= 0:
                waits[leaf.task_id] = ("task", leaf.name)
        return waits

    def describe_waits(self) -> list[str]:
        waits = [f"event '{name}'" for name, leaves in self.waiting.items() for _ in leaves]
        return waits + [f"{kind} #{task_id} {name}".rstrip() for task_id, (kind, name) in self.open_waits().items()]

    def _advance(self) -> None:
        while self.current is None or self.current.done:
            if self.cursor >= len(self.actions):
                self.finished = True
                return
            self.current = self._issue(self.actions[self.cursor], None)
            self.cursor += 1

    def _issue(self, action: Json, parent: _Group | None) -> _Node:
        kind = action["actionType"]
        if kind in (ActionType.WHEN_ALL, ActionType.WHEN_ANY):
            group = _Group(parent, any_=kind == ActionType.WHEN_ANY)
            group.children = [self._issue(child, group) for child in action["compoundActions"]]
            group.settle()
            return group
        leaf = _Leaf(parent, action)
        if kind in _ACTIVITIES or kind in _ORCHESTRATIONS:
            leaf.first_attempt = self.now
            self._attempt(leaf)
        elif kind == ActionType.CREATE_TIMER:
            leaf.done = leaf.cancelled  # a cancelled timer's task is cancelled at once; its TimerCreated stays
            leaf.task_id = self._allocate("timer", leaf)
        elif kind == ActionType.WAIT_FOR_EXTERNAL_EVENT:
            if self.buffered.get(leaf.name):
                self.buffered[leaf.name] -= 1
                leaf.done = True
            else:
                self.waiting.setdefault(leaf.name, []).append(leaf)
        else:
            raise ReplayError(f"action type {ActionType(kind).name} is not supported by this driver")
        return leaf

    def _allocate(self, what: str, leaf: _Leaf) -> int:
        task_id, self.next_id = self.next_id, self.next_id + 1
        self.by_id[task_id] = (what, leaf)
        self.fresh.append(task_id)
        if not leaf.done:
            self.open[id(leaf)] = leaf
        return task_id

    def _attempt(self, leaf: _Leaf) -> None:
        leaf.attempts += 1
        leaf.retry_timer = -1
        leaf.task_id = self._allocate("task", leaf)

    def _match(self, event: Json, kind: str) -> None:
        task_id = event["EventId"]
        what, leaf = self.by_id.get(task_id, ("nothing", None))
        issued = "nothing" if leaf is None else ("timer" if what in ("timer", "retry") else
                                                 "activity" if leaf.type in _ACTIVITIES else "orchestration")
        if leaf is None or issued != kind or (kind != "timer" and event["Name"] != leaf.name):
            name = "" if kind == "timer" else f" '{event['Name']}'"
            got = "nothing" if leaf is None else f"{issued} '{leaf.name}'" if issued != "timer" else "a timer"
            raise NonDeterminismError(f"history holds {kind}{name} as task #{task_id}, but the replayed actions "
                                      f"give #{task_id} to {got}")
        self.recorded.add(task_id)

    def _task_ended(self, task_id: int, *, failed: bool) -> None:
        what, leaf = self.by_id.get(task_id, ("", None))
        if leaf is None or what != "task" or leaf.done or leaf.task_id != task_id or leaf.retry_timer >= 0:
            return  # the framework ignores a result nothing waits for
        if failed and leaf.retry is not None:
            delay = self._retry_delay(leaf)
            if delay > timedelta(0):
                leaf.retry_fire_at = self.now + delay
                leaf.retry_timer = self._allocate("retry", leaf)
                return
        self._finish(leaf)

    def _retry_delay(self, leaf: _Leaf) -> timedelta:
        """DTFx's RetryInterceptor: first interval x backoff^(attempt - 1), capped; zero once timed out."""
        options = leaf.retry or {}
        timeout = options.get("retryTimeoutInMilliseconds")
        if timeout is not None and self.now >= leaf.first_attempt + timedelta(milliseconds=timeout):
            return timedelta(0)
        delay = options["firstRetryIntervalInMilliseconds"] * options.get("backoffCoefficient", 1) ** (leaf.attempts - 1)
        return timedelta(milliseconds=min(delay, options.get("maxRetryIntervalInMilliseconds", delay)))

    def _timer_fired(self, timer_id: int) -> None:
        what, leaf = self.by_id.get(timer_id, ("", None))
        if leaf is None or leaf.done:
            return  # a cancelled timer still fires; nothing waits for it
        if what == "timer":
            self._finish(leaf)
        elif what == "retry" and leaf.retry_timer == timer_id:
            if leaf.attempts >= (leaf.retry or {})["maxNumberOfAttempts"]:
                self._finish(leaf)  # the last attempt failed: the task fails after this last timer
            else:
                self._attempt(leaf)

    def _event_raised(self, name: str) -> None:
        waiting = self.waiting.get(name)
        if waiting:
            self._finish(waiting.pop(0))
        else:
            self.buffered[name] = self.buffered.get(name, 0) + 1

    def _finish(self, leaf: _Leaf) -> None:
        node: _Node = leaf
        node.done = True
        self.open.pop(id(leaf), None)
        while node.parent is not None:
            group = node.parent
            if group.done:
                return
            group.pending -= 1
            if not (group.any or group.pending == 0):
                return
            group.done = True
            node = group
        if node is self.current:
            self._advance()


# --------------------------------------------------------------------------------------------------
# The instance: episodes, history and the outside world
# --------------------------------------------------------------------------------------------------


class _Instance:
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
        self._deliver(start, _event(
            Event.EXECUTION_STARTED, -1, start, Name=orchestration.name, Version="", Input=compact(input_),
            OrchestrationInstance={"InstanceId": instance_id, "ExecutionId": self.execution_id},
            ParentInstance=parent_instance, Tags=None, Correlation=None, ScheduledStartTime=None, Generation=0))

    def run(self) -> Run:
        previous: list[Json] = []
        shim: _Shim | None = None
        while True:
            if not self.inbox:
                raise StuckOrchestrationError(self._stuck(previous))
            self.now = max(self.inbox[0][0], self.now + EPISODE_TIME) if self.history else self.inbox[0][0]
            new = [_event(Event.ORCHESTRATOR_STARTED, -1, self.now)]
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
                shim = _Shim(actions, self.execution_id)
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
            played = [*new, *decisions, _event(Event.ORCHESTRATOR_COMPLETED, -1, self.now)]
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

    def _decide(self, task_id: int, what: str, leaf: _Leaf) -> Json:
        """The history event of a new decision; the outside world starts answering it."""
        now = self.now
        if what in ("timer", "retry"):
            fire_at = leaf.retry_fire_at if what == "retry" else _instant(leaf.fire_at or "", {})
            self._deliver(max(fire_at, now), _event(Event.TIMER_FIRED, -1, max(fire_at, now), TimerId=task_id,
                                                    FireAt=iso(fire_at)))
            return _event(Event.TIMER_CREATED, task_id, now, FireAt=iso(fire_at))
        payload = None if leaf.input is None else json.loads(leaf.input)
        if leaf.type in _ORCHESTRATIONS:
            return self._start_child(task_id, leaf)
        self.calls.append((leaf.name, payload))
        done = now + self.script.duration(leaf.name, payload)
        try:
            result = self.script.respond(leaf.name, payload)
        except AssertionError:
            raise
        except Exception as exc:
            reason = f"Activity function '{leaf.name}' failed: {type(exc).__name__}: {exc}"
            details = compact({"ClassName": type(exc).__name__, "Message": str(exc)})
            self._deliver(done, _event(Event.TASK_FAILED, -1, done, TaskScheduledId=task_id, Reason=reason,
                                       Details=details, FailureDetails=None))
        else:
            self._deliver(done, _event(Event.TASK_COMPLETED, -1, done, TaskScheduledId=task_id,
                                       Result=compact(result)))
        # The shim passes the action's input (JSON text) as the one parameter DTFx wraps in an array.
        return _event(Event.TASK_SCHEDULED, task_id, now, Name=leaf.name, Version="", Input=compact([leaf.input]))

    def _start_child(self, task_id: int, leaf: _Leaf) -> Json:
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
            self._deliver(done, _event(Event.SUB_ORCHESTRATION_INSTANCE_COMPLETED, -1, done, TaskScheduledId=task_id,
                                       Result=compact(child.output)))
        else:
            self._deliver(done, _event(
                Event.SUB_ORCHESTRATION_INSTANCE_FAILED, -1, done, TaskScheduledId=task_id,
                Reason=f"Orchestrator function '{leaf.name}' failed: {child.error}",
                Details=compact({"Message": child.error}), FailureDetails=None))
        return _event(Event.SUB_ORCHESTRATION_INSTANCE_CREATED, task_id, self.now, Name=leaf.name, Version="",
                      InstanceId=child_id, Input=compact(leaf.input))

    def _answer_waits(self, shim: _Shim) -> None:
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
                self._deliver(at, _event(Event.EVENT_RAISED, -1, at, Name=name, Input=compact(raised.payload)))

    def _completion(self, state: Json, task_id: int) -> Json:
        if state.get("error"):
            return _event(Event.EXECUTION_COMPLETED, task_id, self.now, OrchestrationStatus=_FAILED,
                          Result=f"Orchestrator function '{self.orchestration.name}' failed: {state['error']}",
                          FailureDetails=None)
        return _event(Event.EXECUTION_COMPLETED, task_id, self.now, OrchestrationStatus=_COMPLETED,
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
        shim = _Shim(actions, self.execution_id)
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
