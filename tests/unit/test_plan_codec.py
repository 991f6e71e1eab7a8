"""The plan codec: typed plans write the golden bytes exactly, and malformed documents are refused in one line.

Every refusal is a `PlanError` whose message names the source and the field; no other exception escapes
`load_plan`, whatever value a field holds.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shared_core.core.errors import PlanError
from shared_core.core.planning.plan import Plan
from shared_core.core.planning.plan_codec import decode_plan, load_plan, plan_to_canonical, plan_to_json
from shared_core.core.project.models import canonical_json, sha256_json

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "golden"
SCENARIOS = sorted(p.name for p in GOLDEN.iterdir() if (p / "plan.json").is_file())
JSON = dict[str, object]


def golden_text(scenario: str = "logic_change") -> str:
    return (GOLDEN / scenario / "plan.json").read_text("utf-8")


def golden_document(scenario: str = "logic_change") -> JSON:
    document = json.loads(golden_text(scenario))
    assert isinstance(document, dict)
    return document


def steps_of(document: JSON) -> list[JSON]:
    steps = document["steps"]
    assert isinstance(steps, list)
    return steps


def reseal(document: JSON) -> JSON:
    """Recompute every step ID and the plan ID, so that only the check under test can refuse the document."""
    for step in steps_of(document):
        identity = {k: step[k] for k in ("depends_on", "end", "model", "model_hash", "reset", "run_type", "start")}
        step["step_id"] = sha256_json(identity)
    document["plan_id"] = sha256_json({k: v for k, v in document.items() if k != "plan_id"})
    return document


def refusal(document: object) -> str:
    with pytest.raises(PlanError) as caught:
        load_plan(json.dumps(document), "plan.json")
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_golden_plans_round_trip_byte_for_byte(scenario: str) -> None:
    text = golden_text(scenario)
    plan = load_plan(text, scenario)
    assert plan_to_json(plan) == text
    assert plan_to_canonical(plan) == canonical_json(json.loads(text))
    assert sha256_json(plan.body()) == plan.plan_id
    assert decode_plan(json.loads(text), scenario) == plan


def test_the_typed_plan_reads_as_the_document_says() -> None:
    plan = load_plan(golden_text(), "logic_change")
    assert isinstance(plan, Plan)
    assert plan.plan_id.startswith("4dc799f753c2") and plan.as_of == "2024-03-15T06:00:00Z"
    assert [(m.name, m.change) for m in plan.models] == [("raw.customers", "modified"), ("raw.orders", "modified")]
    assert plan.inputs.planner.max_batches_per_step == 366
    assert plan.inputs.watermarks["mart.order_log"][0] == ("2024-01-01T00:00:00Z", "2024-03-10T00:00:00Z")
    first = plan.steps[0]
    assert (first.model, first.kind, first.materialization, first.run_type, first.batch) == (
        "raw.customers", "FULL_REFRESH", "TABLE", "full_refresh", None)
    assert plan.step(first.step_id) is first and plan.step("0" * 64) is None
    assert plan.summary.steps == len(plan.steps) and plan.summary.modified == 2


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: steps_of(d)[0].update(batches="3"), "plan.json: steps[0].batches must be a whole number (0 or more), got \"3\""),
        (lambda d: steps_of(d)[1].update(batches=True), "steps[1].batches must be a whole number (0 or more), got true"),
        (lambda d: steps_of(d)[1].update(batches=1.0), "steps[1].batches must be a whole number (0 or more), got 1.0"),
        (lambda d: steps_of(d)[0].update(parallel_group=-1), "steps[0].parallel_group must be a whole number"),
        (lambda d: steps_of(d)[0].update(reset="false"), "steps[0].reset must be true or false, got \"false\""),
        (lambda d: steps_of(d)[0].update(run_type="rebuild"), "steps[0].run_type must be one of full_refresh, merge, backfill, incremental, got \"rebuild\""),
        (lambda d: steps_of(d)[0].update(kind="TABLE"), "steps[0].kind must be one of FULL_REFRESH"),
        (lambda d: steps_of(d)[0].update(materialization=None), "steps[0].materialization must be one of TABLE, VIEW"),
        (lambda d: steps_of(d)[3].update(batch="week"), "steps[3].batch must be one of hour, day, month, got \"week\""),
        (lambda d: steps_of(d)[3].update(start="yesterday"), "steps[3].start must be a UTC instant"),
        (lambda d: steps_of(d)[3].update(end=None), "steps[3] must have start, end and batch together"),
        (lambda d: steps_of(d)[0].update(model=7), "steps[0].model must be a string, got 7"),
        (lambda d: steps_of(d)[0].update(depends_on="abc"), "steps[0].depends_on must be a list of strings, got \"abc\""),
        (lambda d: steps_of(d)[0].update(step_id=None), "steps[0].step_id must be a string, got null"),
        (lambda d: steps_of(d)[0].pop("reason"), "steps[0] lacks key 'reason'"),
        (lambda d: steps_of(d)[0].update(extra=1), "steps[0] has unknown key 'extra'"),
        (lambda d: d.update(steps={}), "steps must be a list, got {}"),
        (lambda d: d.update(models=[1]), "models[0] must be an object, got 1"),
        (lambda d: d.update(models=[{"name": "x", "change": "renamed", "old_hash": None, "new_hash": None,
                                     "reason": ""}]), "models[0].change must be one of added, modified"),
        (lambda d: d.update(as_of=20240315), "as_of must be a UTC instant like 2024-01-01T00:00:00Z, got 20240315"),
        (lambda d: d.update(base=None), "base must be a string, got null"),
        (lambda d: d.update(summary={**d["summary"], "waves": "4"}), "summary.waves must be a whole number"),
        (lambda d: d.update(inputs=[]), "inputs must be an object, got []"),
        (lambda d: d.update(inputs={"canonicalizer": "v1", "planner": {"max_batches_per_step": "366"},
                                    "watermarks": {}}), "inputs.planner.max_batches_per_step must be a whole number"),
        (lambda d: d.update(inputs={"canonicalizer": "v1", "planner": {"max_batches_per_step": 0}, "watermarks": {}}),
         "inputs.planner.max_batches_per_step must be at least 1, got 0"),
        (lambda d: d.update(inputs={"canonicalizer": "v1", "planner": {"max_batches_per_step": 1},
                                    "watermarks": {"m": [["2024-01-01T00:00:00Z"]]}}),
         'inputs.watermarks["m"][0] must be a [start, end] pair of UTC instants'),
        (lambda d: d.update(plan_version=True), "plan_version True is not supported"),
        (lambda d: d.update(plan_version="1"), "plan_version '1' is not supported"),
        (lambda d: d.pop("summary"), "not an IronLayer plan (expected keys"),
    ],
)
def test_a_field_of_the_wrong_type_is_a_plan_error_naming_it(edit: Callable[[JSON], object], message: str) -> None:
    document = golden_document()
    edit(document)
    assert message in refusal(document)


def test_content_that_does_not_match_its_ids_or_itself_is_refused() -> None:
    document = golden_document()
    steps_of(document)[0]["reason"] = "edited"
    assert refusal(document) == "plan.json: plan_id does not match the plan's content; the file was edited, re-plan"

    document = golden_document()
    steps_of(document)[0]["model_hash"] = "0" * 64
    document["plan_id"] = sha256_json({k: v for k, v in document.items() if k != "plan_id"})
    assert "step for raw.customers has a step_id that does not match its content" in refusal(document)

    document = golden_document()
    steps_of(document)[2]["depends_on"] = ["f" * 64]
    assert "step for stage.customers depends on step ffffffffffff, which is not an earlier step" in refusal(reseal(document))

    document = golden_document()
    later = steps_of(document)[3]["step_id"]
    steps_of(document)[2]["depends_on"] = [later]
    assert "which is not an earlier step of the plan" in refusal(reseal(document))

    document = golden_document()
    index, joined = next((i, s) for i, s in enumerate(steps_of(document)) if len(s["depends_on"]) > 1)  # type: ignore[arg-type]
    joined["depends_on"] = sorted(joined["depends_on"], reverse=True)  # type: ignore[call-overload]
    assert f"steps[{index}].depends_on must be distinct step IDs in sorted order" in refusal(reseal(document))

    document = golden_document()
    steps_of(document).append(copy.deepcopy(steps_of(document)[0]))
    document["summary"] = {**document["summary"], "steps": 9}  # type: ignore[dict-item]
    assert "appears twice" in refusal(reseal(document))

    document = golden_document()
    document["summary"] = {**document["summary"], "batches": 1}  # type: ignore[dict-item]
    assert "summary does not match the plan's models and steps" in refusal(reseal(document))

    document = golden_document()
    document["inputs_hash"] = "0" * 64
    assert "inputs_hash does not match the plan's inputs" in refusal(reseal(document))

    document = golden_document()
    steps_of(document)[3]["end"] = steps_of(document)[3]["start"]
    assert "has start 2024-01-01T00:00:00Z not before end" in refusal(reseal(document))


def leaves(value: object, path: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaves(item, (*path, key))
    elif isinstance(value, list) and value:
        for index, item in enumerate(value):
            yield from leaves(item, (*path, index))
    else:
        yield path


REPLACEMENTS: list[object] = ["3", 3, -1, 1.5, None, True, [], {}, ["x"], "2024-13-01T00:00:00Z", float("nan")]


@pytest.mark.parametrize("scenario", ["logic_change", "incremental_gaps"])
def test_any_value_in_any_field_gives_a_plan_or_a_plan_error(scenario: str) -> None:
    original = golden_document(scenario)
    paths = list(leaves(original))
    assert len(paths) > 100
    edits = 0
    for path in paths:
        for replacement in REPLACEMENTS:
            document = copy.deepcopy(original)
            parent: object = document
            for part in path[:-1]:
                parent = parent[part]  # type: ignore[index]
            if json.dumps(parent[path[-1]]) == json.dumps(replacement):  # type: ignore[index]
                continue  # not an edit
            parent[path[-1]] = replacement  # type: ignore[index]
            edits += 1
            with pytest.raises(PlanError) as caught:  # every edit breaks a type, a vocabulary or the plan ID
                load_plan(json.dumps(document), "p.json")
            assert str(caught.value).startswith("p.json: ") and "\n" not in str(caught.value)
    assert edits > len(paths) * (len(REPLACEMENTS) - 2)
