"""Backfill plans: exactly the requested range of one model, and with `downstream` the refresh of what reads it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared_core.core.errors import ModelError
from shared_core.core.planning.plan import Plan, RunType
from shared_core.core.planning.plan_codec import load_plan, plan_to_json
from shared_core.core.planning.planner import build_backfill_plan
from shared_core.core.planning.watermarks import parse_watermarks
from shared_core.core.project.config import PlannerSettings
from shared_core.core.project.headers import parse_instant
from shared_core.core.project.models import ModelSource, Project, load_project
from shared_core.ports import InlineAnalyzer

D = "T00:00:00Z"


def model(name: str, sql: str, kind: str = "FULL_REFRESH", **keys: str) -> str:
    header = [f"-- name: {name}", f"-- kind: {kind}"] + [f"-- {k}: {v}" for k, v in keys.items()]
    return "\n".join(header) + "\n" + sql + "\n"


def daily(name: str, sql: str, kind: str = "INCREMENTAL_BY_TIME_RANGE", **keys: str) -> str:
    return model(name, sql, kind, time_column="d", start="2024-01-01", **keys)


PROJECT = {
    "models/src.sql": model("raw.src", "SELECT 1 AS d"),
    "models/log.sql": daily("s.log", "SELECT d FROM {{ ref('raw.src') }}", "APPEND_ONLY"),
    "models/daily.sql": daily("s.daily", "SELECT d FROM {{ ref('s.log') }}"),
    "models/monthly.sql": model("s.monthly", "SELECT d FROM {{ ref('s.log') }}", "INCREMENTAL_BY_TIME_RANGE",
                                time_column="d", start="2023-12-01", batch="month"),
    "models/tot.sql": model("s.tot", "SELECT count(*) AS n FROM {{ ref('s.daily') }}"),
    "models/after.sql": daily("s.after", "SELECT d FROM {{ ref('s.tot') }}"),
    "models/unbuilt.sql": daily("s.unbuilt", "SELECT d FROM {{ ref('s.log') }}"),
    "models/under.sql": model("s.under", "SELECT d FROM {{ ref('s.unbuilt') }}"),
    "models/other.sql": model("s.other", "SELECT d FROM {{ ref('raw.src') }}"),
}
LEDGER = {
    "s.log": [["2024-01-01", "2024-01-20"]],
    "s.daily": [["2024-01-01", "2024-01-20"]],
    "s.monthly": [["2023-12-01", "2024-02-01"]],
    "s.after": [["2024-01-01", "2024-01-12T12:00:00Z"]],  # half a batch is not a batch
}


def project(files: dict[str, str]) -> Project:
    return load_project([ModelSource(path, text) for path, text in files.items()])


def backfill(model_name: str, start: str, end: str, *, downstream: bool = False,
             ledger: dict[str, Any] | None = None, files: dict[str, str] | None = None,
             max_batches: int = 366) -> Plan:
    return build_backfill_plan(
        project(files or PROJECT), model_name, parse_instant(start), parse_instant(end), target_sha="t" * 40,
        settings=PlannerSettings(max_batches), analyzer=InlineAnalyzer(), downstream=downstream,
        ledger=parse_watermarks(json.dumps(LEDGER if ledger is None else ledger), "w.json"),
    )


def steps_of(p: Plan) -> list[tuple[str, RunType, str | None, str | None]]:
    return [(s.model, s.run_type, s.start, s.end) for s in p.steps]


def test_a_backfill_plans_exactly_its_range_of_one_model() -> None:
    p = backfill("s.log", "2024-01-05", "2024-01-08")
    assert steps_of(p) == [("s.log", "backfill", "2024-01-05" + D, "2024-01-08" + D)]
    assert p.inputs.watermarks == {} and not p.steps[0].reset
    assert p.as_of == "2024-01-08" + D and p.base == p.target


def test_downstream_refreshes_what_reads_the_range_in_dependency_order() -> None:
    p = backfill("s.log", "2024-01-05", "2024-01-08", downstream=True)
    assert steps_of(p) == [
        ("s.log", "backfill", "2024-01-05" + D, "2024-01-08" + D),
        ("s.daily", "backfill", "2024-01-05" + D, "2024-01-08" + D),  # the same days
        ("s.monthly", "backfill", "2024-01-01" + D, "2024-02-01" + D),  # widened to its batch
        ("s.tot", "full_refresh", None, None),
        ("s.after", "backfill", "2024-01-01" + D, "2024-01-12" + D),  # below a rebuilt model: all it has built
    ]  # s.unbuilt has nothing built there, so neither it nor s.under runs; s.other does not read s.log
    by_model = {s.model: s for s in p.steps}
    log_id = by_model["s.log"].step_id
    assert by_model["s.daily"].depends_on == (log_id,) and by_model["s.monthly"].depends_on == (log_id,)
    assert by_model["s.tot"].depends_on == (by_model["s.daily"].step_id,)
    assert by_model["s.after"].depends_on == (by_model["s.tot"].step_id,)
    assert [s.parallel_group for s in p.steps] == [0, 1, 1, 2, 3]
    assert not any(s.reset for s in p.steps)
    assert all(s.reason == "downstream of the backfill of s.log: upstream re-ran (" + up + ")"
               for s, up in zip(p.steps[1:], ["s.log", "s.log", "s.daily", "s.tot"], strict=True))
    # the ledgers that decided the ranges are inputs of the plan, so the plan ID depends on them
    assert sorted(p.inputs.watermarks) == ["s.after", "s.daily", "s.monthly"]
    assert load_plan(plan_to_json(p), "p.json") == p


def test_downstream_plans_are_deterministic_and_follow_the_ledger() -> None:
    first = backfill("s.log", "2024-01-05", "2024-01-08", downstream=True)
    assert plan_to_json(first) == plan_to_json(backfill("s.log", "2024-01-05", "2024-01-08", downstream=True))
    less = {**LEDGER, "s.daily": [["2024-01-01", "2024-01-06"]]}
    other = backfill("s.log", "2024-01-05", "2024-01-08", downstream=True, ledger=less)
    assert ("s.daily", "backfill", "2024-01-05" + D, "2024-01-06" + D) in steps_of(other)
    assert other.plan_id != first.plan_id


def test_nothing_built_downstream_means_nothing_refreshed_below_it() -> None:
    p = backfill("s.log", "2024-01-05", "2024-01-08", downstream=True, ledger={})
    assert steps_of(p) == [("s.log", "backfill", "2024-01-05" + D, "2024-01-08" + D)]


def test_long_downstream_refreshes_are_chunked_in_order() -> None:
    p = backfill("s.log", "2024-01-01", "2024-01-20", downstream=True, max_batches=7)
    daily_steps = [s for s in p.steps if s.model == "s.daily"]
    assert [(s.start, s.end) for s in daily_steps] == [
        ("2024-01-01" + D, "2024-01-08" + D), ("2024-01-08" + D, "2024-01-15" + D),
        ("2024-01-15" + D, "2024-01-20" + D)]
    last_log = [s for s in p.steps if s.model == "s.log"][-1].step_id
    assert daily_steps[0].depends_on == (last_log,)  # after the whole backfill of its upstream
    assert daily_steps[1].depends_on == tuple(sorted([last_log, daily_steps[0].step_id]))


def test_a_merge_model_downstream_merges_without_starting_from_empty() -> None:
    files = {**PROJECT, "models/keyed.sql": model("s.keyed", "SELECT d FROM {{ ref('s.log') }}", "MERGE_BY_KEY",
                                                  unique_key="d")}
    p = backfill("s.log", "2024-01-05", "2024-01-06", downstream=True, files=files)
    keyed = [s for s in p.steps if s.model == "s.keyed"]
    assert [(s.run_type, s.reset) for s in keyed] == [("merge", False)]


def test_only_incremental_models_are_backfilled() -> None:
    with pytest.raises(ModelError) as caught:
        backfill("s.tot", "2024-01-05", "2024-01-08", downstream=True)
    assert "backfill takes an incremental model; s.tot is FULL_REFRESH" in str(caught.value)
