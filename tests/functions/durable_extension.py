"""What the Durable extension does with an orchestrator's actions, and the history events it writes.

`Shim` replays one episode's actions into a model of the Durable Task Framework the way the extension's
`OutOfProcOrchestrationShim` does: it awaits each top-level action before issuing the next, issues the
children of `WhenAll`/`WhenAny` together (and, like .NET's `Task.WhenAll`, waits for every child even after
one failed), draws task IDs from one counter in the framework's order (activity attempts, timers, retry
timers, sub-orchestrations), retries as DTFx's RetryInterceptor does, and checks every
`TaskScheduled`/`TimerCreated`/`SubOrchestrationInstanceCreated` of the history against what it issues.
The helpers write history events and payloads as the extension serializes them (Newtonsoft, compact).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.durable_functions.models.actions.ActionType import ActionType
from azure.durable_functions.models.history.HistoryEventType import HistoryEventType as Event

Json = dict[str, Any]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # before any episode: the shim reads the time from OrchestratorStarted
ACTIVITIES = {ActionType.CALL_ACTIVITY, ActionType.CALL_ACTIVITY_WITH_RETRY}
ORCHESTRATIONS = {ActionType.CALL_SUB_ORCHESTRATOR, ActionType.CALL_SUB_ORCHESTRATOR_WITH_RETRY}
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


def iso(moment: datetime) -> str:
    """A UTC instant as the extension (Newtonsoft) writes it: `2024-01-10T12:00:00Z`, fractions trimmed."""
    fraction = f".{moment.microsecond:06d}".rstrip("0") if moment.microsecond else ""
    return f"{moment.astimezone(UTC):%Y-%m-%dT%H:%M:%S}{fraction}Z"


def compact(value: Any) -> str:
    """JSON as the extension (Newtonsoft, no formatting) writes payloads into the history."""
    return json.dumps(value, separators=(",", ":"))


def history_event(kind: Event, event_id: int, at: datetime, **fields: Any) -> Json:
    """A history event as the extension sends it to the worker; `IsPlayed` turns true once an episode is over."""
    return {"EventType": int(kind), "EventId": event_id, "IsPlayed": False, "Timestamp": iso(at), **fields}


def instant(text: str, cache: dict[str, datetime]) -> datetime:
    """An ISO instant (`...Z` or the SDK's `%Y-%m-%dT%H:%M:%S.%fZ`) as a datetime, parsed once per `cache`."""
    moment = cache.get(text)
    if moment is None:
        moment = cache[text] = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment


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


class Leaf(_Node):
    """One awaited API call: an activity or sub-orchestration (with its attempts), a timer, an event wait."""

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
        self.first_attempt = EPOCH
        self.task_id = -1  # the current attempt's (or the timer's) task ID
        self.retry_timer = -1
        self.retry_fire_at = EPOCH


class Shim:
    """The extension's replay of an episode's actions against the history.

    Each top-level action is awaited before the next is issued; task IDs come from one counter in the order
    the Durable Task Framework allocates them (attempts, timers, retry timers, sub-orchestrations). The
    history's `TaskScheduled`/`TimerCreated`/`SubOrchestrationInstanceCreated` must match what is issued.
    The extension replays from the start every episode; a `Shim` may also be fed only an episode's new events
    when the actions it already replayed did not change.
    """

    def __init__(self, actions: Sequence[Json]) -> None:
        self.actions = actions
        self.now = EPOCH
        self.next_id = 0
        self.cursor = 0
        self.current: _Node | None = None
        self.by_id: dict[int, tuple[str, Leaf]] = {}  # task ID -> ("task" | "timer" | "retry", leaf)
        self.recorded: set[int] = set()
        self.fresh: list[int] = []  # task IDs issued since `unrecorded` was last asked
        self.open: dict[int, Leaf] = {}  # leaves with a task ID that are not done, by id()
        self.waiting: dict[str, list[Leaf]] = {}
        self.buffered: dict[str, int] = {}
        self.finished = False
        self._instants: dict[str, datetime] = {}

    def replay(self, history: Sequence[Json]) -> None:
        """Process history events in order: complete what they answer, issue the actions that follow.

        Raises:
            NonDeterminismError: a recorded task does not match the task the actions issue under its ID.
            ReplayError: an action type this model does not cover (entities, HTTP, continue-as-new).
        """
        for event in history:
            kind = event["EventType"]
            if kind == Event.ORCHESTRATOR_STARTED:
                self.now = instant(event["Timestamp"], self._instants)
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

    def unrecorded(self) -> list[tuple[int, str, Leaf]]:
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
        """What the extension waits for, in words: events by name, then tasks and timers by ID."""
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
        leaf = Leaf(parent, action)
        if kind in ACTIVITIES or kind in ORCHESTRATIONS:
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

    def _allocate(self, what: str, leaf: Leaf) -> int:
        task_id, self.next_id = self.next_id, self.next_id + 1
        self.by_id[task_id] = (what, leaf)
        self.fresh.append(task_id)
        if not leaf.done:
            self.open[id(leaf)] = leaf
        return task_id

    def _attempt(self, leaf: Leaf) -> None:
        leaf.attempts += 1
        leaf.retry_timer = -1
        leaf.task_id = self._allocate("task", leaf)

    def _match(self, event: Json, kind: str) -> None:
        task_id = event["EventId"]
        what, leaf = self.by_id.get(task_id, ("nothing", None))
        issued = "nothing" if leaf is None else ("timer" if what in ("timer", "retry") else
                                                 "activity" if leaf.type in ACTIVITIES else "orchestration")
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

    def _retry_delay(self, leaf: Leaf) -> timedelta:
        """DTFx's RetryInterceptor: first interval x backoff^(attempt - 1), capped; zero once timed out."""
        options = leaf.retry or {}
        timeout = options.get("retryTimeoutInMilliseconds")
        if timeout is not None and self.now >= leaf.first_attempt + timedelta(milliseconds=timeout):
            return timedelta(0)
        backoff = options.get("backoffCoefficient", 1) ** (leaf.attempts - 1)
        delay = options["firstRetryIntervalInMilliseconds"] * backoff
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

    def _finish(self, leaf: Leaf) -> None:
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
