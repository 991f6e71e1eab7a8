"""The plan document (version 1): immutable data, canonical JSON bytes and content-derived IDs.

`plan_id` is the SHA-256 of the canonical JSON (sorted keys, compact, UTF-8) of every other field; a
step ID is the SHA-256 of the step's own content (model, run type, range, reset flag, model hash and
the IDs of the steps it depends on). The file form (`plan_to_json`) is the same document indented for
review; both forms are fixed by the content, so the same inputs give the same bytes everywhere.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from shared_core.core.errors import PlanError
from shared_core.core.project.models import canonical_json, sha256_json

PLAN_VERSION = 1
TOP_LEVEL_KEYS = frozenset(
    {"plan_version", "plan_id", "base", "target", "as_of", "inputs", "inputs_hash", "summary", "models", "steps"}
)


@dataclass(frozen=True)
class Step:
    """One unit of execution: a model, and for incremental models a contiguous range of batches."""

    model: str
    kind: str
    materialization: str
    run_type: str  # full_refresh | merge | backfill | incremental
    start: str | None
    end: str | None
    batch: str | None
    batches: int
    reset: bool  # start from an empty table (first step of a backfill)
    model_hash: str
    depends_on: tuple[str, ...]
    reason: str
    parallel_group: int = 0

    def identity(self) -> dict[str, Any]:
        """The fields hashed into the step ID, listed explicitly."""
        return {
            "depends_on": sorted(self.depends_on),
            "end": self.end,
            "model": self.model,
            "model_hash": self.model_hash,
            "reset": self.reset,
            "run_type": self.run_type,
            "start": self.start,
        }

    @cached_property
    def step_id(self) -> str:
        """SHA-256 of `identity()`; computed once per step (the step is immutable)."""
        return sha256_json(self.identity())

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "batches": self.batches,
            "depends_on": sorted(self.depends_on),
            "end": self.end,
            "kind": self.kind,
            "materialization": self.materialization,
            "model": self.model,
            "model_hash": self.model_hash,
            "parallel_group": self.parallel_group,
            "reason": self.reason,
            "reset": self.reset,
            "run_type": self.run_type,
            "start": self.start,
            "step_id": self.step_id,
        }


def finish_plan(body: dict[str, Any]) -> dict[str, Any]:
    """Add `plan_id` to a plan body that has every other top-level field.

    Raises:
        PlanError: the body's keys are not exactly the plan's top-level keys minus `plan_id`.
    """
    if set(body) != TOP_LEVEL_KEYS - {"plan_id"}:
        raise PlanError(f"plan body has keys {sorted(body)}; expected {sorted(TOP_LEVEL_KEYS - {'plan_id'})}")
    return {**body, "plan_id": sha256_json(body)}


def plan_to_json(plan: dict[str, Any]) -> str:
    """The file form of a plan: canonical content, indented, sorted keys, trailing newline."""
    return json.dumps(plan, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


def plan_to_canonical(plan: dict[str, Any]) -> str:
    """The compact canonical form of a whole plan (what an HTTP API or a blob stores byte-for-byte)."""
    return canonical_json(plan)


def load_plan(text: str, source: str) -> dict[str, Any]:
    """Read a plan document and check its integrity (version, keys, plan ID and step IDs).

    Raises:
        PlanError: not JSON, not a version-1 plan, or its content does not match its IDs.
    """
    try:
        plan = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PlanError(f"{source}: not a plan file: invalid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(plan, dict) or set(plan) != TOP_LEVEL_KEYS:
        raise PlanError(f"{source}: not an IronLayer plan (expected keys {', '.join(sorted(TOP_LEVEL_KEYS))})")
    if plan["plan_version"] != PLAN_VERSION:
        raise PlanError(f"{source}: plan_version {plan['plan_version']!r} is not supported; re-plan with this version")
    body = {k: v for k, v in plan.items() if k != "plan_id"}
    if sha256_json(body) != plan["plan_id"]:
        raise PlanError(f"{source}: plan_id does not match the plan's content; the file was edited, re-plan")
    for step in plan["steps"]:
        identity = {k: step.get(k) for k in ("depends_on", "end", "model", "model_hash", "reset", "run_type", "start")}
        if sha256_json(identity) != step.get("step_id"):
            raise PlanError(f"{source}: step for {step.get('model')} has a step_id that does not match its content")
    return plan
