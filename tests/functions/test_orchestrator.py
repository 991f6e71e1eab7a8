"""`plan_orchestrator` and `run_steps_orchestrator` through the Durable SDK's own executor, with scripted activities.

Every path ends in `finalize_activity` with a reason: a plan that cannot be built, planning that keeps failing,
an approval that cannot be requested, a plan that cannot start, a step whose retries run out (after the rest of
its wave finished), a rejection, an expiry; and finalize itself is retried until it records the outcome. Steps
run in sub-orchestrations of at most 100 steps per wave; the root's history holds positions and statuses only.
The tenant's quota is checked before the plan and before each later wave, waiting on durable timers while it is
exceeded; each chunk hands its steps' telemetry to the telemetry function, whose failure never fails a run.
Each run is replayed again through fresh executors (`check_replays`): the same actions every time.
"""

from __future__ import annotations

import functools
import itertools
import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import pytest
from azure.durable_functions.models.history.HistoryEventType import HistoryEventType as E

from tests.functions.durable_replay import Orchestration, Raise, Run, Script, app_orchestrations, check_replays, iso
from tests.functions.durable_replay import run_orchestration as drive

Json = dict[str, Any]
INSTANCE = "push-" + "0" * 32
PLAN_ID = "p" * 64
JOB: Json = {"kind": "push", "tenant_id": "t1", "repository": "o/r", "base": "a" * 40, "target": "b" * 40,
             "branch": "main", "author": "octocat", "sequence": 1, "auto_approve": False, "approval_ttl_hours": 24,
             "step_retries": 3}
IDS: Json = {"tenant_id": "t1", "instance_id": INSTANCE, "repository": "o/r", "target": "b" * 40, "plan_id": PLAN_ID}
APPROVE = Raise("approval", {"decision": "approve", "by": "reviewer", "comment": ""}, after=timedelta(minutes=10))
REJECT = Raise("approval", {"decision": "reject", "by": "reviewer", "comment": "no"}, after=timedelta(minutes=10))
DOWN = "state store unreachable"
SKIPPED = "skipped: an upstream step did not succeed"


def small_plan() -> tuple[list[list[int]], list[list[int]]]:
    """Two waves of two steps: 2 depends on 0, 3 on 1."""
    return [[0, 1], [2, 3]], [[], [], [0], [1]]


class World:
    """The activities' answers: a plan of `waves`; `raises[name]` failed attempts before an activity answers;
    `answers[name]` replaces an activity's answer; steps fail `step_raises[p]` times first, end with
    `step_status[p]`, take `slow[p]` seconds."""

    def __init__(self, plan: tuple[list[list[int]], list[list[int]]] | None = None, *,
                 raises: Mapping[str, int] = {}, answers: Mapping[str, Json] = {},
                 step_raises: Mapping[int, int] = {}, step_status: Mapping[int, str] = {},
                 slow: Mapping[int, int] = {}, checks_changed: bool = False, quota: list[Json] | None = None,
                 telemetry: bool = False) -> None:
        self.waves, self.depends_on = plan or small_plan()
        self.quota, self.telemetry = list(quota or []), telemetry  # quota: answers before the first ok
        self.checks_changed = checks_changed
        self.raises, self.answers = raises, answers
        self.step_raises, self.step_status, self.slow = step_raises, step_status, slow
        self.attempts: dict[Any, int] = {}

    def respond(self, name: str, payload: Any) -> Any:
        key = (name, payload["step"]) if name == "run_step_activity" else name
        self.attempts[key] = self.attempts.get(key, 0) + 1
        budget = self.step_raises.get(payload["step"], 0) if name == "run_step_activity" else self.raises.get(name, 0)
        if self.attempts[key] <= budget:
            raise RuntimeError(DOWN)
        if name in self.answers:
            return self.answers[name]
        if name == "build_plan_activity":
            return {"status": "planned", "plan_id": PLAN_ID, "waves": self.waves, "depends_on": self.depends_on,
                    "checks_changed": self.checks_changed}
        if name == "request_approval_activity":
            return {"status": "requested", "link_expires_in_hours": payload["ttl_hours"]}
        if name == "start_execution_activity":
            return {"status": "ok", "detail": ""}
        if name == "check_quota_activity":
            return self.quota.pop(0) if self.quota else QUOTA_OK
        if name == "record_telemetry_activity":
            raise RuntimeError("telemetry store unreachable")  # ignored: telemetry never fails a run
        if name == "run_step_activity":
            step = payload["step"]
            if payload["skip_reason"]:
                return {"status": "skipped", "error": payload["skip_reason"], "step_id": f"s{step}", "model": "m"}
            result = {"status": self.step_status.get(step, "success"), "error": None, "step_id": f"s{step}",
                      "model": "m", "rows_written": 3, "batches": 1}
            return {**result, "telemetry": telemetry(step)} if self.telemetry else result
        if name == "finalize_activity":
            return {"status": payload["outcome"]}
        raise AssertionError(f"unexpected activity {name}")

    def duration(self, name: str, payload: Any) -> timedelta:
        return timedelta(seconds=self.slow.get(payload["step"], 1) if name == "run_step_activity" else 1)


@functools.cache
def orchestrators() -> dict[str, Orchestration]:
    from tests.functions.conftest import functions_by_name

    return app_orchestrations(functions_by_name().values())


def run(world: World, events: tuple[Raise, ...] = (APPROVE,), job: Json = JOB) -> Run:
    script = Script(world.respond, events, duration=world.duration, orchestrators=orchestrators())
    result = drive(orchestrators()["plan_orchestrator"], job, script, instance_id=INSTANCE)
    check_replays(result)
    return result


def root_calls(run_: Run) -> list[tuple[str, Any]]:
    return [(name, payload) for name, payload in run_.calls]


def finalize(outcome: str, detail: str, plan_id: str | None = PLAN_ID) -> tuple[str, Json]:
    return "finalize_activity", {**IDS, "plan_id": plan_id, "outcome": outcome, "detail": detail}


QUOTA_OK: Json = {"status": "ok", "message": "ok", "http_status": 200, "retry_after_seconds": 0}
WAIT: Json = {"status": "wait", "message": "queued: the community tier runs 1 plan at once and 1 are running; this "
              "plan starts when one finishes", "http_status": 429, "retry_after_seconds": 60}
BLOCKED: Json = {"status": "blocked", "message": "waiting: the team subscription sub_1 is unpaid; pay the open "
                 "invoice or subscribe again, and the waiting plans resume", "http_status": 402,
                 "retry_after_seconds": 3600}


def telemetry(step: int) -> Json:
    return {"step_id": f"s{step}", "model": "m", "engine": "duckdb", "status": "success", "seconds": 1.5,
            "engine_seconds": 1.0, "rows_written": 3, "rows_read": None, "bytes": None, "error": None,
            "batches": [{"run_id": step, "batch_start": None, "batch_end": None, "status": "success", "seconds": 1.0,
                         "rows_written": 3, "rows_read": None, "bytes": None}]}


def quota(steps: int, first: bool) -> tuple[str, Json]:
    return "check_quota_activity", {**IDS, "steps": steps, "first": first}


BUILD = ("build_plan_activity", {**JOB, "instance_id": INSTANCE})
REQUEST = ("request_approval_activity", {**IDS, "author": "octocat", "ttl_hours": 24})
START = ("start_execution_activity", IDS)


def chunk_input(child: Run) -> Json:
    """A chunk's input: the extension hands a sub-orchestration its input as JSON text."""
    value: Json = json.loads(child.input) if isinstance(child.input, str) else child.input
    return value


def steps_run(run_: Run) -> list[tuple[int, str | None]]:
    """Every step activity of the run's chunks (attempts included): (position, skip reason), in chunk order."""
    return [(payload["step"], payload["skip_reason"]) for child in run_.children for name, payload in child.calls
            if name == "run_step_activity"]


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


# -- the happy path and its shape --------------------------------------------------------------------------------


def test_each_wave_runs_in_chunks_of_at_most_100_steps_with_deterministic_child_ids() -> None:
    waves = [list(range(250)), [250, 251, 252]]
    depends_on: list[list[int]] = [[] for _ in range(250)] + [[0], [1], [2]]
    result = run(World((waves, depends_on)))
    assert root_calls(result) == [BUILD, REQUEST, quota(253, True), START, quota(3, False),
                                  finalize("succeeded", "253 steps succeeded")]
    assert (result.status, result.output) == ("Completed", {"plan_id": PLAN_ID, "status": "succeeded"})
    assert [child.instance_id for child in result.children] == [
        f"{INSTANCE}-w0-c0", f"{INSTANCE}-w0-c1", f"{INSTANCE}-w0-c2", f"{INSTANCE}-w1-c0"]
    assert [chunk_input(child)["steps"] for child in result.children] == [
        list(range(100)), list(range(100, 200)), list(range(200, 250)), [250, 251, 252]]
    assert all(chunk_input(child) == {"ids": IDS, "steps": chunk_input(child)["steps"], "skip": [], "attempts": 3}
               for child in result.children)
    assert max(len(child.calls) for child in result.children) == 100  # no history holds more steps than a chunk
    assert [e["Name"] for e in result.events(E.TASK_SCHEDULED)[3:-1]] == ["start_execution_activity",
                                                                         "check_quota_activity"]  # no step
    assert result.custom_status == {"status": "running", "plan_id": PLAN_ID, "wave": 2, "waves": 2}
    created = result.events(E.SUB_ORCHESTRATION_INSTANCE_CREATED)
    assert [e["Name"] for e in created] == ["run_steps_orchestrator"] * 4
    assert len(json.dumps(result.history)) < 40_000  # positions and statuses, not step IDs or plan bodies


def test_a_step_that_fails_once_succeeds_on_its_retry() -> None:
    result = run(World(step_raises={0: 1}))
    assert steps_run(result) == [(0, None), (1, None), (0, None), (2, None), (3, None)]
    assert root_calls(result)[-1] == finalize("succeeded", "4 steps succeeded")


def test_a_failed_step_skips_its_downstream_and_fails_the_plan() -> None:
    result = run(World(step_status={0: "failed"}))
    assert steps_run(result) == [(0, None), (1, None), (2, SKIPPED), (3, None)]
    assert chunk_input(result.children[1])["skip"] == [2]
    assert root_calls(result)[-1] == finalize("failed", "2 of 4 steps did not succeed")
    assert result.output == {"plan_id": PLAN_ID, "status": "failed"}


def test_a_step_that_exhausts_its_retries_lets_its_whole_wave_finish_before_the_plan_fails() -> None:
    waves = [list(range(150)), [150]]
    depends_on: list[list[int]] = [[] for _ in range(150)] + [[7]]
    result = run(World((waves, depends_on), step_raises={5: 3}, slow={6: 90, 140: 120}))
    detail = f"step #5 kept failing after 3 attempts: RuntimeError: {DOWN}; wave 1 of 2 finished, later waves did not run"
    assert root_calls(result)[-1] == finalize("failed", detail)
    assert result.output == {"plan_id": PLAN_ID, "status": "failed"}
    assert [p for p, _ in steps_run(result)].count(5) == 3 and 150 not in [p for p, _ in steps_run(result)]
    first, second = result.children
    assert first.output["statuses"][5] == "failed" and first.output["exhausted"] == [{"step": 5, "detail": f"RuntimeError: {DOWN}"}]
    assert first.output["statuses"].count("success") == 99 and set(second.output["statuses"]) == {"success"}
    finalized = result.events(E.TASK_SCHEDULED)[-1]
    last_step_done = max(at(e["Timestamp"]) for child in result.children for e in child.events(E.TASK_COMPLETED))
    assert at(finalized["Timestamp"]) >= last_step_done > at(first.events(E.TASK_FAILED)[-1]["Timestamp"])
    position = {id(e): i for i, e in enumerate(result.history)}
    assert all(position[id(done)] < position[id(finalized)]  # the slow siblings, in both chunks, reported first
               for done in result.events(E.SUB_ORCHESTRATION_INSTANCE_COMPLETED))


def test_a_chunk_that_fails_itself_fails_the_plan_after_the_other_chunks_finish() -> None:
    waves = [list(range(120))]
    malformed = World((waves, [[] for _ in range(120)]), answers={"run_step_activity": {"oops": True}})
    result = run(malformed)
    assert [child.status for child in result.children] == ["Failed", "Failed"]
    detail = root_calls(result)[-1][1]["detail"]
    assert detail.startswith("the chunk of steps #0-#99 failed: ")
    assert detail.endswith(" (and 1 more); wave 1 of 1 finished, later waves did not run")
    assert result.output == {"plan_id": PLAN_ID, "status": "failed"}


# -- every failure path ends in finalize with a reason ----------------------------------------------------------------


def test_a_plan_that_cannot_be_built_fails_the_job_without_a_plan() -> None:
    detail = "cannot plan bbbbbbbbbbbb of o/r: models/x.sql:2: unknown upstream 'nope'"
    result = run(World(answers={"build_plan_activity": {"status": "failed", "detail": detail}}))
    assert root_calls(result) == [BUILD, finalize("failed", detail, plan_id=None)]
    assert result.output == {"plan_id": None, "status": "failed"} and not result.children


def test_planning_that_keeps_failing_is_retried_six_times_then_fails_the_job() -> None:
    result = run(World(raises={"build_plan_activity": 6}))
    detail = f"build_plan_activity kept failing after 6 attempts: RuntimeError: {DOWN}"
    assert root_calls(result) == [BUILD] * 6 + [finalize("failed", detail, plan_id=None)]
    scheduled = [at(e["Timestamp"]) for e in result.events(E.TASK_SCHEDULED)][:6]
    assert all(later - earlier >= timedelta(seconds=30) for earlier, later in itertools.pairwise(scheduled))


def test_planning_that_recovers_within_its_retries_goes_on() -> None:
    result = run(World(raises={"build_plan_activity": 2}))
    assert root_calls(result)[:4] == [BUILD, BUILD, BUILD, REQUEST]
    assert result.output == {"plan_id": PLAN_ID, "status": "succeeded"}


def test_an_approval_that_cannot_be_requested_fails_the_job() -> None:
    refused = {"status": "failed", "detail": "GitHub refused the commit status of o/r@bbbbbbbbbbbb: HTTP 403"}
    result = run(World(answers={"request_approval_activity": refused}), events=())
    assert root_calls(result) == [BUILD, REQUEST, finalize("failed", f"approval could not be requested: "
                                                                     f"{refused['detail']}")]
    exhausted = run(World(raises={"request_approval_activity": 6}), events=())
    assert root_calls(exhausted)[-1] == finalize(
        "failed", f"approval could not be requested: request_approval_activity kept failing after 6 attempts: "
                  f"RuntimeError: {DOWN}")


@pytest.mark.parametrize(("world", "detail"), [
    (World(answers={"start_execution_activity": {"status": "failed", "detail": "stale plan pppp: re-plan"}}),
     "stale plan pppp: re-plan"),
    (World(raises={"start_execution_activity": 6}),
     f"start_execution_activity kept failing after 6 attempts: RuntimeError: {DOWN}"),
], ids=["stale", "state store down"])
def test_a_plan_that_cannot_start_fails_the_job_without_running_a_step(world: World, detail: str) -> None:
    result = run(world)
    assert root_calls(result)[-1] == finalize("failed", detail) and not result.children
    assert result.output == {"plan_id": PLAN_ID, "status": "failed"}


def test_finalize_is_retried_until_the_outcome_is_recorded() -> None:
    result = run(World(raises={"finalize_activity": 3}))
    assert root_calls(result)[-4:] == [finalize("succeeded", "4 steps succeeded")] * 4
    assert (result.status, result.output) == ("Completed", {"plan_id": PLAN_ID, "status": "succeeded"})


def test_a_finalize_that_never_succeeds_fails_the_orchestration_loudly() -> None:
    result = run(World(raises={"finalize_activity": 16}))
    assert [name for name, _ in root_calls(result)].count("finalize_activity") == 16
    assert result.status == "Failed" and "finalize_activity" in (result.error or "")


# -- decisions --------------------------------------------------------------------------------------------------------


def test_a_rejected_plan_finishes_as_rejected_without_running() -> None:
    result = run(World(), events=(REJECT,))
    assert root_calls(result) == [BUILD, REQUEST, finalize("rejected", "rejected by reviewer")]
    assert result.custom_status == {"status": "awaiting_approval", "plan_id": PLAN_ID}


def test_an_unanswered_approval_expires() -> None:
    result = run(World(), events=())
    assert root_calls(result) == [BUILD, REQUEST, finalize("expired", "not approved within 24 h")]


def test_an_empty_plan_succeeds_at_once() -> None:
    result = run(World(([], [])), events=())
    assert root_calls(result) == [BUILD, finalize("succeeded",
                                                  "nothing to run: no model's data, tests or contract changed")]


@pytest.mark.parametrize("decision", [APPROVE, REJECT], ids=["approved", "rejected"])
def test_a_plan_that_only_changes_tests_or_contracts_waits_for_approval(decision: Raise) -> None:
    result = run(World(([], []), checks_changed=True), events=(decision,))
    if decision is REJECT:
        assert root_calls(result) == [BUILD, REQUEST, finalize("rejected", "rejected by reviewer")]
        return
    assert root_calls(result) == [BUILD, REQUEST, START, finalize("succeeded",  # the stale check still applies
                                                                   "tests or contracts changed; nothing to rebuild")]
    assert not result.children


def test_auto_approval_skips_the_approval_request() -> None:
    job = {**JOB, "auto_approve": True}
    result = run(World(), events=(), job=job)
    assert [name for name, _ in root_calls(result)] == ["build_plan_activity", "check_quota_activity",
                                                        "start_execution_activity", "check_quota_activity",
                                                        "finalize_activity"]


def test_a_week_long_approval_waits_in_plain_timers_of_at_most_72_hours() -> None:
    job = {**JOB, "approval_ttl_hours": 168}
    expired = run(World(), events=(), job=job)
    requested = expired.events(E.TASK_COMPLETED)[1]
    began = at(next(e for e in reversed(expired.history[:expired.history.index(requested)])
                    if e["EventType"] == E.ORCHESTRATOR_STARTED)["Timestamp"])
    assert [e["FireAt"] for e in expired.events(E.TIMER_CREATED)] == [
        iso(began + timedelta(hours=hours)) for hours in (72, 144, 168)]  # not split by the SDK: one timer each
    assert root_calls(expired)[-1] == finalize("expired", "not approved within 168 h")

    late = Raise("approval", {"decision": "approve", "by": "reviewer", "comment": ""}, after=timedelta(hours=100))
    approved = run(World(), events=(late,), job=job)
    assert len(approved.events(E.TIMER_CREATED)) == 2 and not approved.events(E.TIMER_FIRED)[1:]
    races = [a for a in approved.actions() if a.get("actionType") == 11]  # WhenAny: the event, then each timer
    assert [[a["actionType"] for a in race["compoundActions"]] for race in races] == [[6, 5], [5]]
    assert [race["compoundActions"][-1]["isCanceled"] for race in races] == [False, True]  # the running one
    assert approved.output == {"plan_id": PLAN_ID, "status": "succeeded"}


# -- quotas and telemetry ---------------------------------------------------------------------------------------------


def timers_after_start(result: Run) -> list[timedelta]:
    """The pauses the root waited on timers, each from the episode that created it."""
    pauses = []
    for event in result.events(E.TIMER_CREATED):
        index = next(i for i, e in enumerate(result.history) if e is event)
        began = at(next(e for e in reversed(result.history[:index])
                        if e["EventType"] == E.ORCHESTRATOR_STARTED)["Timestamp"])
        pauses.append(at(event["FireAt"]) - began)
    return pauses


def test_a_plan_over_the_concurrency_limit_waits_on_timers_then_runs() -> None:
    result = run(World(quota=[WAIT] * 6), events=(), job={**JOB, "auto_approve": True})
    assert root_calls(result)[:9] == [BUILD_AUTO, *[quota(4, True)] * 7, START]
    assert timers_after_start(result) == [timedelta(minutes=m) for m in (1, 2, 4, 8, 15, 15)]
    assert root_calls(result)[-1] == finalize("succeeded", "4 steps succeeded")


def test_a_blocked_plan_waits_hourly_and_the_job_ends_with_the_reason_after_a_week() -> None:
    result = run(World(quota=[BLOCKED] * 1000), events=(), job={**JOB, "auto_approve": True})
    # hourly for a week: each check takes its second, so the 168th pause would end past the deadline
    assert set(timers_after_start(result)) == {timedelta(hours=1)} and len(timers_after_start(result)) == 7 * 24 - 1
    assert root_calls(result)[-1] == finalize("failed", f"{BLOCKED['message']} (gave up after waiting 7 days)")
    assert not result.children  # nothing ran, and the plan is kept for a later run


def test_a_quota_exhausted_before_a_later_wave_pauses_the_plan_there() -> None:
    result = run(World(quota=[QUOTA_OK, BLOCKED]), events=(), job={**JOB, "auto_approve": True})
    names = [name for name, _ in root_calls(result)]
    assert names == ["build_plan_activity", "check_quota_activity", "start_execution_activity",
                     "check_quota_activity", "check_quota_activity", "finalize_activity"]
    assert len(result.children) == 2 and timers_after_start(result) == [timedelta(hours=1)]
    assert result.output == {"plan_id": PLAN_ID, "status": "succeeded"}


def test_a_quota_check_that_keeps_failing_ends_the_job_with_the_reason() -> None:
    result = run(World(raises={"check_quota_activity": 6}), events=(), job={**JOB, "auto_approve": True})
    assert root_calls(result)[-1] == finalize(
        "failed", f"the quota could not be checked: check_quota_activity kept failing after 6 attempts: "
                  f"RuntimeError: {DOWN}")
    assert not result.children


def test_each_chunk_hands_its_telemetry_on_and_a_failure_to_record_it_never_fails_the_run() -> None:
    result = run(World(telemetry=True), events=(), job={**JOB, "auto_approve": True})
    recorded = [payload for child in result.children for name, payload in child.calls
                if name == "record_telemetry_activity"]
    assert recorded == [{**IDS, "steps": [telemetry(0), telemetry(1)]}, {**IDS, "steps": [telemetry(2), telemetry(3)]}]
    assert [child.status for child in result.children] == ["Completed", "Completed"]
    assert result.output == {"plan_id": PLAN_ID, "status": "succeeded"}
    quiet = run(World(), events=(), job={**JOB, "auto_approve": True})  # steps without telemetry: nothing to record
    assert not [name for child in quiet.children for name, _ in child.calls if name == "record_telemetry_activity"]


BUILD_AUTO = ("build_plan_activity", {**JOB, "auto_approve": True, "instance_id": INSTANCE})
