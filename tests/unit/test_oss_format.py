"""Models in the open-source IronLayer format load, check and plan unchanged (tests/fixtures/oss_format).

Their incremental models have no `start`. Where such a model's data starts, first that applies: the
project's `[defaults] start` (as if its header said it, hashed with it), the first complete batch of its
ledger (the history its table has), or `DEFAULT_HISTORY` (30 days) before the batch that holds `as_of`.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from shared_core.adapters.git_writer import read_tree
from shared_core.cli.main import main
from shared_core.core.errors import ModelError
from shared_core.core.planning.plan import Plan
from shared_core.core.planning.planner import DEFAULT_HISTORY, ZERO_SHA, build_backfill_plan, build_plan
from shared_core.core.planning.schedules import due_models
from shared_core.core.planning.watermarks import parse_watermarks
from shared_core.core.project.check import check_sources
from shared_core.core.project.config import PlannerSettings, parse_project_config
from shared_core.core.project.headers import parse_instant
from shared_core.core.project.models import ModelSource, Project, load_project
from shared_core.ports import InlineAnalyzer
from shared_core.services.apply import consulted_models

FIXTURE = Path(__file__).parents[1] / "fixtures" / "oss_format"
BASE, TARGET = read_tree(FIXTURE / "base"), read_tree(FIXTURE / "target")
AS_OF = "2024-03-15T06:00:00Z"
D = "T00:00:00Z"
INCREMENTAL = ("marts.rides_daily", "staging.stg_rides")


def project(tree: dict[str, str], toml: str | None = None) -> Project:
    config = parse_project_config("ironlayer.toml", toml)
    return load_project([ModelSource(p, t) for p, t in tree.items() if p.endswith(".sql")],
                        default_start=config.default_start)


def plan(base: dict[str, str] | None, target: dict[str, str], *, ledger: dict[str, Any] | None = None,
         toml: str | None = None, as_of: str = AS_OF) -> Plan:
    return build_plan(
        project(base or {}, toml), project(target, toml), base_sha=ZERO_SHA if base is None else "b" * 40,
        target_sha="t" * 40, as_of=parse_instant(as_of), ledger=parse_watermarks(json.dumps(ledger or {}), "w"),
        settings=PlannerSettings(), analyzer=InlineAnalyzer(),
    )


def steps(p: Plan) -> list[tuple[Any, ...]]:
    return [(s.model, s.run_type, s.start, s.end, s.reset) for s in p.steps]


def watermarks(p: Plan) -> dict[str, list[list[str]]]:
    return {name: [list(r) for r in ranges] for name, ranges in p.inputs.watermarks.items()}


def test_the_fixture_has_the_open_source_header_shapes() -> None:
    target = project(TARGET)
    for name in INCREMENTAL:
        header = target[name].header
        assert header.start is None and header.is_incremental
        assert "dependencies" in dict(header.raw) and "start" not in dict(header.raw)
    assert target["staging.stg_rides"].header.materialization == "INSERT_OVERWRITE"
    assert target["staging.stg_stations"].header.unique_key == ("station_id",)


@pytest.mark.parametrize("tree", [BASE, TARGET], ids=["base", "target"])
def test_it_checks_clean(tree: dict[str, str]) -> None:
    found, problems = check_sources([ModelSource(p, t) for p, t in tree.items()], InlineAnalyzer())
    assert problems == [] and found is not None and len(found) == len(tree)


def test_the_first_plan_backfills_30_days_before_as_of() -> None:
    p = plan(None, BASE)
    first = (parse_instant("2024-03-15") - DEFAULT_HISTORY).strftime("%Y-%m-%d") + D
    assert timedelta(days=30) == DEFAULT_HISTORY and first == "2024-02-14" + D
    assert [s for s in steps(p) if s[0] in INCREMENTAL] == [
        ("staging.stg_rides", "backfill", first, "2024-03-15" + D, True),
        ("marts.rides_daily", "backfill", first, "2024-03-15" + D, True),
    ]
    assert watermarks(p) == {}


def test_the_second_commit_plans_like_the_open_source_demo() -> None:
    p = plan(BASE, TARGET)
    assert [(m.name, m.change) for m in p.models] == [
        ("marts.fleet_summary", "modified"), ("marts.rider_stats", "added"), ("marts.rides_daily", "modified")]
    assert steps(p) == [
        ("marts.rider_stats", "full_refresh", None, None, False),
        ("marts.rides_daily", "backfill", "2024-02-14" + D, "2024-03-15" + D, True),
        ("marts.fleet_summary", "full_refresh", None, None, False),
    ]


def test_with_history_the_ledger_says_where_the_data_starts() -> None:
    ledger = {"marts.rides_daily": [["2024-01-03", "2024-03-14"]], "staging.stg_rides": [["2024-01-01", "2024-03-15"]]}
    p = plan(BASE, TARGET, ledger=ledger)
    assert ("marts.rides_daily", "backfill", "2024-01-03" + D, "2024-03-15" + D, True) in steps(p)
    assert watermarks(p) == {"marts.rides_daily": [["2024-01-03" + D, "2024-03-14" + D]]}
    assert consulted_models(p) == []  # a backfill from empty replaces the ledger it read: nothing to go stale
    changed_upstream = {**BASE, "models/raw/rides.sql": BASE["models/raw/rides.sql"].replace("3.50", "3.75")}
    p = plan(BASE, changed_upstream, ledger=ledger)  # stg_rides re-runs all its history over the existing table
    assert ("staging.stg_rides", "backfill", "2024-01-01" + D, "2024-03-15" + D, False) in steps(p)
    assert "staging.stg_rides" in consulted_models(p)  # that history must not move before the plan runs


def test_a_project_default_start_is_the_start_as_if_written_and_is_hashed() -> None:
    toml = '[defaults]\nstart = "2024-01-01"\n'
    p = plan(None, BASE, toml=toml)
    assert ("staging.stg_rides", "backfill", "2024-01-01" + D, "2024-03-15" + D, True) in steps(p)
    written = {path: text.replace("-- owner:", "-- start: 2024-01-01\n-- owner:", 1)
               if any(path.endswith(f"{name.split('.')[1]}.sql") for name in INCREMENTAL) else text
               for path, text in BASE.items()}
    assert plan(None, written) == p, "the default is exactly the header line"
    moved = build_plan(project(BASE, toml), project(BASE, '[defaults]\nstart = "2024-02-01"\n'), base_sha="b" * 40,
                       target_sha="t" * 40, as_of=parse_instant(AS_OF), ledger={}, settings=PlannerSettings(),
                       analyzer=InlineAnalyzer())
    assert {m.name: m.reason for m in moved.models} == {
        name: "start: 2024-01-01T00:00:00Z -> 2024-02-01T00:00:00Z" for name in INCREMENTAL}


def test_a_default_start_off_the_batch_boundary_names_the_model() -> None:
    hourly = {"models/h.sql": "-- name: s.h\n-- kind: APPEND_ONLY\n-- batch: month\nSELECT 1 AS x\n"}
    with pytest.raises(ModelError) as caught:
        project(hourly, '[defaults]\nstart = "2024-01-15"\n')
    assert str(caught.value) == ("models/h.sql:2: the project's default start 2024-01-15T00:00:00Z ([defaults] start) "
                                 "is not on a month boundary; give s.h its own '-- start:' or align the default")


def test_writing_a_start_later_is_a_data_change_from_the_new_start() -> None:
    with_start = {**BASE, "models/marts/rides_daily.sql": BASE["models/marts/rides_daily.sql"].replace(
        "-- owner:", "-- start: 2023-12-01\n-- owner:")}
    p = plan(BASE, with_start, ledger={"marts.rides_daily": [["2024-02-14", "2024-03-15"]]})
    assert [(m.name, m.change, m.reason) for m in p.models] == [
        ("marts.rides_daily", "modified", "start: (none) -> 2023-12-01T00:00:00Z")]
    assert steps(p)[0] == ("marts.rides_daily", "backfill", "2023-12-01" + D, "2024-03-15" + D, True)


def test_schedules_and_backfills_of_a_model_without_start() -> None:
    scheduled = {**BASE, "models/marts/rides_daily.sql": BASE["models/marts/rides_daily.sql"].replace(
        "-- owner:", "-- cron: 0 6 * * *\n-- owner:")}
    ledger = parse_watermarks('{"marts.rides_daily": [["2024-03-01", "2024-03-13"]]}', "w")
    due = due_models(project(scheduled), ledger, parse_instant("2024-03-15T07:00:00Z"))
    assert [(d.name, d.missing) for d in due] == [
        ("marts.rides_daily", ((parse_instant("2024-03-13"), parse_instant("2024-03-15")),))]
    target = project(BASE)
    backfill = build_backfill_plan(target, "marts.rides_daily", parse_instant("2023-06-01"),
                                   parse_instant("2023-06-03"), target_sha="t" * 40, settings=PlannerSettings(),
                                   analyzer=InlineAnalyzer())
    assert steps(backfill) == [("marts.rides_daily", "backfill", "2023-06-01" + D, "2023-06-03" + D, False)]


def test_the_command_line_loads_checks_and_plans_the_fixture(
    make_repo: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo, (base, target) = make_repo([BASE, TARGET])
    assert main(["check", str(repo), "--no-cache"]) == 0
    assert main(["check", str(repo), "--ref", base, "--no-cache"]) == 0
    assert main(["models", str(repo), "--json"]) == 0
    capsys.readouterr()
    ledger = tmp_path / "ledger.json"
    ledger.write_text("{}", "utf-8")
    out = tmp_path / "plan.json"
    assert main(["plan", str(repo), base, target, "--watermarks", str(ledger), "--out", str(out), "--no-cache"]) == 0
    written = json.loads(out.read_text("utf-8"))
    assert [s["model"] for s in written["steps"]] == ["marts.rider_stats", "marts.rides_daily", "marts.fleet_summary"]
    assert written["as_of"] == "2024-03-15T06:00:00Z"  # the target commit's time (conftest: TARGET_TIME)
