"""Golden plans: real `ironlayer plan` runs over fixed git histories, compared byte for byte.

Each folder in `tests/fixtures/golden/<scenario>/` holds:

- `base/` and `target/`: the whole repository tree at the base and the target commit (without
  `base/`, the base is the all-zero SHA: a new branch, nothing deployed yet);
- `watermarks.json` (optional): the ledger passed as `--watermarks`;
- `as_of.txt` (optional): passed as `--as-of` (otherwise as_of is the target commit time);
- `README.md`: what the scenario exercises and the plan it must produce;
- `plan.json`: the expected plan file, byte for byte.

The test commits the trees with `shared_core.adapters.git_writer` at fixed times (base
2024-03-01T00:00Z, target 2024-03-15T06:00Z), so commit SHAs, and with them plan IDs, are the same on
every machine; then it runs the real CLI entry `shared_core.cli.main.main(["plan", ..., "--out", FILE,
"--no-cache"])` and compares the file's bytes with `plan.json`.

To regenerate the expected files after an intended change, run

    IRONLAYER_UPDATE_GOLDEN=1 .venv/bin/pytest tests/golden

then review every changed `plan.json` by hand (models, change kinds, ranges, order, waves) before
committing it: a golden file that encodes a bug is worse than none.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared_core.adapters.git_writer import read_tree
from shared_core.core.planning.plan import CHANGE_KINDS, Plan, RunType
from shared_core.core.planning.plan_codec import load_plan, plan_to_json

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "golden"
SCENARIOS = sorted(p.name for p in GOLDEN.iterdir() if p.is_dir())
UPDATE = os.environ.get("IRONLAYER_UPDATE_GOLDEN") == "1"
ZERO_SHA = "0" * 40


def _build_plan(
    scenario: str,
    make_repo: Callable[..., tuple[Path, list[str]]],
    run_plan: Callable[..., bytes],
    edit: Callable[[dict[str, str]], dict[str, str]] = dict,
) -> bytes:
    folder = GOLDEN / scenario
    trees = [edit(read_tree(folder / side)) for side in ("base", "target") if (folder / side).is_dir()]
    assert (folder / "target").is_dir(), f"{folder}: a scenario needs a target/ tree"
    repo, shas = make_repo(trees)
    base, target = (shas[0], shas[1]) if len(shas) == 2 else (ZERO_SHA, shas[0])
    extra: list[str] = []
    if (folder / "watermarks.json").exists():
        extra += ["--watermarks", str(folder / "watermarks.json")]
    if (folder / "as_of.txt").exists():
        extra += ["--as-of", (folder / "as_of.txt").read_text("utf-8").strip()]
    return run_plan(repo, base, target, *extra)


def _declare_sources(tree: dict[str, str]) -> dict[str, str]:
    """`tree` with a `-- sources:` header line in every model that reads tables it does not declare."""
    from shared_core.core.sql.canonical import analyze_query

    declared = {}
    for path, text in tree.items():
        undeclared = analyze_query(text, path).undeclared if path.endswith(".sql") else ()
        if undeclared:
            first, _, rest = text.partition("\n")
            text = f"{first}\n-- sources: {', '.join(sorted(name for name, _ in undeclared))}\n{rest}"
        declared[path] = text
    return declared


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_declaring_the_sources_changes_no_plan_byte(
    scenario: str, make_repo: Callable[..., tuple[Path, list[str]]], run_plan: Callable[..., bytes]
) -> None:
    """The golden repositories read `landing.*` without declaring it (they predate `sources:`). Declared on both
    sides, the plan is the same plan: only the commits (and so `base`, `target`, `inputs_hash` and `plan_id`)
    differ; every step ID and model hash is equal, since sources are metadata and never hashed. And the push
    check, which refuses the undeclared reads, then passes."""
    from shared_core.core.project.check import check_sources
    from shared_core.core.project.models import ModelSource
    from shared_core.core.sql.analysis import InlineAnalyzer

    declared = _declare_sources(read_tree(GOLDEN / scenario / "target"))
    assert declared != read_tree(GOLDEN / scenario / "target"), "every scenario reads an undeclared table"
    _, problems = check_sources([ModelSource(p, t) for p, t in declared.items() if p.endswith(".sql")],
                                InlineAnalyzer())
    assert problems == []
    plan = json.loads(_build_plan(scenario, make_repo, run_plan, _declare_sources))
    golden = _golden_json(scenario)
    commits = ("base", "target", "inputs_hash", "plan_id")
    assert {k: v for k, v in plan.items() if k not in commits} == {k: v for k, v in golden.items() if k not in commits}


def _golden_json(scenario: str) -> dict[str, Any]:
    return dict(json.loads((GOLDEN / scenario / "plan.json").read_text("utf-8")))


def _golden(scenario: str) -> Plan:
    return load_plan((GOLDEN / scenario / "plan.json").read_text("utf-8"), scenario)


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_there_are_enough_scenarios() -> None:
    assert len(SCENARIOS) >= 10
    for scenario in SCENARIOS:
        assert (GOLDEN / scenario / "plan.json").is_file(), f"{scenario}: run with IRONLAYER_UPDATE_GOLDEN=1"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_golden_plan_bytes(
    scenario: str, make_repo: Callable[..., tuple[Path, list[str]]], run_plan: Callable[..., bytes]
) -> None:
    actual = _build_plan(scenario, make_repo, run_plan)
    expected_file = GOLDEN / scenario / "plan.json"
    if UPDATE:
        expected_file.write_bytes(actual)
    assert actual == expected_file.read_bytes(), (
        f"the plan for '{scenario}' changed; if intended, regenerate with IRONLAYER_UPDATE_GOLDEN=1 and review it"
    )


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_golden_plan_is_consistent(scenario: str) -> None:
    """Invariants every plan must satisfy, checked on the checked-in files themselves."""
    text = (GOLDEN / scenario / "plan.json").read_text("utf-8")
    plan = load_plan(text, scenario)  # plan_id and every step_id match the content
    assert plan_to_json(plan) == text, "the typed plan writes the file's exact bytes"
    steps = plan.steps
    by_id = {s.step_id: s for s in steps}
    assert len(by_id) == len(steps), "step IDs are unique"
    position = {s.step_id: i for i, s in enumerate(steps)}
    for step in steps:
        deps = step.depends_on
        assert list(deps) == sorted(deps)
        assert all(position[d] < position[step.step_id] for d in deps), "steps are in dependency order"
        assert step.parallel_group == 1 + max((by_id[d].parallel_group for d in deps), default=-1)
        if step.start is not None:
            assert step.end is not None
            assert _when(step.start) < _when(step.end) <= _when(plan.as_of)
            assert step.batch in ("hour", "day", "month")
        else:
            assert step.batches == 0 and step.run_type in ("full_refresh", "merge")
    for model in {s.model for s in steps}:
        own = [s for s in steps if s.model == model]
        windows = [(s.start, s.end) for s in own if s.start is not None and s.end is not None]
        assert windows == sorted(windows), "a model's steps run in time order"
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(windows)), "a model's ranges never overlap"
        assert not any(s.reset for s in own[1:]), "only the first step of a backfill starts from empty"
        for earlier, later in itertools.pairwise(own):
            assert earlier.step_id in later.depends_on, "a model's steps run one after another"
    changes = {m.name: m for m in plan.models}
    assert [m.name for m in plan.models] == sorted(changes)
    for change in plan.models:
        if change.change in ("cosmetic", "metadata"):
            assert change.old_hash == change.new_hash is not None
            # such a model runs only because something upstream of it changed
            assert all(s.reason.startswith("upstream changed: ") for s in steps if s.model == change.name)
        elif change.change == "modified":
            assert change.old_hash != change.new_hash
    summary = plan.summary
    assert summary.steps == len(steps)
    assert summary.batches == sum(s.batches for s in steps)
    assert summary.models_to_run == len({s.model for s in steps})
    assert summary.waves == (1 + max(s.parallel_group for s in steps) if steps else 0)
    counts = summary.to_dict()
    for kind in CHANGE_KINDS:
        assert counts[kind] == sum(1 for m in plan.models if m.change == kind)
    planned = {s.model for s in steps}
    assert set(plan.inputs.watermarks) <= planned, "only consulted ledgers enter the plan"


def _steps(plan: Plan) -> list[tuple[str, RunType, str | None, str | None, int, bool, int]]:
    return [(s.model, s.run_type, s.start, s.end, s.batches, s.reset, s.parallel_group) for s in plan.steps]


def _changes(plan: Plan) -> dict[str, str]:
    return {m.name: m.change for m in plan.models}


D = "T00:00:00Z"


def test_new_branch_backfills_every_model() -> None:
    plan = _golden("new_branch")
    assert plan.base == ZERO_SHA and plan.as_of == "2024-03-15T06:00:00Z"
    assert set(_changes(plan).values()) == {"added"} and len(plan.models) == 7
    assert _steps(plan) == [
        ("raw.customers", "full_refresh", None, None, 0, False, 0),
        ("raw.orders", "full_refresh", None, None, 0, False, 0),
        ("stage.customers", "full_refresh", None, None, 0, False, 1),
        ("stage.orders", "backfill", "2024-01-01" + D, "2024-03-15" + D, 74, True, 1),
        ("mart.customer_ltv", "full_refresh", None, None, 0, False, 2),
        ("mart.daily_revenue", "backfill", "2024-01-01" + D, "2024-03-15" + D, 74, True, 2),
        ("mart.order_log", "backfill", "2024-01-01" + D, "2024-03-15" + D, 74, True, 2),
    ]


def test_logic_change_reruns_downstream() -> None:
    plan = _golden("logic_change")
    assert _changes(plan) == {"raw.customers": "modified", "raw.orders": "modified"}
    assert _steps(plan) == [
        ("raw.customers", "full_refresh", None, None, 0, False, 0),
        ("raw.orders", "full_refresh", None, None, 0, False, 0),
        ("stage.customers", "merge", None, None, 0, False, 1),
        ("stage.orders", "backfill", "2024-01-01" + D, "2024-03-15" + D, 74, False, 1),
        ("mart.customer_ltv", "full_refresh", None, None, 0, False, 2),
        ("mart.daily_revenue", "backfill", "2024-01-01" + D, "2024-03-15" + D, 74, False, 2),
        ("mart.order_log", "incremental", "2024-03-10" + D, "2024-03-11" + D, 1, False, 2),
        ("mart.order_log", "incremental", "2024-03-13" + D, "2024-03-15" + D, 2, False, 3),
    ]
    assert plan.inputs.watermarks == {  # only the APPEND_ONLY model's ledger decided anything
        "mart.order_log": (("2024-01-01" + D, "2024-03-10" + D), ("2024-03-11" + D, "2024-03-13" + D)),
    }


@pytest.mark.parametrize("scenario", ["cosmetic_change", "metadata_change"])
def test_no_data_change_runs_nothing(scenario: str) -> None:
    plan = _golden(scenario)
    kind = scenario.split("_")[0]
    assert plan.steps == () and plan.summary.waves == 0
    expected = {
        "cosmetic_change": {"mart.customer_ltv", "raw.customers", "raw.orders", "stage.customers", "stage.orders"},
        "metadata_change": {"mart.customer_ltv", "mart.daily_revenue", "raw.orders", "stage.orders"},
    }[scenario]
    assert _changes(plan) == dict.fromkeys(expected, kind)


def test_metadata_reasons_name_the_keys() -> None:
    reasons = {m.name: m.reason for m in _golden("metadata_change").models}
    assert reasons == {
        "mart.customer_ltv": "metadata only (jira, owner); no rebuild",
        "mart.daily_revenue": "metadata only (description, tags); no rebuild",
        "raw.orders": "metadata only (owner); no rebuild",
        "stage.orders": "metadata only (cron, lookback, tests); no rebuild",
    }


def test_moved_files_give_an_empty_plan() -> None:
    plan = _golden("moved_files")
    assert plan.models == () and plan.steps == ()


def test_removed_models_and_the_rewritten_reader() -> None:
    plan = _golden("removed_model")
    assert _changes(plan) == {
        "mart.customer_ltv": "modified",
        "mart.order_log": "removed",
        "raw.customers": "removed",
        "stage.customers": "removed",
    }
    assert _steps(plan) == [("mart.customer_ltv", "full_refresh", None, None, 0, False, 0)]
    assert plan.steps[0].depends_on == ()


def test_incremental_gaps_tail_lookback_and_upstream_ranges() -> None:
    plan = _golden("incremental_gaps")
    assert _changes(plan) == {"raw.session_events": "modified"}
    assert _steps(plan) == [
        ("raw.session_events", "full_refresh", None, None, 0, False, 0),
        ("stage.sessions", "incremental", "2024-03-05" + D, "2024-03-10" + D, 5, False, 1),
        ("mart.alerts", "incremental", "2024-02-08" + D, "2024-03-10" + D, 31, False, 2),
        ("mart.engagement", "incremental", "2024-01-20" + D, "2024-01-25" + D, 5, False, 2),
        ("mart.engagement", "incremental", "2024-02-10" + D, "2024-02-12" + D, 2, False, 3),
        ("mart.engagement", "incremental", "2024-03-02" + D, "2024-03-10" + D, 8, False, 4),
        ("mart.engagement_monthly", "incremental", "2024-01-01" + D, "2024-03-01" + D, 2, False, 5),
        ("mart.session_log", "incremental", "2024-03-01" + D, "2024-03-10" + D, 9, False, 2),
    ]
    assert plan.inputs.watermarks == {
        "mart.alerts": (("2024-01-01" + D, "2024-02-10" + D),),
        "mart.engagement": (
            ("2024-01-01" + D, "2024-01-20" + D),
            ("2024-01-25" + D, "2024-02-10" + D),
            ("2024-02-12" + D, "2024-03-05" + D),
        ),
        "mart.engagement_monthly": (("2023-11-01" + D, "2024-02-01" + D),),
        "mart.session_log": (("2024-01-15" + D, "2024-03-01" + D),),
        "stage.sessions": (("2024-02-15" + D, "2024-03-05" + D),),
    }


def test_new_incremental_model_backfills_from_its_start() -> None:
    plan = _golden("new_incremental_model")
    assert _changes(plan) == {"mart.hourly_orders": "added", "mart.peak_hours": "added"}
    assert _steps(plan) == [
        ("mart.hourly_orders", "backfill", "2024-03-14" + D, "2024-03-15T06:00:00Z", 30, True, 0),
        ("mart.peak_hours", "full_refresh", None, None, 0, False, 1),
    ]
    assert plan.inputs.watermarks == {}


def test_diamond_waves_and_dependencies() -> None:
    plan = _golden("diamond")
    assert _steps(plan) == [
        ("dia.source", "full_refresh", None, None, 0, False, 0),
        ("dia.left_branch", "full_refresh", None, None, 0, False, 1),
        ("dia.right_branch", "backfill", "2024-02-01" + D, "2024-03-15" + D, 43, False, 1),
        ("dia.joined", "backfill", "2024-01-01" + D, "2024-03-15" + D, 74, False, 2),
        ("dia.report", "full_refresh", None, None, 0, False, 3),
    ]
    ids = {s.model: s.step_id for s in plan.steps}
    deps = {s.model: list(s.depends_on) for s in plan.steps}
    assert deps["dia.joined"] == sorted([ids["dia.left_branch"], ids["dia.right_branch"]])
    assert deps["dia.report"] == sorted([ids["dia.joined"], ids["dia.source"]])


def test_long_chain_runs_the_changed_suffix_in_order() -> None:
    plan = _golden("long_chain")
    assert _changes(plan) == {"chain.m10": "modified"}
    assert [(s.model, s.parallel_group) for s in plan.steps] == [
        (f"chain.m{i:02d}", i - 10) for i in range(10, 30)
    ]
    for earlier, later in itertools.pairwise(plan.steps):
        assert later.depends_on == (earlier.step_id,)


def test_hourly_history_is_chunked_not_exploded() -> None:
    plan = _golden("hourly_long_history")
    assert plan.inputs.planner.max_batches_per_step == 8784
    hourly = [s for s in plan.steps if s.model == "stage.clicks_hourly"]
    assert [s.batches for s in hourly] == [8784, 8784, 8784, 8784, 8688]
    assert sum(s.batches for s in hourly) == int((_when("2024-01-01" + D) - _when("2019-01-01" + D)) / timedelta(hours=1))
    assert [s.reset for s in hourly] == [True, False, False, False, False]
    assert hourly[0].start == "2019-01-01" + D and hourly[-1].end == "2024-01-01" + D
    last = hourly[-1].step_id
    log = [s for s in plan.steps if s.model == "mart.click_log"]
    assert [(s.start, s.end, s.batches, s.run_type) for s in log] == [
        ("2022-06-01" + D, "2022-06-01T05:00:00Z", 5, "incremental"),
        ("2023-12-31T18:00:00Z", "2024-01-01" + D, 6, "incremental"),
    ]
    assert log[0].depends_on == (last,)
    assert list(log[1].depends_on) == sorted([last, log[0].step_id])
    daily = [s for s in plan.steps if s.model == "mart.daily_clicks"]
    assert [(s.start, s.end, s.batches, s.depends_on) for s in daily] == [
        ("2019-01-01" + D, "2024-01-01" + D, 1826, (last,))
    ]
    assert len(plan.steps) == 8


def test_header_data_change_names_fields() -> None:
    plan = _golden("header_data_change")
    reasons = {m.name: (m.change, m.reason) for m in plan.models}
    assert reasons == {
        "mart.customer_ltv": (
            "modified",
            "contract_columns: (none) -> customer_id:INT:NOT_NULL,lifetime_value:DECIMAL; "
            "contract_mode: DISABLED -> STRICT",
        ),
        "mart.daily_revenue": ("modified", "partition_by: (none) -> order_date"),
    }
    assert _steps(plan) == [
        ("mart.customer_ltv", "full_refresh", None, None, 0, False, 0),
        ("mart.daily_revenue", "backfill", "2024-01-01" + D, "2024-03-15" + D, 74, True, 0),
    ]


def test_the_review_mask_hides_ids_and_hashes_and_nothing_else() -> None:
    """`tests/golden/compare.py` (the review of regenerated golden plans) sees every change but IDs and hashes."""
    import hashlib
    import re

    from tests.golden.compare import differences, masked_plan

    text = (GOLDEN / "logic_change" / "plan.json").read_text("utf-8")
    plan = _golden_json("logic_change")
    rehashed = json.loads(re.sub(r"[0-9a-f]{64}", lambda m: hashlib.sha256(m.group().encode()).hexdigest(), text))
    rehashed["inputs"]["canonicalizer"] = "v9"
    assert rehashed["plan_id"] != plan["plan_id"] and differences(plan, rehashed) == []
    reclassified = json.loads(text)
    reclassified["models"][0]["change"] = "cosmetic"
    change = dict(masked_plan(plan)["models"][0])
    assert differences(plan, reclassified) == [f"models[0]: {change} -> {({**change, 'change': 'cosmetic'})}"]
    reordered = json.loads(text)
    reordered["steps"][0], reordered["steps"][1] = reordered["steps"][1], reordered["steps"][0]
    assert differences(plan, reordered)
    moved = json.loads(text)
    moved["steps"][-1]["end"] = "2024-03-12T00:00:00Z"
    found = differences(plan, moved)
    assert len(found) == 1 and found[0].startswith(f"steps[{len(plan['steps']) - 1}]: ")
