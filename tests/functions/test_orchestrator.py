"""`plan_orchestrator` driven as a generator: approve, reject, expiry, step failure with retry, empty plan."""

from __future__ import annotations

from collections.abc import Generator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.functions.conftest import functions_by_name

NOW = datetime(2024, 1, 10, 12, 0, tzinfo=UTC)
JOB = {"kind": "push", "tenant_id": "t1", "repository": "o/r", "base": "a" * 40, "target": "b" * 40,
       "branch": "main", "author": "octocat", "auto_approve": False, "approval_ttl_hours": 24, "step_retries": 3}
IDS = {"tenant_id": "t1", "instance_id": "push-" + "0" * 32, "repository": "o/r", "target": "b" * 40,
       "plan_id": "p" * 64}
WAVES = [[{"step_id": "s1", "depends_on": []}, {"step_id": "s2", "depends_on": []}],
         [{"step_id": "s3", "depends_on": ["s1"]}, {"step_id": "s4", "depends_on": ["s2"]}]]


class Task:
    def __init__(self, kind: str, name: str, payload: Any = None, retry: Any = None) -> None:
        self.kind, self.name, self.payload, self.retry = kind, name, payload, retry
        self.result: Any = None
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeContext:
    """Records what the orchestrator asks for; results are sent back by the test."""

    def __init__(self, job: dict[str, Any]) -> None:
        self._job = job
        self.instance_id = IDS["instance_id"]
        self.current_utc_datetime = NOW
        self.custom_status: Any = None
        self.timers: list[Task] = []

    def get_input(self) -> dict[str, Any]:
        return self._job

    def call_activity(self, name: str, payload: Any) -> Task:
        return Task("activity", name, payload)

    def call_activity_with_retry(self, name: str, retry: Any, payload: Any) -> Task:
        return Task("activity", name, payload, retry)

    def create_timer(self, fire_at: datetime) -> Task:
        timer = Task("timer", "timer", fire_at)
        self.timers.append(timer)
        return timer

    def wait_for_external_event(self, name: str) -> Task:
        return Task("event", name)

    def task_any(self, tasks: list[Task]) -> Task:
        return Task("any", "any", tasks)

    def task_all(self, tasks: list[Task]) -> Task:
        return Task("all", "all", tasks)

    def set_custom_status(self, status: Any) -> None:
        self.custom_status = status


def start(job: dict[str, Any] | None = None) -> tuple[FakeContext, Generator[Any, Any, Any]]:
    ctx = FakeContext(job or JOB)
    orchestrator = functions_by_name()["plan_orchestrator"].get_user_function().orchestrator_function
    return ctx, orchestrator(ctx)


def through_approval(decision: str) -> tuple[FakeContext, Generator[Any, Any, Any], Task]:
    ctx, gen = start()
    task = next(gen)
    assert (task.kind, task.name) == ("activity", "build_plan_activity")
    assert task.payload == {**JOB, "instance_id": IDS["instance_id"]}
    task = gen.send({"plan_id": IDS["plan_id"], "waves": WAVES})
    assert (task.name, task.payload) == ("request_approval_activity", {**IDS, "author": "octocat", "ttl_hours": 24})
    race = gen.send({"link_expires_in_hours": 24})
    assert race.kind == "any"
    event, timer = race.payload
    assert (event.kind, event.name) == ("event", "approval")
    assert (timer.kind, timer.payload) == ("timer", NOW + timedelta(hours=24))
    assert ctx.custom_status == {"status": "awaiting_approval", "plan_id": IDS["plan_id"]}
    event.result = {"decision": decision, "by": "reviewer", "comment": ""}
    return ctx, gen, event


def finish(gen: Generator[Any, Any, Any], task: Task, outcome: str, detail: str) -> Any:
    assert (task.name, task.payload) == ("finalize_activity", {**IDS, "outcome": outcome, "detail": detail})
    with pytest.raises(StopIteration) as stop:
        gen.send({"status": outcome})
    return stop.value.value


def test_approved_plan_runs_wave_by_wave_with_retries_then_succeeds() -> None:
    ctx, gen, event = through_approval("approve")
    task = gen.send(event)
    assert ctx.timers[0].cancelled  # the expiry timer is cancelled after approval
    assert (task.name, task.payload) == ("start_execution_activity", IDS)
    wave = gen.send({"status": "ok", "detail": ""})
    assert wave.kind == "all"
    assert [(t.name, t.payload["step_id"], t.payload["skip_reason"]) for t in wave.payload] == [
        ("run_step_activity", "s1", None), ("run_step_activity", "s2", None)]
    assert all(t.retry._max_number_of_attempts == 3 for t in wave.payload)
    assert set(wave.payload[0].payload) == {*IDS, "step_id", "skip_reason"}  # IDs only, never the plan body
    wave = gen.send([{"status": "success"}, {"status": "success"}])
    assert [t.payload["step_id"] for t in wave.payload] == ["s3", "s4"]
    task = gen.send([{"status": "success"}, {"status": "done"}])
    assert finish(gen, task, "succeeded", "4 steps succeeded") == {"plan_id": IDS["plan_id"], "status": "succeeded"}


def test_a_failed_step_skips_its_downstream_and_fails_the_plan() -> None:
    _, gen, event = through_approval("approve")
    gen.send(event)
    gen.send({"status": "ok", "detail": ""})
    wave = gen.send([{"status": "failed"}, {"status": "success"}])
    assert [(t.payload["step_id"], t.payload["skip_reason"]) for t in wave.payload] == [
        ("s3", "skipped: an upstream step did not succeed"), ("s4", None)]
    task = gen.send([{"status": "skipped"}, {"status": "success"}])
    assert finish(gen, task, "failed", "2 of 4 steps did not succeed")["status"] == "failed"


def test_retries_exhausted_fail_the_plan() -> None:
    _, gen, event = through_approval("approve")
    gen.send(event)
    gen.send({"status": "ok", "detail": ""})
    task = gen.throw(RuntimeError("state store unreachable"))
    assert finish(gen, task, "failed", "a step kept failing after 3 attempts: state store unreachable")


def test_rejected_plan_finishes_as_rejected_without_running() -> None:
    _, gen, event = through_approval("reject")
    task = gen.send(event)
    assert finish(gen, task, "rejected", "rejected by reviewer") == {"plan_id": IDS["plan_id"], "status": "rejected"}


def test_expired_approval_fails_the_plan() -> None:
    ctx, gen, _ = through_approval("approve")
    task = gen.send(ctx.timers[0])  # the timer won the race
    assert finish(gen, task, "expired", "not approved within 24 h")["status"] == "expired"


def test_stale_plan_is_not_executed() -> None:
    _, gen, event = through_approval("approve")
    gen.send(event)
    task = gen.send({"status": "failed", "detail": "stale plan pppp: re-plan"})
    assert finish(gen, task, "failed", "stale plan pppp: re-plan")


def test_empty_plan_completes_at_once_with_success() -> None:
    _, gen = start()
    next(gen)
    task = gen.send({"plan_id": IDS["plan_id"], "waves": [], "checks_changed": False})
    assert finish(gen, task, "succeeded", "nothing to run: no model's data, tests or contract changed")["status"] == (
        "succeeded")


@pytest.mark.parametrize("decision", ["approve", "reject"])
def test_a_plan_that_only_changes_tests_or_contracts_waits_for_approval(decision: str) -> None:
    _, gen = start()
    next(gen)
    task = gen.send({"plan_id": IDS["plan_id"], "waves": [], "checks_changed": True})
    assert (task.name, task.payload) == ("request_approval_activity", {**IDS, "author": "octocat", "ttl_hours": 24})
    event, _ = gen.send({"link_expires_in_hours": 24}).payload
    event.result = {"decision": decision, "by": "reviewer", "comment": ""}
    task = gen.send(event)
    if decision == "reject":
        assert finish(gen, task, "rejected", "rejected by reviewer")["status"] == "rejected"
        return
    assert (task.name, task.payload) == ("start_execution_activity", IDS)  # the stale check still applies
    task = gen.send({"status": "ok", "detail": ""})
    assert finish(gen, task, "succeeded", "tests or contracts changed; nothing to rebuild")["status"] == "succeeded"


def test_auto_approval_skips_the_approval_request() -> None:
    _, gen = start({**JOB, "auto_approve": True})
    next(gen)
    task = gen.send({"plan_id": IDS["plan_id"], "waves": WAVES})
    assert task.name == "start_execution_activity"


def test_a_week_long_approval_waits_in_timers_of_at_most_72_hours() -> None:
    ctx, gen = start({**JOB, "approval_ttl_hours": 168})
    next(gen)
    gen.send({"plan_id": IDS["plan_id"], "waves": WAVES})
    race = gen.send({"link_expires_in_hours": 168})
    fired = []
    for _ in range(3):  # 72 h, 72 h, then the last 24 h; each a plain timer the backend holds in one piece
        _event, timer = race.payload
        fired.append(timer.payload)
        race = gen.send(timer)
    assert fired == [NOW + timedelta(hours=72), NOW + timedelta(hours=144), NOW + timedelta(hours=168)]
    assert not any(timer.cancelled for timer in ctx.timers)
    assert finish(gen, race, "expired", "not approved within 168 h")["status"] == "expired"


def test_a_decision_in_a_later_slice_cancels_the_running_timer() -> None:
    ctx, gen = start({**JOB, "approval_ttl_hours": 100})
    next(gen)
    gen.send({"plan_id": IDS["plan_id"], "waves": WAVES})
    race = gen.send({"link_expires_in_hours": 100})
    race = gen.send(race.payload[1])  # the first 72 h pass
    event, timer = race.payload
    assert timer.payload == NOW + timedelta(hours=100) and event.name == "approval"
    event.result = {"decision": "approve", "by": "reviewer"}
    task = gen.send(event)
    assert [t.cancelled for t in ctx.timers] == [False, True]
    assert task.name == "start_execution_activity"


def test_commits_that_cannot_be_planned_fail_the_job_without_a_plan() -> None:
    _, gen = start()
    next(gen)
    task = gen.send({"status": "failed", "detail": "cannot plan bbbbbbbbbbbb of o/r: unknown git ref"})
    assert (task.name, task.payload) == ("finalize_activity", {**IDS, "plan_id": None, "outcome": "failed",
                                                               "detail": "cannot plan bbbbbbbbbbbb of o/r: unknown git ref"})
    with pytest.raises(StopIteration) as stop:
        gen.send({"status": "failed"})
    assert stop.value.value == {"plan_id": None, "status": "failed"}
