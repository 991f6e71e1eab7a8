"""A plan's base: the deployed model versions it was built against, and the rule that finds it stale.

A model's deployed version is `(content_hash, tests)`: what decides its data (the content hash) and the
quality tests that ran with it. When a plan is made with the state store at hand (the Functions, `ironlayer
plan` with a store, a backfill), its base is what the store says is deployed for every model the plan
touches, recorded beside the plan and bound to its ID (`PlanBase.document` / `base_hash`); the plan's bytes
never change. A plan file made without a store states its base through its own diff (`stated_base`): each
changed model's `old_hash`, nothing for an added one, and for a model it only re-runs the version it runs.

The plan is stale (`find_drift`) when a model of its base is now deployed at another version by another
plan: a newer plan ran, or a backfill changed the model's version. A version the plan deployed itself is
its own progress (a resumed apply), and a model with no recorded deployment has nothing to drift from.
Tests are compared only when both sides know them. Pure: values in, values out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from shared_core.core.errors import PlanError
from shared_core.core.planning.plan import Plan
from shared_core.core.project.headers import Header
from shared_core.core.project.models import canonical_json, sha256_json
from shared_core.core.state import DeployedVersion

Version = tuple[str, str | None]
"""A model version: `(content_hash, tests)`; tests None when not known."""


def render_tests(header: Header) -> str:
    """A model's quality tests as one canonical text (sorted, each `kind(arg)@SEVERITY`), e.g. for comparing.

    >>> from shared_core.core.project.headers import parse_header
    >>> header = parse_header("-- name: s.m\\n-- kind: FULL_REFRESH\\n-- tests: unique(id), not_null(id)@WARN\\n"
    ...                       "SELECT 1 AS id", "m.sql")
    >>> render_tests(header)
    'not_null(id)@WARN,unique(id)@BLOCK'
    """
    return ",".join(test.render() for test in header.tests)


def render_contract(header: Header) -> str:
    """A model's contract as one text: its mode, then its columns (`name:TYPE[:NOT_NULL]`), or '' when disabled.

    >>> from shared_core.core.project.headers import parse_header
    >>> header = parse_header("-- name: s.m\\n-- kind: FULL_REFRESH\\n-- contract_mode: STRICT\\n"
    ...                       "-- contract_columns: id:INT:NOT_NULL\\nSELECT 1 AS id", "m.sql")
    >>> render_contract(header)
    'STRICT id:INT:NOT_NULL'
    """
    fields = header.data_fields()
    if header.contract_mode == "DISABLED" and not fields["contract_columns"]:
        return ""
    return f"{header.contract_mode} {fields['contract_columns']}".strip()


def plan_models(plan: Plan) -> list[str]:
    """Every model a plan touches: those of its diff and those of its steps, sorted."""
    return sorted({m.name for m in plan.models} | {s.model for s in plan.steps})


@dataclass(frozen=True)
class PlanBase:
    """What a plan was built against, recorded beside it: per model, the version deployed then (None: none),
    and for the models it does not rebuild but whose tests it changes, the version it deploys on success."""

    plan_id: str
    base: Mapping[str, Version | None]
    tests: Mapping[str, Version] = field(default_factory=dict)

    def document(self) -> str:
        """The canonical JSON stored beside the plan (sorted keys, compact); it names the plan it belongs to."""
        return canonical_json({
            "base": {model: list(version) if version else None for model, version in sorted(self.base.items())},
            "plan_id": self.plan_id,
            "tests": {model: list(version) for model, version in sorted(self.tests.items())},
        })

    @property
    def base_hash(self) -> str:
        """SHA-256 of the document: binds the base to its plan ID."""
        return sha256_json(json.loads(self.document()))


def decode_base(plan_id: str, document: str, base_hash: str) -> PlanBase:
    """Read a stored base back and check that it is intact and belongs to `plan_id`.

    Raises:
        PlanError: the document is malformed, names another plan, or does not match its hash.
    """
    try:
        value = json.loads(document)
        base = {str(m): _version(v) if v else None for m, v in value["base"].items()}
        tests = {str(m): _version(v) for m, v in value["tests"].items()}
        named = str(value["plan_id"])
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
        raise PlanError(f"the stored base of plan {plan_id[:12]} is malformed; re-plan") from None
    decoded = PlanBase(named, base, tests)
    if named != plan_id or decoded.base_hash != base_hash:
        raise PlanError(f"the stored base of plan {plan_id[:12]} does not match its hash or plan ID; re-plan")
    return decoded


def _version(value: object) -> Version:
    """A stored `[content_hash, tests]` pair back as a `Version`; TypeError when it is not one."""
    if not (isinstance(value, list) and len(value) == 2 and isinstance(value[0], str)
            and (value[1] is None or isinstance(value[1], str))):
        raise TypeError("not a version")
    return value[0], value[1]


def deployed_base(plan: Plan, deployed: Mapping[str, DeployedVersion],
                  tests: Mapping[str, Version] | None = None) -> PlanBase:
    """The base of `plan` read from the deployed versions (for every model it touches): None where none is."""
    base: dict[str, Version | None] = {}
    for model in plan_models(plan):
        now = deployed.get(model)
        base[model] = (now["content_hash"], now["tests"]) if now else None
    return PlanBase(plan.plan_id, base, dict(tests or {}))


def stated_base(plan: Plan, tests: Mapping[str, Version] | None = None) -> PlanBase:
    """The base a plan states through its own content (for a plan made without a state store).

    A changed model was deployed at its `old_hash` (an added one not at all); a model the plan only re-runs
    at the version it runs. Tests are not stated.
    """
    base: dict[str, Version | None] = {change.name: (change.old_hash, None) if change.old_hash else None
                                       for change in plan.models}
    for step in plan.steps:
        base.setdefault(step.model, (step.model_hash, None))
    return PlanBase(plan.plan_id, base, dict(tests or {}))


@dataclass(frozen=True)
class Drift:
    """A model whose deployed version moved away from a plan's base."""

    model: str
    expected: Version | None  # what the plan was built against (None: not deployed)
    now: DeployedVersion


def find_drift(base: PlanBase, deployed: Mapping[str, DeployedVersion]) -> Drift | None:
    """The first model (by name) whose deployed version no longer matches the base, or None when none moved.

    >>> base = PlanBase("p", {"a": ("h1", "t"), "b": None})
    >>> find_drift(base, {"a": {"content_hash": "h1", "tests": "t", "plan_id": "q"}}) is None
    True
    >>> find_drift(base, {"a": {"content_hash": "h2", "tests": "t", "plan_id": "q"}}).model
    'a'
    >>> find_drift(base, {"b": {"content_hash": "h9", "tests": None, "plan_id": "p"}}) is None  # its own progress
    True
    """
    for model in sorted(base.base):
        now = deployed.get(model)
        if now is None or now["plan_id"] == base.plan_id:
            continue
        expected = base.base[model]
        if expected is None or now["content_hash"] != expected[0]:
            return Drift(model, expected, now)
        if expected[1] is not None and now["tests"] is not None and now["tests"] != expected[1]:
            return Drift(model, expected, now)
    return None


def drift_message(plan_id: str, drift: Drift) -> str:
    """One line saying which model moved, from what to what, and that the answer is to re-plan."""
    was = f"version {drift.expected[0][:12]}" if drift.expected else "nothing deployed"
    by = f" by plan {drift.now['plan_id'][:12]}" if drift.now["plan_id"] else ""
    changed = "its tests changed" if drift.expected and drift.expected[0] == drift.now["content_hash"] else (
        f"now version {drift.now['content_hash'][:12]}")
    return (f"stale plan {plan_id[:12]}: {drift.model} was deployed again{by} since this plan was made (built "
            f"against {was}, {changed}); re-plan and approve the new plan")
