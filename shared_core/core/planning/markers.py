"""Batch markers: what a committed batch leaves in the warehouse, and what an apply does about each batch.

An executor writes a marker in the same engine transaction as a batch's rows, keyed by model version and
range (model name, model hash, `[start, end)`; no range for a non-incremental model), with the plan and
step that wrote it last. A model rebuilt from empty loses its markers with its rows, so a marker always
means "these rows are in the table". From the markers an apply decides, batch by batch (`batch_action`):

- `done`: this step committed the batch and the state store recorded it (an earlier apply of the plan);
- `record`: the rows are in the warehouse but the state store never heard of them (the process died
  between the engine's commit and the state record); the run and the ledger are recorded, nothing is
  re-run. That is this step's own batch on a resume, or, for an APPEND_ONLY model, that range of the
  model committed by any plan: appended history is never appended again (a catch-up after a crash);
- `run`: everything else, and every batch of an apply asked to re-run (`ironlayer backfill`), which
  replaces the range's rows: by `time_column` for INCREMENTAL_BY_TIME_RANGE and APPEND_ONLY models that
  have one. An APPEND_ONLY model without a time column cannot tell one batch's rows from another's, so
  re-running a range the warehouse already holds is refused (`reappend_conflict`, `reappend_refusal`).

Markers written before they carried the model version have no hash (`model_hash` None); they still name
their plan and step (a resume of that plan records them) and they still mean "these rows are there".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from shared_core.core.project.headers import format_instant

BatchAction = Literal["done", "record", "run"]


@dataclass(frozen=True)
class BatchMarker:
    """What an executor writes with a batch's rows: the model version, and the plan and step writing it."""

    plan_id: str
    step_id: str
    model_hash: str


@dataclass(frozen=True)
class CommittedBatch:
    """A marker read back from the warehouse: a batch whose rows are in the model's table."""

    model: str
    model_hash: str | None  # None: written before markers carried the model version
    start: datetime | None
    end: datetime | None
    plan_id: str
    step_id: str
    rows_written: int

    def overlaps(self, start: datetime | None, end: datetime | None) -> bool:
        """Whether this batch shares an instant with `[start, end)`; a batch without a range overlaps only
        another batch without one.

        >>> from shared_core.core.project.headers import parse_instant as t
        >>> batch = CommittedBatch("a.b", "h", t("2024-01-02"), t("2024-01-03"), "p", "s", 3)
        >>> batch.overlaps(t("2024-01-01"), t("2024-01-02")), batch.overlaps(t("2024-01-01"), t("2024-01-05"))
        (False, True)
        """
        if self.start is None or self.end is None or start is None or end is None:
            return self.start is None and start is None
        return self.start < end and start < self.end


def batch_action(
    *, plan_id: str, step_id: str, kind: str, run_type: str, start: datetime | None, end: datetime | None,
    recorded: bool, committed: Iterable[CommittedBatch], rerun: bool,
) -> tuple[BatchAction, int]:
    """What an apply does about one batch of a step, and the rows of the marker it relies on (0 for `run`).

    Args:
        plan_id: the plan applied.
        step_id: the step the batch belongs to.
        kind: the model's kind.
        run_type: the step's run type (`incremental`, `backfill`, ...).
        start: the batch's start (None for a non-incremental step).
        end: the batch's end (None for a non-incremental step).
        recorded: the state store holds a successful run of this batch of this plan and step.
        committed: the model's markers in the warehouse.
        rerun: the apply re-runs every batch (a backfill asked for again replaces what it wrote).

    >>> from shared_core.core.project.headers import parse_instant as t
    >>> marker = CommittedBatch("a.log", "h", t("2024-01-02"), t("2024-01-03"), "p1", "s1", 3)
    >>> batch_action(plan_id="p2", step_id="s2", kind="APPEND_ONLY", run_type="incremental",
    ...              start=t("2024-01-02"), end=t("2024-01-03"), recorded=False, committed=[marker], rerun=False)
    ('record', 3)
    >>> batch_action(plan_id="p1", step_id="s1", kind="APPEND_ONLY", run_type="backfill",
    ...              start=t("2024-01-02"), end=t("2024-01-03"), recorded=True, committed=[marker], rerun=True)
    ('run', 0)
    """
    if rerun:
        return "run", 0
    markers = [c for c in committed if c.start == start and c.end == end]
    mine = next((c for c in markers if c.plan_id == plan_id and c.step_id == step_id), None)
    if mine is not None:
        return ("done" if recorded else "record"), mine.rows_written
    if kind == "APPEND_ONLY" and run_type == "incremental" and markers:
        return "record", markers[0].rows_written
    return "run", 0


def replaces_by_time(kind: str, time_column: str | None) -> bool:
    """Whether a batch of this kind replaces its range's rows (by `time_column`) rather than only adding rows."""
    return kind == "INCREMENTAL_BY_TIME_RANGE" or (kind == "APPEND_ONLY" and bool(time_column))


def reappend_conflict(
    kind: str, time_column: str | None, start: datetime | None, end: datetime | None,
    committed: Sequence[CommittedBatch],
) -> CommittedBatch | None:
    """The committed batch that running `[start, end)` of an APPEND_ONLY model without a time column would
    append a second time, or None when running it appends nothing twice."""
    if kind != "APPEND_ONLY" or time_column or start is None:
        return None
    return next((c for c in committed if c.overlaps(start, end)), None)


def reappend_refusal(model: str, path: str, start: datetime, end: datetime, held: CommittedBatch) -> str:
    """The one-line refusal to append `[start, end)` of `model` again (see `reappend_conflict`).

    >>> from shared_core.core.project.headers import parse_instant as t
    >>> held = CommittedBatch("a.log", "h", t("2024-01-02"), t("2024-01-03"), "p" * 64, "s", 3)
    >>> reappend_refusal("a.log", "models/log.sql", t("2024-01-02"), t("2024-01-03"), held)[:60]
    'a.log (models/log.sql): the warehouse already holds the rows'
    """
    span = f"[{format_instant(start)}, {format_instant(end)})"
    committed = f"[{format_instant(held.start)}, {format_instant(held.end)})" if held.start and held.end else "it"
    return (
        f"{model} ({path}): the warehouse already holds the rows appended for {committed} (plan "
        f"{held.plan_id[:12]}), and an APPEND_ONLY model without a time_column cannot tell them apart to replace "
        f"them, so {span} is not appended again; add '-- time_column: <column>' to its header to make its ranges "
        "re-runnable (the model is then rebuilt), or leave the range as it is"
    )
