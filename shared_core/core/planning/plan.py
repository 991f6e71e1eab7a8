"""The plan document (version 1): frozen, typed data with content-derived IDs.

A `Plan` is what the planner returns and every consumer reads: its `ModelChange`s (what changed
between the commits), its `Step`s (what runs, in dependency order, each with its wave), a `Summary`
of both and the `PlanInputs` that decided them. `to_dict()` gives the document form (JSON-able, the
same keys and values as the plan file); `shared_core.core.planning.plan_codec` writes it as text and
reads it back, checked.

`plan_id` is the SHA-256 of the canonical JSON (sorted keys, compact, UTF-8) of every other field; a
step ID is the SHA-256 of the step's own content (model, run type, range, reset flag, model hash and
the IDs of the steps it depends on). Both are fixed by the content, so the same inputs give the same
IDs everywhere. Build a plan with `new_plan` (it computes the summary and the IDs) or read one with
`load_plan`; constructing `Plan` directly trusts the IDs you pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Literal, get_args

from shared_core.core.project.config import PlannerSettings
from shared_core.core.project.headers import BatchUnit, Kind, Materialization
from shared_core.core.project.models import sha256_json

__all__ = [
    "CHANGE_KINDS",
    "DATA_CHANGES",
    "PLAN_VERSION",
    "RUN_TYPES",
    "STEP_KEYS",
    "TOP_LEVEL_KEYS",
    "BatchUnit",
    "ChangeKind",
    "Kind",
    "Materialization",
    "ModelChange",
    "Plan",
    "PlanInputs",
    "RunType",
    "Step",
    "Summary",
    "WatermarkRange",
    "inputs_hash",
    "new_plan",
]

PLAN_VERSION: Literal[1] = 1
RunType = Literal["full_refresh", "merge", "backfill", "incremental"]
"""How a step runs: rebuild the table, merge by key, rewrite a window, or add missing batches."""
ChangeKind = Literal["added", "modified", "removed", "cosmetic", "metadata"]
"""How a model changed between the base and the target commit."""
RUN_TYPES: tuple[RunType, ...] = get_args(RunType)
CHANGE_KINDS: tuple[ChangeKind, ...] = get_args(ChangeKind)
DATA_CHANGES: frozenset[ChangeKind] = frozenset({"added", "modified"})
"""The changes that rebuild a model (and everything downstream of it); the others change no data."""
WatermarkRange = tuple[str, str]
"""A completed `[start, end)` range of the ledger, as instants in plan text (`2024-01-01T00:00:00Z`)."""

TOP_LEVEL_KEYS = frozenset(
    {"plan_version", "plan_id", "base", "target", "as_of", "inputs", "inputs_hash", "summary", "models", "steps"}
)
STEP_KEYS = frozenset(
    {"batch", "batches", "depends_on", "end", "kind", "materialization", "model", "model_hash", "parallel_group",
     "reason", "reset", "run_type", "start", "step_id"}
)


@dataclass(frozen=True)
class Step:
    """One unit of execution: a model, and for incremental models a contiguous range of batches."""

    model: str
    kind: Kind
    materialization: Materialization
    run_type: RunType
    start: str | None  # the range's first instant (plan text); None for a whole-table step
    end: str | None  # the range's end (exclusive)
    batch: BatchUnit | None  # the batch unit of an incremental model, else None
    batches: int
    reset: bool  # start from an empty table (first step of a backfill)
    model_hash: str
    depends_on: tuple[str, ...]  # step IDs, sorted
    reason: str
    parallel_group: int = 0  # the wave: one more than the latest wave of the steps it depends on

    def identity(self) -> dict[str, object]:
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

    def to_dict(self) -> dict[str, object]:
        """The step as it appears in the plan document."""
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


@dataclass(frozen=True)
class ModelChange:
    """One model's change between the base and the target commit (an entry of the plan's `models`)."""

    name: str
    change: ChangeKind
    old_hash: str | None  # None for an added model
    new_hash: str | None  # None for a removed model
    reason: str

    def to_dict(self) -> dict[str, object]:
        """The change as it appears in the plan document."""
        return {
            "change": self.change,
            "name": self.name,
            "new_hash": self.new_hash,
            "old_hash": self.old_hash,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Summary:
    """Counts of the plan's model changes (by kind) and of the work it plans."""

    added: int
    modified: int
    removed: int
    cosmetic: int
    metadata: int
    batches: int
    models_to_run: int
    steps: int
    waves: int

    @classmethod
    def of(cls, models: Sequence[ModelChange], steps: Sequence[Step]) -> Summary:
        """The summary of these changes and steps."""
        counts = {kind: sum(1 for change in models if change.change == kind) for kind in CHANGE_KINDS}
        return cls(
            added=counts["added"],
            modified=counts["modified"],
            removed=counts["removed"],
            cosmetic=counts["cosmetic"],
            metadata=counts["metadata"],
            batches=sum(s.batches for s in steps),
            models_to_run=len({s.model for s in steps}),
            steps=len(steps),
            waves=1 + max((s.parallel_group for s in steps), default=-1),
        )

    def to_dict(self) -> dict[str, object]:
        """The summary as it appears in the plan document."""
        return {
            "added": self.added,
            "batches": self.batches,
            "cosmetic": self.cosmetic,
            "metadata": self.metadata,
            "models_to_run": self.models_to_run,
            "modified": self.modified,
            "removed": self.removed,
            "steps": self.steps,
            "waves": self.waves,
        }


@dataclass(frozen=True)
class PlanInputs:
    """What decided the plan besides the two commits and `as_of`: the canonicalizer, the planner settings and
    the merged ledger of every model whose ledger the planner read."""

    canonicalizer: str
    planner: PlannerSettings
    watermarks: Mapping[str, tuple[WatermarkRange, ...]]

    def to_dict(self) -> dict[str, object]:
        """The inputs as they appear in the plan document."""
        return {
            "canonicalizer": self.canonicalizer,
            "planner": self.planner.to_dict(),
            "watermarks": {name: [list(r) for r in ranges] for name, ranges in self.watermarks.items()},
        }


@dataclass(frozen=True)
class Plan:
    """A plan: which models changed between `base` and `target`, and the steps that rebuild their data."""

    plan_id: str
    base: str  # the base commit SHA (all zeros: nothing deployed yet)
    target: str  # the target commit SHA
    as_of: str  # the instant (plan text) up to which incremental batches are complete
    inputs: PlanInputs
    inputs_hash: str
    summary: Summary
    models: tuple[ModelChange, ...]  # sorted by model name
    steps: tuple[Step, ...]  # in dependency order (ties by model name, then range start)
    plan_version: Literal[1] = PLAN_VERSION

    def body(self) -> dict[str, object]:
        """The document without `plan_id`: what the plan ID is the hash of."""
        return {
            "as_of": self.as_of,
            "base": self.base,
            "inputs": self.inputs.to_dict(),
            "inputs_hash": self.inputs_hash,
            "models": [m.to_dict() for m in self.models],
            "plan_version": self.plan_version,
            "steps": [s.to_dict() for s in self.steps],
            "summary": self.summary.to_dict(),
            "target": self.target,
        }

    def to_dict(self) -> dict[str, object]:
        """The whole plan document (JSON-able; `plan_codec.plan_to_json` writes it)."""
        return {**self.body(), "plan_id": self.plan_id}

    def step(self, step_id: str) -> Step | None:
        """The step with this ID, or None."""
        return next((s for s in self.steps if s.step_id == step_id), None)

    def changes(self, kind: ChangeKind) -> list[ModelChange]:
        """The model changes of one kind, by model name."""
        return [m for m in self.models if m.change == kind]

    @property
    def step_models(self) -> list[str]:
        """The distinct models the steps run, sorted."""
        return sorted({s.model for s in self.steps})


def inputs_hash(*, base: str, target: str, as_of: str, inputs: PlanInputs) -> str:
    """The hash of everything a plan was decided from: the commits, `as_of` and the inputs."""
    return sha256_json({"as_of": as_of, "base": base, "inputs": inputs.to_dict(), "target": target})


def new_plan(
    *, base: str, target: str, as_of: str, inputs: PlanInputs, models: Iterable[ModelChange], steps: Sequence[Step]
) -> Plan:
    """A plan of these changes and steps, with its summary, inputs hash and plan ID computed.

    Args:
        base: the base commit SHA.
        target: the target commit SHA.
        as_of: the instant (plan text) incremental batches run up to.
        inputs: the canonicalizer, planner settings and consulted watermarks.
        models: the model changes (sorted by name here).
        steps: the steps, already in dependency order with their waves.

    Returns:
        The plan, its `plan_id` the hash of its content.
    """
    changes = tuple(sorted(models, key=lambda c: c.name))
    unfinished = Plan(
        plan_id="",
        base=base,
        target=target,
        as_of=as_of,
        inputs=inputs,
        inputs_hash=inputs_hash(base=base, target=target, as_of=as_of, inputs=inputs),
        summary=Summary.of(changes, steps),
        models=changes,
        steps=tuple(steps),
    )
    return replace(unfinished, plan_id=sha256_json(unfinished.body()))
