"""Planner semantics on in-memory projects: what runs, which ranges, in which order, and plan integrity."""

from __future__ import annotations

import json
from itertools import pairwise

import pytest

from shared_core.core.errors import CycleError, ModelError, PlanError, RefError
from shared_core.core.planning.plan import Plan, RunType
from shared_core.core.planning.plan_codec import load_plan, plan_to_json
from shared_core.core.planning.planner import ZERO_SHA, build_plan
from shared_core.core.planning.watermarks import parse_watermarks
from shared_core.core.project.config import PlannerSettings
from shared_core.core.project.headers import parse_instant
from shared_core.core.project.models import ModelSource, Project, load_project, sha256_json
from shared_core.ports import InlineAnalyzer

AS_OF = "2024-01-10T06:00:00Z"


def model(name: str, sql: str, kind: str = "FULL_REFRESH", **keys: str) -> str:
    header = [f"-- name: {name}", f"-- kind: {kind}"] + [f"-- {k}: {v}" for k, v in keys.items()]
    return "\n".join(header) + "\n" + sql + "\n"


def project(files: dict[str, str]) -> Project:
    return load_project([ModelSource(path, text) for path, text in files.items()])


def plan(
    base: dict[str, str] | None,
    target: dict[str, str],
    *,
    as_of: str = AS_OF,
    ledger: dict[str, list[list[str]]] | None = None,
    max_batches: int = 366,
) -> Plan:
    return build_plan(
        project(base or {}),
        project(target),
        base_sha=ZERO_SHA if base is None else "b" * 40,
        target_sha="t" * 40,
        as_of=parse_instant(as_of),
        ledger=parse_watermarks(json.dumps(ledger or {}), "w.json"),
        settings=PlannerSettings(max_batches),
        analyzer=InlineAnalyzer(),
    )


def steps_of(p: Plan) -> list[tuple[str, RunType, str | None, str | None]]:
    return [(s.model, s.run_type, s.start, s.end) for s in p.steps]


CHAIN = {
    "models/a.sql": model("s.a", "SELECT 1 AS x"),
    "models/b.sql": model("s.b", "SELECT x FROM {{ ref('s.a') }}"),
    "models/c.sql": model("s.c", "SELECT x FROM {{ ref('b') }}"),
    "models/d.sql": model("s.d", "SELECT 2 AS y"),
}


def test_new_branch_plans_everything_in_dependency_order() -> None:
    p = plan(None, CHAIN)
    assert [s.model for s in p.steps] == ["s.a", "s.b", "s.c", "s.d"]
    assert [s.parallel_group for s in p.steps] == [0, 1, 2, 0]
    assert p.summary.added == 4 and p.base == ZERO_SHA


def test_logic_change_plans_the_model_and_its_downstream_only() -> None:
    target = {**CHAIN, "models/b.sql": model("s.b", "SELECT x + 1 AS x FROM {{ ref('s.a') }}")}
    p = plan(CHAIN, target)
    assert [(m.name, m.change) for m in p.models] == [("s.b", "modified")]
    assert [s.model for s in p.steps] == ["s.b", "s.c"]
    b, c = p.steps
    assert c.depends_on == (b.step_id,) and b.depends_on == ()
    assert p.models[0].old_hash != p.models[0].new_hash


def test_cosmetic_and_moved_and_metadata_changes_plan_nothing() -> None:
    target = {
        "models/a.sql": CHAIN["models/a.sql"].replace("SELECT 1 AS x", "select 1 as `x` -- one"),
        "models/deeper/b2.sql": CHAIN["models/b.sql"],
        "models/c.sql": CHAIN["models/c.sql"].replace("-- kind: FULL_REFRESH", "-- kind: FULL_REFRESH\n-- owner: me"),
        "models/d.sql": CHAIN["models/d.sql"],
    }
    p = plan(CHAIN, target)
    assert p.steps == ()
    changes = {m.name: m for m in p.models}
    assert changes["s.a"].change == "cosmetic" and changes["s.a"].old_hash == changes["s.a"].new_hash
    assert changes["s.c"].change == "metadata" and "owner" in changes["s.c"].reason
    assert "s.b" not in changes  # moved, same bytes: not a change at all


def test_the_case_of_an_alias_is_a_data_change() -> None:
    """`1 AS X` names the table's column `X`: downstream `SELECT *` and `to_json(struct(*))` see it."""
    target = {**CHAIN, "models/a.sql": CHAIN["models/a.sql"].replace("SELECT 1 AS x", "SELECT 1 AS X")}
    p = plan(CHAIN, target)
    assert [(m.name, m.change) for m in p.models] == [("s.a", "modified")]
    assert [s.model for s in p.steps] == ["s.a", "s.b", "s.c"]


def test_short_and_full_refs_hash_the_same() -> None:
    target = {**CHAIN, "models/c.sql": CHAIN["models/c.sql"].replace("ref('b')", "ref('s.b')")}
    p = plan(CHAIN, target)
    assert [m.change for m in p.models] == ["cosmetic"] and p.steps == ()


def test_header_data_field_change_is_a_modification_with_reason() -> None:
    target = {**CHAIN, "models/d.sql": model("s.d", "SELECT 2 AS y", materialization="VIEW")}
    p = plan(CHAIN, target)
    assert p.models[0].change == "modified"
    assert p.models[0].reason == "materialization: TABLE -> VIEW"


def test_removed_model_is_listed_without_steps() -> None:
    target = {k: v for k, v in CHAIN.items() if k != "models/d.sql"}
    p = plan(CHAIN, target)
    assert [(m.name, m.change, m.new_hash) for m in p.models] == [("s.d", "removed", None)]
    assert p.steps == ()


INC = {
    "models/src.sql": model("raw.src", "SELECT 1 AS d"),
    "models/inc.sql": model(
        "s.inc", "SELECT d FROM {{ ref('raw.src') }} WHERE d >= '{{ start_date }}'",
        "INCREMENTAL_BY_TIME_RANGE", time_column="d", start="2024-01-01", batch="day",
    ),
    "models/app.sql": model(
        "s.app", "SELECT d FROM {{ ref('raw.src') }}", "APPEND_ONLY", time_column="d", start="2024-01-03",
    ),
}


def test_modified_incremental_is_backfilled_from_start_ignoring_the_ledger() -> None:
    target = {**INC, "models/inc.sql": INC["models/inc.sql"].replace("SELECT d", "SELECT d, 1 AS one")}
    p = plan(INC, target, ledger={"s.inc": [["2024-01-01", "2024-01-10"]]})
    assert steps_of(p) == [("s.inc", "backfill", "2024-01-01T00:00:00Z", "2024-01-10T00:00:00Z")]
    assert p.steps[0].reset is True and p.steps[0].batches == 9
    assert p.inputs.watermarks == {}  # the ledger was not consulted


def test_upstream_full_refresh_change_reruns_all_history_of_time_range_models() -> None:
    target = {**INC, "models/src.sql": model("raw.src", "SELECT 2 AS d")}
    ledger = {"s.inc": [["2024-01-01", "2024-01-10"]], "s.app": [["2024-01-03", "2024-01-08"]]}
    p = plan(INC, target, ledger=ledger)
    assert steps_of(p) == [
        ("raw.src", "full_refresh", None, None),
        ("s.app", "incremental", "2024-01-08T00:00:00Z", "2024-01-10T00:00:00Z"),  # append-only: only what is missing
        ("s.inc", "backfill", "2024-01-01T00:00:00Z", "2024-01-10T00:00:00Z"),  # all history, over the old table
    ]
    assert not any(s.reset for s in p.steps)
    assert p.inputs.watermarks == {"s.app": (("2024-01-03T00:00:00Z", "2024-01-08T00:00:00Z"),)}


def test_changed_merge_model_is_rebuilt_from_empty_but_downstream_merges_upsert() -> None:
    files = {
        "models/a.sql": model("s.a", "SELECT 1 AS id"),
        "models/m.sql": model("s.m", "SELECT id FROM {{ ref('s.a') }}", "MERGE_BY_KEY", unique_key="id"),
    }
    own = plan(files, {**files, "models/m.sql": files["models/m.sql"].replace("SELECT id", "SELECT id + 0 AS id")})
    assert [(s.model, s.run_type, s.reset) for s in own.steps] == [("s.m", "merge", True)]
    upstream = plan(files, {**files, "models/a.sql": model("s.a", "SELECT 2 AS id")})
    assert [(s.model, s.run_type, s.reset) for s in upstream.steps] == [
        ("s.a", "full_refresh", False), ("s.m", "merge", False)]


def test_an_upstream_rebuilt_from_empty_reruns_all_downstream_history() -> None:
    files = {
        "models/up.sql": model("s.up", "SELECT 1 AS d", "INCREMENTAL_BY_TIME_RANGE", time_column="d",
                               start="2024-01-01", batch="day"),
        "models/down.sql": model("s.down", "SELECT d FROM {{ ref('s.up') }}", "INCREMENTAL_BY_TIME_RANGE",
                                 time_column="d", start="2024-01-01", batch="day"),
    }
    later = {**files, "models/up.sql": files["models/up.sql"].replace("start: 2024-01-01", "start: 2024-01-05")}
    p = plan(files, later, ledger={"s.down": [["2024-01-01", "2024-01-10"]]})
    assert steps_of(p) == [
        ("s.up", "backfill", "2024-01-05T00:00:00Z", "2024-01-10T00:00:00Z"),
        ("s.down", "backfill", "2024-01-01T00:00:00Z", "2024-01-10T00:00:00Z"),
    ]
    assert [s.reset for s in p.steps] == [True, False]


def test_downstream_of_partial_reruns_gets_those_ranges_plus_gaps_and_lookback() -> None:
    files = {
        "models/src.sql": model("raw.src", "SELECT 1 AS d"),
        "models/app.sql": model("s.app", "SELECT d FROM {{ ref('raw.src') }}", "APPEND_ONLY", time_column="d",
                                start="2024-01-01"),
        "models/down.sql": model("s.down", "SELECT d FROM {{ ref('s.app') }}", "INCREMENTAL_BY_TIME_RANGE",
                                 time_column="d", start="2024-01-01", batch="day", lookback="1"),
    }
    target = {**files, "models/src.sql": model("raw.src", "SELECT 2 AS d")}
    ledger = {
        "s.app": [["2024-01-01", "2024-01-06"]],
        "s.down": [["2024-01-01", "2024-01-02"], ["2024-01-03", "2024-01-08T12:00:00Z"]],  # half a batch is not done
    }
    p = plan(files, target, ledger=ledger)
    assert steps_of(p) == [
        ("raw.src", "full_refresh", None, None),
        ("s.app", "incremental", "2024-01-06T00:00:00Z", "2024-01-10T00:00:00Z"),  # its missing tail only
        ("s.down", "incremental", "2024-01-02T00:00:00Z", "2024-01-03T00:00:00Z"),  # a gap
        ("s.down", "incremental", "2024-01-06T00:00:00Z", "2024-01-10T00:00:00Z"),  # s.app's tail, lookback, tail
    ]
    src, app, gap, tail = p.steps
    assert gap.depends_on == (app.step_id,)
    assert list(tail.depends_on) == sorted([app.step_id, gap.step_id])
    assert [s.parallel_group for s in p.steps] == [0, 1, 2, 3]
    assert src.depends_on == ()
    assert sorted(p.inputs.watermarks) == ["s.app", "s.down"]


def test_only_complete_batches_before_as_of_are_planned() -> None:
    p = plan(None, INC, as_of="2024-01-05T23:59:59Z")
    assert ("s.inc", "backfill", "2024-01-01T00:00:00Z", "2024-01-05T00:00:00Z") in steps_of(p)
    p = plan(None, INC, as_of="2023-06-01")
    assert [s.model for s in p.steps] == ["raw.src"]


def test_long_hourly_history_is_chunked_not_exploded() -> None:
    files = {"models/h.sql": model("s.h", "SELECT 1 AS t", "INCREMENTAL_BY_TIME_RANGE", time_column="t",
                                   start="2020-01-01", batch="hour")}
    p = plan(None, files, as_of="2025-01-01", max_batches=720)
    assert len(p.steps) == 61
    assert sum(s.batches for s in p.steps) == 43848
    assert [s.reset for s in p.steps].count(True) == 1
    for before, after in pairwise(p.steps):
        assert after.depends_on == (before.step_id,) and after.start == before.end


def test_plan_id_and_step_ids_are_content_derived_and_checked_on_load() -> None:
    p = plan(None, CHAIN)
    text = plan_to_json(p)
    assert load_plan(text, "p.json") == p
    assert plan(None, CHAIN) == p
    tampered = json.loads(text)
    tampered["steps"][0]["run_type"] = "merge"
    tampered["plan_id"] = sha256_json({k: v for k, v in tampered.items() if k != "plan_id"})
    with pytest.raises(PlanError, match=r"step for s\.a has a step_id that does not match"):
        load_plan(json.dumps(tampered), "p.json")
    tampered = json.loads(text)
    tampered["as_of"] = "2030-01-01T00:00:00Z"
    with pytest.raises(PlanError, match="plan_id does not match"):
        load_plan(json.dumps(tampered), "p.json")
    with pytest.raises(PlanError, match="not a plan file"):
        load_plan("{", "p.json")


def test_as_of_and_settings_enter_the_plan_id() -> None:
    a = plan(None, INC)
    assert plan(None, INC, as_of="2024-01-11").plan_id != a.plan_id
    assert plan(None, INC, max_batches=2).plan_id != a.plan_id


@pytest.mark.parametrize(
    ("files", "error", "message"),
    [
        ({"a.sql": model("s.a", "SELECT * FROM {{ ref('s.orders_dly') }}"), "b.sql": model("s.orders_daily", "SELECT 1")},
         RefError, "a.sql:3: ref 's.orders_dly' matches no model; did you mean 's.orders_daily'?"),
        ({"a.sql": model("s.a", "SELECT * FROM {{ ref('x') }}"), "b.sql": model("p.x", "SELECT 1"),
          "c.sql": model("q.x", "SELECT 1")}, RefError, "a.sql:3: ref 'x' is ambiguous: it matches p.x, q.x"),
        ({"a.sql": model("s.a", "SELECT 1"), "b.sql": model("s.a", "SELECT 2")},
         ModelError, "b.sql: duplicate model name 's.a' (also defined in a.sql)"),
        ({"a.sql": model("s.a", "SELECT * FROM {{ ref('s.c') }}"), "b.sql": model("s.b", "SELECT * FROM {{ ref('s.a') }}"),
          "c.sql": model("s.c", "SELECT * FROM {{ ref('s.b') }}")}, CycleError, "dependency cycle s.a -> s.b -> s.c -> s.a"),
        ({"a.sql": model("s.a", "SELECT * FROM {{ ref('s.a') }}")}, CycleError, "dependency cycle s.a -> s.a"),
        ({"a.sql": model("s.a", "SELECT 1", dependencies="s.zz")}, RefError, "dependencies 's.zz' matches no model"),
    ],
)
def test_project_errors(files: dict[str, str], error: type[Exception], message: str) -> None:
    with pytest.raises(error) as caught:
        project(files)
    assert message in str(caught.value)


def test_unsafe_sql_in_a_planned_model_fails_the_plan() -> None:
    target = {**CHAIN, "models/b.sql": model("s.b", "SELECT 1; DROP TABLE s.a")}
    with pytest.raises(ModelError, match=r"models/b\.sql:3: DROP statement is not allowed"):
        plan(CHAIN, target)


# -- the batch limit and dates at the edges of the calendar ---------------------------------------------

DAILY_FROM_2024 = {"models/d.sql": model("s.daily", "SELECT 1 AS d", "INCREMENTAL_BY_TIME_RANGE", time_column="d",
                                         start="2024-01-01")}


def test_the_batch_limit_refuses_naming_the_number_and_the_setting_and_never_enters_the_plan() -> None:
    from shared_core.core.errors import PlanLimitError

    allowed = build_plan(project({}), project(DAILY_FROM_2024), base_sha=ZERO_SHA, target_sha="t" * 40,
                         as_of=parse_instant("2024-04-10"), ledger={}, settings=PlannerSettings(366, 100),
                         analyzer=InlineAnalyzer())
    default = plan(None, DAILY_FROM_2024, as_of="2024-04-10")
    assert allowed.summary.batches == 100
    assert plan_to_json(allowed) == plan_to_json(default)  # a limit, not a plan field: same bytes, same ID
    assert json.loads(plan_to_json(allowed))["inputs"]["planner"] == {"max_batches_per_step": 366}
    with pytest.raises(PlanLimitError) as caught:
        build_plan(project({}), project(DAILY_FROM_2024), base_sha=ZERO_SHA, target_sha="t" * 40,
                   as_of=parse_instant("2024-04-11"), ledger={}, settings=PlannerSettings(366, 100),
                   analyzer=InlineAnalyzer())
    assert str(caught.value) == (
        "as_of 2024-04-11T00:00:00Z would plan more than 100 batches (s.daily alone: 101 day batches from "
        "2024-01-01T00:00:00Z), the limit planner.max_batches_per_plan = 100; give an earlier as_of or a narrower "
        "range, or raise max_batches_per_plan under [planner] in ironlayer.toml")
    with pytest.raises(PlanLimitError, match="more than 100,000 batches"):  # the default: a year-9999 typo
        plan(None, DAILY_FROM_2024, as_of="9999-12-31")


def test_dates_at_the_ends_of_the_calendar_plan_or_are_refused_without_overflowing() -> None:
    from shared_core.core.errors import DateRangeError
    from shared_core.core.planning.planner import build_backfill_plan, build_catchup_plan

    monthly = {"models/m.sql": model("s.monthly", "SELECT 1 AS d", "INCREMENTAL_BY_TIME_RANGE", time_column="d",
                                     start="9990-01-01", batch="month", lookback="99999999")}
    last = plan(None, monthly, as_of="9999-12-31T23:59:59Z")  # chunks stop at the window's end, never past it
    assert [(s.start, s.end, s.batches) for s in last.steps] == [
        ("9990-01-01T00:00:00Z", "9999-12-01T00:00:00Z", 119)]
    early = {"models/e.sql": model("s.early", "SELECT 1 AS d", "INCREMENTAL_BY_TIME_RANGE", time_column="d",
                                   start="0001-01-01", lookback="1000000")}
    caught_up = build_catchup_plan(  # a lookback reaching back past year 1 stops at the model's start
        project(early), ["s.early"], target_sha="t" * 40, as_of=parse_instant("0001-01-10"),
        ledger=parse_watermarks('{"s.early": [["0001-01-01", "0001-01-05"]]}', "w.json"), settings=PlannerSettings(),
        analyzer=InlineAnalyzer())
    assert [(s.start, s.end) for s in caught_up.steps] == [("0001-01-01T00:00:00Z", "0001-01-10T00:00:00Z")]
    startless = {"models/s.sql": model("s.startless", "SELECT 1 AS d", "INCREMENTAL_BY_TIME_RANGE", time_column="d")}
    first_days = plan(None, startless, as_of="0001-01-10")  # its default history would begin before year 1
    assert [(s.start, s.end) for s in first_days.steps] == [("0001-01-01T00:00:00Z", "0001-01-10T00:00:00Z")]
    with pytest.raises(DateRangeError, match="falls outside the dates 0001-01-01 to 9999-12-31"):
        build_backfill_plan(project(monthly), "s.monthly", parse_instant("9999-11-01"),
                            parse_instant("9999-12-31T12:00:00Z"), target_sha="t" * 40, settings=PlannerSettings(),
                            analyzer=InlineAnalyzer())
