"""`plan_orchestrator` run through the Durable SDK's own executor, then replayed: the same actions every time.

Each scenario mirrors one of tests/functions/test_orchestrator.py, but episode by episode as the Functions host
runs it (tests/functions/durable_replay.py): the history grows as the extension would write it, the whole
history is replayed at every episode, and the finished history is replayed twice more (and in fresh
interpreters with other hash seeds and a bare environment) to the same actions, output and custom status.
Small orchestrators defined here prove the harness: a clock, a UUID, an environment variable or a set's
order in an activity input is reported as non-determinism; `is_replaying` holds for old events only;
sub-orchestrations, stuck orchestrations and task-ID drift between the SDK and the extension are handled.
"""

from __future__ import annotations

import functools
import json
import os
import uuid
from collections.abc import Generator, Mapping
from datetime import datetime, timedelta
from typing import Any

import azure.durable_functions as df
import pytest
from azure.durable_functions.models.history.HistoryEventType import HistoryEventType as E

from tests.functions.durable_replay import (
    START,
    NonDeterminismError,
    Orchestration,
    Raise,
    Run,
    Script,
    StuckOrchestrationError,
    TaskIdError,
    app_orchestrations,
    check_replays,
    check_replays_in_subprocesses,
    iso,
    load_orchestrator,
    run_orchestration,
)

Json = dict[str, Any]
INSTANCE = "push-" + "0" * 32
PLAN_ID = "p" * 64
JOB: Json = {"kind": "push", "tenant_id": "t1", "repository": "o/r", "base": "a" * 40, "target": "b" * 40,
             "branch": "main", "author": "octocat", "auto_approve": False, "approval_ttl_hours": 24, "step_retries": 3}
IDS: Json = {"tenant_id": "t1", "instance_id": INSTANCE, "repository": "o/r", "target": "b" * 40, "plan_id": PLAN_ID}
WAVES = [[0, 1], [2, 3]]  # step positions in the plan, by wave
DEPENDS_ON = [[], [], [0], [1]]  # the upstream positions of each step
APPROVE = Raise("approval", {"decision": "approve", "by": "reviewer", "comment": ""}, after=timedelta(minutes=10))
REJECT = Raise("approval", {"decision": "reject", "by": "reviewer", "comment": "no"}, after=timedelta(minutes=10))
SKIPPED = "skipped: an upstream step did not succeed"
UNREACHABLE = "state store unreachable"


@functools.cache
def orchestrators() -> dict[str, Orchestration]:
    """The app's orchestrators: `plan_orchestrator` and any sub-orchestrator it calls."""
    from tests.functions.conftest import functions_by_name  # here: the replay subprocesses import this module

    return app_orchestrations(functions_by_name().values())


def plan_orchestrator() -> Orchestration:
    return orchestrators()["plan_orchestrator"]


class World:
    """The activities' answers in one scenario: a plan of `waves`, steps that fail `failures[step]` times first."""

    def __init__(self, waves: list[list[int]], *, start: Json | None = None, failures: Mapping[int, int] = {},
                 statuses: Mapping[int, str] = {}, slow: Mapping[int, int] = {}, checks_changed: bool = False,
                 quota_waits: int = 0, telemetry: bool = False) -> None:
        self.waves, self.failures, self.statuses, self.slow = waves, failures, statuses, slow
        self.checks_changed = checks_changed
        self.quota_waits, self.telemetry = quota_waits, telemetry
        self.start = start or {"status": "ok", "detail": ""}
        self.attempts: dict[int, int] = {}

    def respond(self, name: str, payload: Any) -> Any:
        if name == "build_plan_activity":
            return {"status": "planned", "plan_id": PLAN_ID, "waves": self.waves,
                    "depends_on": DEPENDS_ON if self.waves else [], "checks_changed": self.checks_changed}
        if name == "request_approval_activity":
            return {"status": "requested", "link_expires_in_hours": payload["ttl_hours"]}
        if name == "start_execution_activity":
            return self.start
        if name == "check_quota_activity":
            if self.quota_waits:
                self.quota_waits -= 1
                return QUOTA_WAIT
            return QUOTA_OK
        if name == "record_telemetry_activity":
            raise RuntimeError("telemetry store unreachable")  # never fails the run
        if name == "run_step_activity":
            step = payload["step"]
            self.attempts[step] = self.attempts.get(step, 0) + 1
            if self.attempts[step] <= self.failures.get(step, 0):
                raise RuntimeError(UNREACHABLE)
            if payload["skip_reason"]:
                return {"status": "skipped", "error": payload["skip_reason"], "step_id": f"s{step}", "model": "m"}
            result = {"status": self.statuses.get(step, "success"), "error": None, "step_id": f"s{step}",
                      "model": "m", "rows_written": 3, "batches": 1}
            return {**result, "telemetry": telemetry(step)} if self.telemetry else result
        if name == "finalize_activity":
            return {"status": payload["outcome"]}
        raise AssertionError(f"unexpected activity {name}")

    def duration(self, name: str, payload: Any) -> timedelta:
        step = payload.get("step", -1) if isinstance(payload, dict) else -1
        return timedelta(seconds=self.slow.get(step, 1))


QUOTA_OK = {"status": "ok", "message": "ok", "http_status": 200, "retry_after_seconds": 0}
QUOTA_WAIT = {"status": "wait", "message": "queued: the team tier runs 5 plans at once and 5 are running; this plan "
              "starts when one finishes", "http_status": 429, "retry_after_seconds": 60}


def telemetry(step: int) -> Json:
    return {"step_id": f"s{step}", "model": "m", "engine": "duckdb", "status": "success", "seconds": 1.5,
            "engine_seconds": 1.0, "rows_written": 3, "rows_read": None, "bytes": None, "error": None,
            "batches": [{"run_id": step, "batch_start": None, "batch_end": None, "status": "success", "seconds": 1.0,
                         "rows_written": 3, "rows_read": None, "bytes": None}]}


def quota(steps: int, first: bool) -> tuple[str, Json]:
    return "check_quota_activity", {**IDS, "steps": steps, "first": first}


def step(position: int, skip: str | None = None) -> tuple[str, Json]:
    return "run_step_activity", {**IDS, "step": position, "skip_reason": skip}


def finalize(outcome: str, detail: str) -> tuple[str, Json]:
    return "finalize_activity", {**IDS, "outcome": outcome, "detail": detail}


BUILD = ("build_plan_activity", {**JOB, "instance_id": INSTANCE})
AUTO_BUILD = ("build_plan_activity", {**JOB, "auto_approve": True, "instance_id": INSTANCE})
REQUEST = ("request_approval_activity", {**IDS, "author": "octocat", "ttl_hours": 24})
START_EXECUTION = ("start_execution_activity", IDS)
PLAN_QUOTA, WAVE_QUOTA = quota(4, True), quota(2, False)
RUNNING = {"status": "running", "plan_id": PLAN_ID, "wave": 2, "waves": 2}
AWAITING = {"status": "awaiting_approval", "plan_id": PLAN_ID}
FAILURE = f"Activity function 'run_step_activity' failed: RuntimeError: {UNREACHABLE}"  # TaskFailed's Reason
EXHAUSTED = (f"step #0 kept failing after 3 attempts: RuntimeError: {UNREACHABLE}; wave 1 of 2 finished, later "
             "waves did not run")

# name -> (job, world, events, the root's expected activity calls, then the chunks', in order, the expected output
# status, the expected custom status)
SCENARIOS: dict[str, tuple[Json, World, tuple[Raise, ...], list[tuple[str, Any]], list[tuple[str, Any]], str,
                           Json | None]] = {
    "approved, every step succeeds": (
        JOB, World(WAVES), (APPROVE,),
        [BUILD, REQUEST, PLAN_QUOTA, START_EXECUTION, WAVE_QUOTA, finalize("succeeded", "4 steps succeeded")],
        [step(0), step(1), step(2), step(3)], "succeeded", RUNNING),
    "approved, a step fails once and succeeds on its retry": (
        JOB, World(WAVES, failures={0: 1}), (APPROVE,),
        [BUILD, REQUEST, PLAN_QUOTA, START_EXECUTION, WAVE_QUOTA, finalize("succeeded", "4 steps succeeded")],
        [step(0), step(1), step(0), step(2), step(3)], "succeeded", RUNNING),
    "approved, a step exhausts its retries while the other step of its wave finishes": (
        JOB, World(WAVES, failures={0: 3}, slow={1: 60}), (APPROVE,),
        [BUILD, REQUEST, PLAN_QUOTA, START_EXECUTION, finalize("failed", EXHAUSTED)],
        [step(0), step(1), step(0), step(0)], "failed", {**RUNNING, "wave": 1}),
    "approved, a failed step skips its downstream": (
        JOB, World(WAVES, statuses={0: "failed"}), (APPROVE,),
        [BUILD, REQUEST, PLAN_QUOTA, START_EXECUTION, WAVE_QUOTA, finalize("failed", "2 of 4 steps did not succeed")],
        [step(0), step(1), step(2, SKIPPED), step(3)], "failed", RUNNING),
    "approved, but the plan went stale": (
        JOB, World(WAVES, start={"status": "failed", "detail": "stale plan pppp: re-plan"}), (APPROVE,),
        [BUILD, REQUEST, PLAN_QUOTA, START_EXECUTION, finalize("failed", "stale plan pppp: re-plan")], [], "failed",
        AWAITING),
    "rejected": (
        JOB, World(WAVES), (REJECT,), [BUILD, REQUEST, finalize("rejected", "rejected by reviewer")], [], "rejected",
        AWAITING),
    "approval expired": (
        JOB, World(WAVES), (), [BUILD, REQUEST, finalize("expired", "not approved within 24 h")], [], "expired",
        AWAITING),
    "empty plan": (
        JOB, World([]), (), [BUILD, finalize("succeeded", "nothing to run: no model's data, tests or contract changed")],
        [], "succeeded", None),
    "only tests changed: approved, nothing rebuilt": (
        JOB, World([], checks_changed=True), (APPROVE,),
        [BUILD, REQUEST, START_EXECUTION, finalize("succeeded", "tests or contracts changed; nothing to rebuild")], [],
        "succeeded", AWAITING),
    "auto-approved": (
        {**JOB, "auto_approve": True}, World(WAVES), (),
        [AUTO_BUILD, PLAN_QUOTA, START_EXECUTION, WAVE_QUOTA, finalize("succeeded", "4 steps succeeded")],
        [step(0), step(1), step(2), step(3)], "succeeded", RUNNING),
    "auto-approved, waiting twice for a concurrency slot": (
        {**JOB, "auto_approve": True}, World(WAVES, quota_waits=2), (),
        [AUTO_BUILD, PLAN_QUOTA, PLAN_QUOTA, PLAN_QUOTA, START_EXECUTION, WAVE_QUOTA,
         finalize("succeeded", "4 steps succeeded")], [step(0), step(1), step(2), step(3)], "succeeded", RUNNING),
    "auto-approved, each chunk's telemetry failing to record": (
        {**JOB, "auto_approve": True}, World(WAVES, telemetry=True), (),
        [AUTO_BUILD, PLAN_QUOTA, START_EXECUTION, WAVE_QUOTA, finalize("succeeded", "4 steps succeeded")],
        [step(0), step(1), ("record_telemetry_activity", {**IDS, "steps": [telemetry(0), telemetry(1)]}),
         step(2), step(3), ("record_telemetry_activity", {**IDS, "steps": [telemetry(2), telemetry(3)]})],
        "succeeded", RUNNING),
}


@functools.cache
def scenario_run(name: str) -> Run:
    job, world, events, *_ = SCENARIOS[name]
    script = Script(world.respond, events, duration=world.duration, orchestrators=orchestrators())
    return run_orchestration(plan_orchestrator(), job, script, instance_id=INSTANCE)


def scheduled_input(event: Json) -> Any:
    """A TaskScheduled event's input: DTFx's one-parameter array around the action's JSON text."""
    (text,) = json.loads(event["Input"])
    return json.loads(text)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def episode_time(run: Run, event: Json) -> datetime:
    """The orchestrator's `current_utc_datetime` while it handled `event`: its episode's start."""
    index = next(i for i, e in enumerate(run.history) if e is event)
    return at(next(e for e in reversed(run.history[:index]) if e["EventType"] == E.ORCHESTRATOR_STARTED)["Timestamp"])


def check_history(run: Run) -> None:
    """The history is one the extension could have written: episodes, consecutive task IDs, answered tasks."""
    kinds = [e["EventType"] for e in run.history]
    assert kinds[:2] == [E.ORCHESTRATOR_STARTED, E.EXECUTION_STARTED]
    assert kinds[-2:] == [E.EXECUTION_COMPLETED, E.ORCHESTRATOR_COMPLETED]
    episodes = [k for k in kinds if k in (E.ORCHESTRATOR_STARTED, E.ORCHESTRATOR_COMPLETED)]
    assert episodes == [E.ORCHESTRATOR_STARTED, E.ORCHESTRATOR_COMPLETED] * len(run.episodes)
    starts = [at(e["Timestamp"]) for e in run.history if e["EventType"] == E.ORCHESTRATOR_STARTED]
    assert starts == sorted(set(starts))
    decided = [e for e in run.history if e["EventId"] >= 0]
    assert [e["EventId"] for e in decided] == list(range(len(decided)))  # one counter, in order
    scheduled: dict[int, int] = {}
    for e in run.history:
        if e["EventType"] in (E.TASK_SCHEDULED, E.TIMER_CREATED, E.SUB_ORCHESTRATION_INSTANCE_CREATED):
            scheduled[e["EventId"]] = e["EventType"]
        elif e["EventType"] in (E.TASK_COMPLETED, E.TASK_FAILED):
            assert scheduled.pop(e["TaskScheduledId"]) == E.TASK_SCHEDULED
        elif e["EventType"] == E.TIMER_FIRED:
            assert scheduled.pop(e["TimerId"]) == E.TIMER_CREATED
            assert e["Timestamp"] == e["FireAt"]
        elif e["EventType"] in (E.SUB_ORCHESTRATION_INSTANCE_COMPLETED, E.SUB_ORCHESTRATION_INSTANCE_FAILED):
            assert scheduled.pop(e["TaskScheduledId"]) == E.SUB_ORCHESTRATION_INSTANCE_CREATED
    assert all(kind == E.TIMER_CREATED for kind in scheduled.values())  # only unfired (e.g. cancelled) timers left
    assert df.DurableOrchestrationContext.from_json(run.replay_context()).histories[-1].event_type == \
        E.ORCHESTRATOR_COMPLETED


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario_runs_as_on_the_host_and_replays_to_the_same_actions(name: str) -> None:
    _, _, _, calls, chunk_calls, status, custom_status = SCENARIOS[name]
    run = scenario_run(name)
    assert run.calls == calls
    assert [call for child in run.children for call in child.calls] == chunk_calls
    assert (run.status, run.output, run.custom_status) == ("Completed", {"plan_id": PLAN_ID, "status": status},
                                                           custom_status)
    assert [(e["Name"], scheduled_input(e)) for e in run.events(E.TASK_SCHEDULED)] == calls
    for each in run.all_runs():
        check_history(each)
    check_replays(run)


def test_every_scenario_replays_the_same_in_fresh_interpreters_with_other_hash_seeds() -> None:
    check_replays_in_subprocesses([scenario_run(name) for name in SCENARIOS])


def test_the_refs_the_subprocesses_import_are_the_registered_orchestrators() -> None:
    from tests.functions.conftest import functions_by_name

    assert plan_orchestrator().function is \
        functions_by_name()["plan_orchestrator"].get_user_function().orchestrator_function
    assert plan_orchestrator().ref == "functions.planning:plan_orchestrator"
    for orchestration in orchestrators().values():
        assert load_orchestrator(orchestration.ref) is orchestration.function


def test_approval_races_a_24_hour_timer_that_approval_cancels() -> None:
    run = scenario_run("approved, every step succeeds")
    approval_requested = run.events(E.TASK_COMPLETED)[1]  # its episode starts the race
    (timer,) = run.events(E.TIMER_CREATED)
    assert timer["FireAt"] == iso(episode_time(run, approval_requested) + timedelta(hours=24))
    (raised,) = run.events(E.EVENT_RAISED)
    assert raised["Name"] == "approval"
    assert not run.events(E.TIMER_FIRED)  # cancelled: the run ends long before it would fire
    race = run.actions()[2]
    assert [a["actionType"] for a in race["compoundActions"]] == [6, 5]  # event, timer
    assert race["compoundActions"][1]["isCanceled"] is True


def test_expiry_is_the_timer_firing_24_hours_later() -> None:
    run = scenario_run("approval expired")
    (fired,) = run.events(E.TIMER_FIRED)
    assert fired["TimerId"] == run.events(E.TIMER_CREATED)[0]["EventId"]
    finalize_scheduled = run.events(E.TASK_SCHEDULED)[-1]
    assert at(finalize_scheduled["Timestamp"]) >= at(fired["FireAt"]) > START + timedelta(hours=24)
    assert not run.events(E.EVENT_RAISED)


def test_exhausted_retries_are_failures_and_timers_and_the_wave_finishes_before_the_outcome() -> None:
    run = scenario_run("approved, a step exhausts its retries while the other step of its wave finishes")
    (chunk,) = run.children  # wave 1 only: wave 2 never starts
    s0_attempts = [e["EventId"] for e in chunk.events(E.TASK_SCHEDULED) if scheduled_input(e).get("step") == 0]
    failed = chunk.events(E.TASK_FAILED)
    assert [e["TaskScheduledId"] for e in failed] == s0_attempts and len(s0_attempts) == 3
    assert all(e["Reason"] == FAILURE for e in failed)
    timers = chunk.events(E.TIMER_CREATED)  # one retry timer per failure
    assert [t["FireAt"] for t in timers] == [iso(episode_time(chunk, f) + timedelta(seconds=5)) for f in failed]
    position = {id(e): i for i, e in enumerate(chunk.history)}
    s1_done = next(e for e in chunk.events(E.TASK_COMPLETED) if json.loads(e["Result"]).get("rows_written"))
    assert position[id(s1_done)] > position[id(failed[-1])]  # the slow sibling finished after the last failure
    assert chunk.output == {"statuses": ["failed", "success"], "exhausted": [{"step": 0, "detail": f"RuntimeError: {UNREACHABLE}"}]}
    finalize_scheduled = run.events(E.TASK_SCHEDULED)[-1]
    assert finalize_scheduled["Name"] == "finalize_activity"
    assert at(finalize_scheduled["Timestamp"]) >= at(s1_done["Timestamp"])


# --------------------------------------------------------------------------------------------------
# The harness itself, on small orchestrators
# --------------------------------------------------------------------------------------------------

REPLAYING: list[list[bool]] = []
HERE = "tests.functions.test_orchestrator_replay"
NAMES = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel")  # seeds 1 and 2 order them apart


def echo(name: str, payload: Any) -> Any:
    if name == "fail":
        raise ValueError(f"cannot {payload}")
    return payload


def tiny(function: Any, *, ref: str | None = None) -> Orchestration:
    return Orchestration(function.__name__, function, ref or f"{HERE}:{function.__name__}")


def replay_recording_orchestrator(context: df.DurableOrchestrationContext) -> Generator[Any, Any, int]:
    REPLAYING.append([])
    for index in range(3):
        REPLAYING[-1].append(context.is_replaying)
        yield context.call_activity("echo", index)
    return 3


def clock_orchestrator(context: df.DurableOrchestrationContext) -> Generator[Any, Any, None]:
    for _ in range(2):
        yield context.call_activity("echo", {"at": datetime.now().isoformat()})


def uuid_orchestrator(context: df.DurableOrchestrationContext) -> Generator[Any, Any, str]:
    run_id = str(uuid.uuid4())
    yield context.call_activity("echo", {"run": run_id})
    return run_id


def environment_orchestrator(context: df.DurableOrchestrationContext) -> Generator[Any, Any, None]:
    yield context.call_activity("echo", {"region": os.environ.get("IRONLAYER_REPLAY_PROBE", "unset")})


def set_order_orchestrator(context: df.DurableOrchestrationContext) -> Generator[Any, Any, None]:
    for name in set(NAMES):
        yield context.call_activity("echo", name)


def waves_orchestrator(context: df.DurableOrchestrationContext) -> Generator[Any, Any, list[Any]]:
    outcomes = []
    for index, wave in enumerate(context.get_input()["waves"]):  # a dict: the SDK parses no list at the root
        try:
            outcomes.append((yield context.call_sub_orchestrator("wave_orchestrator", wave)))
        except Exception as exc:
            outcomes.append(f"wave {index} failed: {str(exc).splitlines()[0]}")
    return outcomes


def wave_orchestrator(context: df.DurableOrchestrationContext) -> Generator[Any, Any, list[Any]]:
    results = yield context.task_all([context.call_activity(name, payload) for name, payload in context.get_input()])
    return list(results)


def waiting_orchestrator(context: df.DurableOrchestrationContext) -> Generator[Any, Any, Any]:
    return (yield context.wait_for_external_event("never"))


def fail_fast_orchestrator(context: df.DurableOrchestrationContext) -> Generator[Any, Any, str]:
    retry = df.RetryOptions(first_retry_interval_in_milliseconds=5000, max_number_of_attempts=2)
    try:
        yield context.task_all([context.call_activity_with_retry("fail", retry, "a"),
                                context.call_activity_with_retry("flaky", retry, "b")])
    except Exception:
        yield context.call_activity("echo", "report")
    return "done"


def test_each_episode_replays_the_whole_history_with_is_replaying_set_for_old_events() -> None:
    REPLAYING.clear()
    run = run_orchestration(tiny(replay_recording_orchestrator), None, Script(echo))
    assert REPLAYING == [[False], [True, False], [True, True, False], [True, True, True]]
    assert [e["EventType"] for e in run.history[:4]] == [E.ORCHESTRATOR_STARTED, E.EXECUTION_STARTED,
                                                         E.TASK_SCHEDULED, E.ORCHESTRATOR_COMPLETED]
    assert [e.context_bytes for e in run.episodes] == sorted(e.context_bytes for e in run.episodes)
    assert run.output == 3 and run.calls == [("echo", 0), ("echo", 1), ("echo", 2)]
    REPLAYING.clear()
    check_replays(run)
    assert REPLAYING == [[True, True, True]] * 2


def test_a_clock_in_an_activity_input_is_caught_while_running() -> None:
    with pytest.raises(NonDeterminismError) as caught:
        run_orchestration(tiny(clock_orchestrator), None, Script(echo))
    assert "episode 2" in str(caught.value) and "action #0" in str(caught.value)


def test_a_uuid_in_an_activity_input_is_caught_by_the_replays() -> None:
    run = run_orchestration(tiny(uuid_orchestrator), None, Script(echo), verify_episodes=False)
    assert run.status == "Completed"
    with pytest.raises(NonDeterminismError) as caught:
        check_replays(run)
    assert "in-process replay 1: actions differ" in str(caught.value)


def test_an_environment_read_is_caught_by_a_replay_in_a_bare_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IRONLAYER_REPLAY_PROBE", "westeurope")
    run = run_orchestration(tiny(environment_orchestrator), None, Script(echo))
    assert run.calls == [("echo", {"region": "westeurope"})]
    check_replays(run)  # the same process, the same environment: no difference
    with pytest.raises(NonDeterminismError) as caught:
        check_replays_in_subprocesses([run])
    assert "PYTHONHASHSEED=2" in str(caught.value) and "unset" in str(caught.value)


def test_iterating_a_set_is_caught_by_replays_under_other_hash_seeds() -> None:
    run = run_orchestration(tiny(set_order_orchestrator), None, Script(echo))
    assert sorted(payload for _, payload in run.calls) == sorted(NAMES)
    check_replays(run)  # one process, one hash seed: the order holds
    with pytest.raises(NonDeterminismError) as caught:
        check_replays_in_subprocesses([run], hash_seeds=(1, 2))
    assert "actions differ" in str(caught.value)


def test_sub_orchestrations_run_as_children_with_their_own_histories() -> None:
    waves = [[["echo", "s1"], ["echo", "s2"]], [["fail", "s3"]], [["echo", "s4"]]]
    script = Script(echo, orchestrators={"wave_orchestrator": tiny(wave_orchestrator)})
    run = run_orchestration(tiny(waves_orchestrator), {"waves": waves}, script)
    assert run.output == [["s1", "s2"], "wave 1 failed: Orchestrator function 'wave_orchestrator' failed: "
                                        "Activity function 'fail' failed: ValueError: cannot s3 ", ["s4"]]
    created = run.events(E.SUB_ORCHESTRATION_INSTANCE_CREATED)
    assert [c.instance_id for c in run.children] == [e["InstanceId"] for e in created]
    assert [len(run.events(k)) for k in (E.SUB_ORCHESTRATION_INSTANCE_COMPLETED,
                                         E.SUB_ORCHESTRATION_INSTANCE_FAILED)] == [2, 1]
    assert [c.status for c in run.children] == ["Completed", "Failed", "Completed"]
    for child, event in zip(run.children, created, strict=True):
        started = child.history[1]
        assert started["ParentInstance"]["TaskScheduleId"] == event["EventId"]
        assert child.parent_instance_id == run.instance_id
    assert [c.calls for c in run.children] == [[("echo", "s1"), ("echo", "s2")], [("fail", "s3")], [("echo", "s4")]]
    check_history(run)
    check_replays(run)
    check_replays_in_subprocesses([run], hash_seeds=(3,))


def test_waiting_for_an_event_that_never_comes_is_reported_as_stuck() -> None:
    with pytest.raises(StuckOrchestrationError) as caught:
        run_orchestration(tiny(waiting_orchestrator), None, Script(echo))
    assert "event 'never'" in str(caught.value)
    run = run_orchestration(tiny(waiting_orchestrator), None, Script(echo, (Raise("never", {"at": "last"}),)))
    assert run.output == {"at": "last"}


def test_a_task_all_that_fails_fast_while_a_sibling_retries_gives_one_task_id_two_meanings() -> None:
    flaky: dict[str, int] = {}

    def respond(name: str, payload: Any) -> Any:
        flaky[name] = flaky.get(name, 0) + 1
        if name == "fail" or (name == "flaky" and flaky[name] == 1):
            raise RuntimeError(f"{name} broke")
        return payload

    def duration(name: str, payload: Any) -> timedelta:
        return timedelta(seconds=14 if name == "flaky" else 1)

    with pytest.raises(TaskIdError) as caught:  # the SDK yields 'echo' at once; the extension waits for 'flaky'
        run_orchestration(tiny(fail_fast_orchestrator), None, Script(respond, duration=duration))
    assert "task #5 is timer for the extension but task echo for the SDK" in str(caught.value)
