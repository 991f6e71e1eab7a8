"""Plans for tests that need a `Plan` value but not a planner: a chosen ID, chosen changes and steps.

The IDs are whatever the test gives (nothing is hashed or checked), which is what a store or a page test
needs: the state store keys plans by ID and reads only their identity columns, the approval page shows
whatever a plan holds.
"""

from __future__ import annotations

from collections.abc import Sequence

from shared_core.core.planning.plan import ModelChange, Plan, PlanInputs, Step, Summary
from shared_core.core.project.config import PlannerSettings


def stub_plan(
    plan_id: str = "p" * 64,
    *,
    base: str = "a" * 40,
    target: str = "b" * 40,
    as_of: str = "2024-01-01T00:00:00Z",
    inputs_hash: str = "h",
    models: Sequence[ModelChange] = (),
    steps: Sequence[Step] = (),
) -> Plan:
    """A plan with exactly these fields (its summary counted from `models` and `steps`)."""
    return Plan(
        plan_id=plan_id,
        base=base,
        target=target,
        as_of=as_of,
        inputs=PlanInputs(canonicalizer="v1", planner=PlannerSettings(), watermarks={}),
        inputs_hash=inputs_hash,
        summary=Summary.of(models, steps),
        models=tuple(models),
        steps=tuple(steps),
    )
