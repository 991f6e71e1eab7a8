"""Cron schedules of incremental models: which models are due at a timer tick.

Pure: the caller passes `now` (the timer's tick time); `Cron` says when a model's schedule last fired.
A model is due when complete batches before that fire time are missing from its ledger, gaps included,
so a missed tick (or ten) leaves no silent hole: the next tick plans everything that is missing, once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from shared_core.core.planning.cron import Cron
from shared_core.core.planning.intervals import Range, floor_batch, merge_ranges, subtract_ranges
from shared_core.core.planning.planner import complete_batches, window_start
from shared_core.core.project.models import Project


@dataclass(frozen=True)
class DueModel:
    """An incremental model whose schedule fired with batches still missing."""

    name: str
    fired_at: datetime  # the schedule's latest fire: the as_of of its catch-up
    missing: tuple[Range, ...]  # complete batches before fired_at the ledger lacks


def due_models(project: Project, ledger: Mapping[str, Sequence[Range]], now: datetime) -> list[DueModel]:
    """Incremental models with a cron whose latest fire leaves complete batches missing, by name.

    Args:
        project: the models at the branch head; their `cron` headers are already validated.
        ledger: the completed ranges of each model.
        now: the tick time (UTC).

    Returns:
        One entry per due model, sorted by name, with its latest fire time and its missing batches.
    """
    due = []
    for name in sorted(project.models):
        header = project[name].header
        if not header.is_incremental or not header.cron:
            continue
        fired = Cron(header.cron).latest_fire(now)
        done = complete_batches(merge_ranges(ledger.get(name, ())), header.batch)
        window = (window_start(header, done, fired), floor_batch(fired, header.batch))
        if window[1] <= window[0]:
            continue
        missing = subtract_ranges(window, done)
        if missing:
            due.append(DueModel(name, fired, tuple(missing)))
    return due
