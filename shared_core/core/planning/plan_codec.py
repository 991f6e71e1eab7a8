"""The plan's JSON codec: a `Plan` to its exact bytes, and plan text back to a checked `Plan`.

Writing is fixed by the content: `plan_to_json` (the file form, indented for review) and
`plan_to_canonical` (compact, what the plan ID hashes) give the same bytes for the same plan everywhere.
Reading (`load_plan`) refuses, with one `PlanError` line naming the source and the field, anything
that is not exactly a version-1 plan: a missing or unknown key, a value of the wrong type or outside
its vocabulary, a plan ID or step ID that does not match the content, a step that depends on a step
not before it, or a summary or inputs hash that disagrees with the rest.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import TypeVar

from shared_core.core.errors import PlanError
from shared_core.core.planning.plan import (
    CHANGE_KINDS,
    PLAN_VERSION,
    RUN_TYPES,
    STEP_KEYS,
    TOP_LEVEL_KEYS,
    ModelChange,
    Plan,
    PlanInputs,
    Step,
    Summary,
    WatermarkRange,
    inputs_hash,
)
from shared_core.core.project.config import PlannerSettings
from shared_core.core.project.headers import BATCH_UNITS, KINDS, MATERIALIZATIONS, parse_instant
from shared_core.core.project.models import canonical_json, sha256_json

__all__ = ["decode_plan", "load_plan", "plan_to_canonical", "plan_to_json"]

_CHANGE_KEYS = frozenset({"change", "name", "new_hash", "old_hash", "reason"})
_SUMMARY_KEYS = ("added", "batches", "cosmetic", "metadata", "models_to_run", "modified", "removed", "steps", "waves")
_INPUT_KEYS = frozenset({"canonicalizer", "planner", "watermarks"})
_PLANNER_KEYS = frozenset({"max_batches_per_step"})
ChoiceT = TypeVar("ChoiceT", bound=str)


def plan_to_json(plan: Plan) -> str:
    """The file form of a plan: canonical content, indented, sorted keys, trailing newline."""
    return json.dumps(plan.to_dict(), sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def plan_to_canonical(plan: Plan) -> str:
    """The compact canonical form of a whole plan (sorted keys, no spaces, UTF-8 text)."""
    return canonical_json(plan.to_dict())


def load_plan(text: str, source: str) -> Plan:
    """Read a plan document and check it (version, keys, types, plan ID, step IDs and their order).

    Args:
        text: the plan file's text.
        source: how errors name the document (a path or a blob key).

    Returns:
        The plan.

    Raises:
        PlanError: not JSON, not a version-1 plan, a field of the wrong type, or content that does not match
            its IDs (one line naming `source` and the field).
    """
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlanError(f"{source}: not a plan file: invalid JSON ({exc.msg} at line {exc.lineno})") from None
    return decode_plan(document, source)


def decode_plan(document: object, source: str) -> Plan:
    """A parsed plan document (what `json.loads` returns) as a checked `Plan`; see `load_plan`.

    Raises:
        PlanError: the document is not a valid version-1 plan.
    """
    if not isinstance(document, dict) or set(document) != TOP_LEVEL_KEYS:
        raise PlanError(f"{source}: not an IronLayer plan (expected keys {', '.join(sorted(TOP_LEVEL_KEYS))})")
    version = document["plan_version"]
    if type(version) is not int or version != PLAN_VERSION:
        raise PlanError(f"{source}: plan_version {version!r} is not supported; re-plan with this version")
    field = _Fields(source)
    as_of = field.instant(document, "as_of")
    models = tuple(_change(field, item, f"models[{i}]") for i, item in enumerate(field.array(document, "models")))
    read = [_step(field, item, f"steps[{i}]") for i, item in enumerate(field.array(document, "steps"))]
    steps = tuple(step for step, _ in read)
    plan = Plan(
        plan_id=field.text(document, "plan_id"),
        base=field.text(document, "base"),
        target=field.text(document, "target"),
        as_of=as_of,
        inputs=_inputs(field, field.obj(document, "inputs", _INPUT_KEYS), "inputs"),
        inputs_hash=field.text(document, "inputs_hash"),
        summary=_summary(field, field.obj(document, "summary", frozenset(_SUMMARY_KEYS)), "summary"),
        models=models,
        steps=steps,
    )
    body = {key: value for key, value in document.items() if key != "plan_id"}
    if sha256_json(body) != plan.plan_id:
        raise PlanError(f"{source}: plan_id does not match the plan's content; the file was edited, re-plan")
    _check_steps(source, plan, [written for _, written in read])
    if plan.summary != Summary.of(plan.models, plan.steps):
        raise PlanError(f"{source}: summary does not match the plan's models and steps; re-plan")
    if plan.inputs_hash != inputs_hash(base=plan.base, target=plan.target, as_of=plan.as_of, inputs=plan.inputs):
        raise PlanError(f"{source}: inputs_hash does not match the plan's inputs; re-plan")
    return plan


def _check_steps(source: str, plan: Plan, written_ids: list[str]) -> None:
    """Each step's written ID is its content's, IDs are unique, and a step depends only on steps before it."""
    seen: set[str] = set()
    for step, written in zip(plan.steps, written_ids, strict=True):
        if step.step_id != written:
            raise PlanError(f"{source}: step for {step.model} has a step_id that does not match its content")
        unknown = [d for d in step.depends_on if d not in seen]
        if unknown:
            raise PlanError(f"{source}: step for {step.model} depends on step {unknown[0][:12]}, which is not an "
                            "earlier step of the plan; re-plan")
        if step.step_id in seen:
            raise PlanError(f"{source}: step {step.step_id[:12]} of {step.model} appears twice; re-plan")
        seen.add(step.step_id)


def _change(field: _Fields, value: object, where: str) -> ModelChange:
    item = field.as_obj(value, where, _CHANGE_KEYS)
    return ModelChange(
        name=field.text(item, "name", where),
        change=field.choice(item, "change", CHANGE_KINDS, where),
        old_hash=field.optional_text(item, "old_hash", where),
        new_hash=field.optional_text(item, "new_hash", where),
        reason=field.text(item, "reason", where),
    )


def _step(field: _Fields, value: object, where: str) -> tuple[Step, str]:
    """The step, and the step ID written in the document (checked against the content once the plan is read)."""
    item = field.as_obj(value, where, STEP_KEYS)
    written_id = field.text(item, "step_id", where)
    start, end = field.optional_instant(item, "start", where), field.optional_instant(item, "end", where)
    batch = field.optional_choice(item, "batch", BATCH_UNITS, where)
    if (start is None) != (end is None) or (start is not None and batch is None):
        raise PlanError(f"{field.source}: {where} must have start, end and batch together, or none of start and end")
    if start is not None and end is not None and start[1] >= end[1]:
        raise PlanError(f"{field.source}: {where} has start {start[0]} not before end {end[0]}")
    depends_on = field.strings(item, "depends_on", where)
    if list(depends_on) != sorted(set(depends_on)):
        raise PlanError(f"{field.source}: {where}.depends_on must be distinct step IDs in sorted order")
    step = Step(
        model=field.text(item, "model", where),
        kind=field.choice(item, "kind", KINDS, where),
        materialization=field.choice(item, "materialization", MATERIALIZATIONS, where),
        run_type=field.choice(item, "run_type", RUN_TYPES, where),
        start=start[0] if start else None,
        end=end[0] if end else None,
        batch=batch,
        batches=field.count(item, "batches", where),
        reset=field.flag(item, "reset", where),
        model_hash=field.text(item, "model_hash", where),
        depends_on=depends_on,
        reason=field.text(item, "reason", where),
        parallel_group=field.count(item, "parallel_group", where),
    )
    return step, written_id


def _summary(field: _Fields, item: Mapping[str, object], where: str) -> Summary:
    counts = {key: field.count(item, key, where) for key in _SUMMARY_KEYS}
    return Summary(
        added=counts["added"], modified=counts["modified"], removed=counts["removed"], cosmetic=counts["cosmetic"],
        metadata=counts["metadata"], batches=counts["batches"], models_to_run=counts["models_to_run"],
        steps=counts["steps"], waves=counts["waves"],
    )


def _inputs(field: _Fields, item: Mapping[str, object], where: str) -> PlanInputs:
    planner = field.obj(item, "planner", _PLANNER_KEYS, where)
    max_batches = field.count(planner, "max_batches_per_step", f"{where}.planner")
    if max_batches < 1:
        raise PlanError(f"{field.source}: {where}.planner.max_batches_per_step must be at least 1, got {max_batches}")
    ledger = field.obj(item, "watermarks", None, where)
    watermarks: dict[str, tuple[WatermarkRange, ...]] = {}
    for model, ranges in ledger.items():
        place = f"{where}.watermarks[{json.dumps(model)}]"
        if not isinstance(ranges, list):
            raise PlanError(f"{field.source}: {place} must be a list of [start, end] pairs, got {_shown(ranges)}")
        watermarks[model] = tuple(field.pair(pair, f"{place}[{i}]") for i, pair in enumerate(ranges))
    return PlanInputs(
        canonicalizer=field.text(item, "canonicalizer", where),
        planner=PlannerSettings(max_batches),
        watermarks=watermarks,
    )


class _Fields:
    """Typed reads of a parsed document's fields; every refusal is one PlanError line naming the field."""

    def __init__(self, source: str) -> None:
        self.source = source

    def wrong(self, where: str, key: str, what: str, value: object) -> PlanError:
        """The error for a field whose value is not `what`."""
        return PlanError(f"{self.source}: {_join(where, key)} must be {what}, got {_shown(value)}")

    def text(self, item: Mapping[str, object], key: str, where: str = "") -> str:
        value = item[key]
        if isinstance(value, str):
            return value
        raise self.wrong(where, key, "a string", value)

    def optional_text(self, item: Mapping[str, object], key: str, where: str = "") -> str | None:
        value = item[key]
        if value is None or isinstance(value, str):
            return value
        raise self.wrong(where, key, "a string or null", value)

    def count(self, item: Mapping[str, object], key: str, where: str = "") -> int:
        value = item[key]
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        raise self.wrong(where, key, "a whole number (0 or more)", value)

    def flag(self, item: Mapping[str, object], key: str, where: str = "") -> bool:
        value = item[key]
        if isinstance(value, bool):
            return value
        raise self.wrong(where, key, "true or false", value)

    def optional_instant(self, item: Mapping[str, object], key: str, where: str = "") -> tuple[str, datetime] | None:
        """The field's text and the instant it names, or None for null."""
        value = item[key]
        if value is None:
            return None
        if isinstance(value, str):
            try:
                return value, parse_instant(value)
            except ValueError:
                pass
        raise self.wrong(where, key, "a UTC instant like 2024-01-01T00:00:00Z", value)

    def instant(self, item: Mapping[str, object], key: str, where: str = "") -> str:
        value = self.optional_instant(item, key, where)
        if value is None:
            raise self.wrong(where, key, "a UTC instant like 2024-01-01T00:00:00Z", None)
        return value[0]

    def choice(self, item: Mapping[str, object], key: str, allowed: tuple[ChoiceT, ...], where: str = "") -> ChoiceT:
        value = item[key]
        for option in allowed:
            if value == option:
                return option
        raise self.wrong(where, key, f"one of {', '.join(allowed)}", value)

    def optional_choice(self, item: Mapping[str, object], key: str, allowed: tuple[ChoiceT, ...],
                        where: str = "") -> ChoiceT | None:
        return None if item[key] is None else self.choice(item, key, allowed, where)

    def strings(self, item: Mapping[str, object], key: str, where: str = "") -> tuple[str, ...]:
        value = item[key]
        if isinstance(value, list) and all(isinstance(x, str) for x in value):
            return tuple(str(x) for x in value)
        raise self.wrong(where, key, "a list of strings", value)

    def pair(self, value: object, where: str) -> WatermarkRange:
        if isinstance(value, list) and len(value) == 2:
            start, end = value
            if isinstance(start, str) and isinstance(end, str) and _is_instant(start) and _is_instant(end):
                return start, end
        raise PlanError(f"{self.source}: {where} must be a [start, end] pair of UTC instants, got {_shown(value)}")

    def array(self, item: Mapping[str, object], key: str, where: str = "") -> list[object]:
        value = item[key]
        if isinstance(value, list):
            return value
        raise self.wrong(where, key, "a list", value)

    def obj(self, item: Mapping[str, object], key: str, keys: frozenset[str] | None,
            where: str = "") -> dict[str, object]:
        return self.as_obj(item[key], _join(where, key), keys)

    def as_obj(self, value: object, where: str, keys: frozenset[str] | None) -> dict[str, object]:
        """`value` as a JSON object with exactly `keys` (any keys when None)."""
        if not isinstance(value, dict):
            raise PlanError(f"{self.source}: {where} must be an object, got {_shown(value)}")
        if keys is not None and set(value) != keys:
            missing, unknown = sorted(keys - set(value)), sorted(set(value) - keys)
            problem = f"lacks key '{missing[0]}'" if missing else f"has unknown key '{unknown[0]}'"
            raise PlanError(f"{self.source}: {where} {problem}; expected keys {', '.join(sorted(keys))}")
        return value


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _is_instant(text: str) -> bool:
    try:
        parse_instant(text)
    except ValueError:
        return False
    return True


def _shown(value: object) -> str:
    """A value for an error message: JSON, cut short, on one line."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 60 else text[:57] + "..."
