"""A plan's base and its review data, from the golden scenarios: what a plan is built against, when it is stale,
and which tests and contracts a reviewer must see (all beside the plan: the golden plan bytes never change)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shared_core.core.errors import PlanError
from shared_core.core.planning.base import (
    PlanBase,
    decode_base,
    deployed_base,
    drift_message,
    find_drift,
    plan_models,
    render_tests,
    stated_base,
)
from shared_core.core.planning.plan import Plan
from shared_core.core.planning.plan_codec import load_plan
from shared_core.core.planning.review import check_changes, deployed_tests
from shared_core.core.project.models import ModelSource, Project, load_project
from shared_core.core.state import DeployedVersion

GOLDEN = Path(__file__).parent.parent / "fixtures" / "golden"


def golden(name: str) -> tuple[Plan, Project, Project]:
    def project(root: Path) -> Project:
        return load_project([ModelSource(str(p.relative_to(root)), p.read_text()) for p in sorted(root.rglob("*.sql"))])

    plan = load_plan((GOLDEN / name / "plan.json").read_text(), name)
    return plan, project(GOLDEN / name / "base"), project(GOLDEN / name / "target")


def deployed(content_hash: str, tests: str | None = "", plan_id: str | None = "q" * 64) -> DeployedVersion:
    return DeployedVersion(content_hash=content_hash, tests=tests, plan_id=plan_id)


def test_a_tests_only_change_is_found_and_deployed_without_a_step() -> None:
    plan, base, target = golden("metadata_change")
    assert plan.steps == ()  # the plan runs nothing, yet it changes what runs: it needs approval
    changes = check_changes(plan, base, target)
    assert changes == {"stage.orders": {"tests": ["not_null(order_id)@BLOCK,unique(order_id)@BLOCK",
                                                  "not_null(order_id)@BLOCK,not_null(status)@BLOCK,"
                                                  "unique(order_id)@WARN"]}}
    new_hash = next(m.new_hash for m in plan.models if m.name == "stage.orders")
    assert new_hash is not None
    assert deployed_tests(plan, changes) == {"stage.orders": (new_hash, changes["stage.orders"]["tests"][1])}


@pytest.mark.parametrize("scenario", sorted(p.name for p in GOLDEN.iterdir() if (p / "plan.json").is_file()))
def test_every_golden_scenario_has_its_review_and_base_beside_the_plan(scenario: str) -> None:
    plan, base, target = golden(scenario)
    before = (GOLDEN / scenario / "plan.json").read_bytes()
    changes = check_changes(plan, base, target)
    for name, parts in changes.items():
        entry = next(m for m in plan.models if m.name == name)
        assert entry.change in ("added", "modified", "metadata")
        for old, new in parts.values():
            assert old != new
    added = [m.name for m in plan.changes("added")]
    for name in added:  # an added model with tests or a contract shows them as new
        assert (name in changes) == bool(render_tests(target[name].header) or target[name].header.contract_columns)
    recorded = deployed_base(plan, {}, deployed_tests(plan, changes))
    assert sorted(recorded.base) == plan_models(plan) and set(recorded.base.values()) <= {None}
    assert decode_base(plan.plan_id, recorded.document(), recorded.base_hash) == recorded
    assert (GOLDEN / scenario / "plan.json").read_bytes() == before


def test_a_contract_change_is_shown_with_its_mode_and_columns() -> None:
    plan, base, target = golden("header_data_change")
    assert check_changes(plan, base, target) == {
        "mart.customer_ltv": {"contract": ["", "STRICT customer_id:INT:NOT_NULL,lifetime_value:DECIMAL"]}}


def test_a_recorded_base_is_bound_to_its_plan_and_its_content() -> None:
    base = PlanBase("a" * 64, {"m.x": ("h1", "t"), "m.y": None}, {"m.z": ("h3", "u")})
    document, digest = base.document(), base.base_hash
    assert decode_base("a" * 64, document, digest) == base
    with pytest.raises(PlanError, match="does not match its hash or plan ID"):
        decode_base("b" * 64, document, digest)  # moved to another plan
    with pytest.raises(PlanError, match="does not match"):
        decode_base("a" * 64, document.replace('"h1"', '"h2"'), digest)  # edited
    with pytest.raises(PlanError, match="malformed"):
        decode_base("a" * 64, "[]", digest)


@pytest.mark.parametrize(
    ("expected", "now", "stale"),
    [
        (("h1", "t"), deployed("h1", "t"), False),
        (("h1", "t"), deployed("h2", "t"), True),  # a newer plan, or a backfill, deployed another version
        (("h1", "t"), deployed("h1", "u"), True),  # a newer plan changed its tests
        (("h1", None), deployed("h1", "u"), False),  # tests not known when planned: only the hash counts
        (("h1", "t"), deployed("h1", None), False),  # tests not recorded (before they were): only the hash
        (None, deployed("h1"), True),  # nothing was deployed when planned; something is now
        (("h1", "t"), deployed("h9", "x", plan_id="p" * 64), False),  # deployed by this very plan: its progress
        (("h1", "t"), None, False),  # nothing recorded: nothing to drift from
    ],
)
def test_drift(expected: Any, now: DeployedVersion | None, stale: bool) -> None:
    base = PlanBase("p" * 64, {"m.x": expected})
    drift = find_drift(base, {"m.x": now} if now else {})
    assert (drift is not None) is stale
    if drift is not None:
        message = drift_message(base.plan_id, drift)
        assert message.startswith("stale plan pppppppppppp: m.x was deployed again by plan qqqqqqqqqqqq")
        assert message.endswith("re-plan and approve the new plan")


def test_a_plan_file_made_without_a_store_states_its_base_through_its_diff() -> None:
    plan, _, _ = golden("logic_change")
    base = stated_base(plan).base
    for entry in plan.models:
        assert base[entry.name] == ((entry.old_hash, None) if entry.old_hash else None)
    for step in plan.steps:
        if step.model not in {m.name for m in plan.models}:
            assert base[step.model] == (step.model_hash, None)  # re-run only: at the version it runs
