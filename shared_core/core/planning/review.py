"""What a reviewer must see beside a plan: the models whose quality tests or contract change.

The plan document lists a tests-only edit as a `metadata` change with no step (tests are not part of the
content hash, so nothing is rebuilt), and a contract edit as `modified`. Both change what runs, so both
need approval like a SQL change: `check_changes` finds them, the review data stored beside the plan
carries them to the approval page, and a plan with any of them waits for approval even with no step.
`deployed_tests` names the tests such a plan deploys, on success, for the models it does not rebuild.
Pure: projects in, values out.
"""

from __future__ import annotations

from shared_core.core.planning.base import Version, render_contract, render_tests
from shared_core.core.planning.plan import Plan
from shared_core.core.project.models import Project

CheckChanges = dict[str, dict[str, list[str]]]
"""model -> {"tests": [old, new], "contract": [old, new]} (only the parts that changed)."""


def check_changes(plan: Plan, base: Project, target: Project) -> CheckChanges:
    """The added, modified and metadata-changed models of `plan` whose tests or contract differ from `base`.

    An added model counts when it has tests or a contract (before it, there were none).

    Returns:
        model -> the changed parts, each `[old, new]` (`render_tests` / `render_contract`; '' for none).
    """
    changes: CheckChanges = {}
    for entry in plan.models:
        name = entry.name
        if entry.change not in ("added", "modified", "metadata") or name not in target:
            continue
        new = target[name].header
        old = base[name].header if entry.change != "added" and name in base else None
        parts: dict[str, list[str]] = {}
        for part, render in (("tests", render_tests), ("contract", render_contract)):
            before, after = (render(old) if old else ""), render(new)
            if before != after:
                parts[part] = [before, after]
        if parts:
            changes[name] = parts
    return changes


def deployed_tests(plan: Plan, changes: CheckChanges) -> dict[str, Version]:
    """The versions a plan deploys without running anything: its models whose tests change but that have no step
    (their content hash, and their tests at the target)."""
    stepped = set(plan.step_models)
    versions: dict[str, Version] = {}
    for entry in plan.models:
        name = entry.name
        if name in changes and "tests" in changes[name] and name not in stepped and entry.new_hash:
            versions[name] = (entry.new_hash, changes[name]["tests"][1])
    return versions
