"""Cron schedules of incremental models: when a schedule last fired, and which models are due.

Pure: the caller passes `now` (the timer's tick time). A model is due when its cron has fired and
complete batches before that fire time are missing from its ledger, gaps included, so a missed tick
(or ten) leaves no silent hole: the next tick plans everything that is missing, once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared_core.core.planning.intervals import Range, floor_batch, merge_ranges, subtract_ranges
from shared_core.core.planning.planner import complete_batches
from shared_core.core.project.models import Project

_BOUNDS = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))


def _field_values(field: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for part in field.split(","):
        base, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if base == "*":
            first, last = low, high
        elif "-" in base:
            first, last = (int(v) for v in base.split("-"))
        else:
            first = last = int(base)
            if step_text:
                last = high
        values.update(range(first, last + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class Cron:
    """A parsed 5-field cron expression (minute hour day-of-month month day-of-week), in UTC."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday (7 is folded into 0)
    any_day: bool
    any_weekday: bool

    @classmethod
    def parse(cls, text: str) -> Cron:
        """Parse a cron validated by the header parser.

        >>> sorted(Cron.parse("*/15 2 * * 1-5").minutes)
        [0, 15, 30, 45]
        """
        fields = text.split()
        values = [_field_values(f, low, high) for f, (low, high) in zip(fields, _BOUNDS, strict=True)]
        weekdays = frozenset(0 if d == 7 else d for d in values[4])
        return cls(values[0], values[1], values[2], values[3], weekdays, fields[2] == "*", fields[4] == "*")

    def _day_matches(self, moment: datetime) -> bool:
        weekday = (moment.weekday() + 1) % 7
        day_ok, weekday_ok = moment.day in self.days, weekday in self.weekdays
        if self.any_day or self.any_weekday:  # standard cron: both restricted means either matches
            return day_ok and weekday_ok
        return day_ok or weekday_ok

    def latest_fire(self, now: datetime, *, horizon_days: int = 400) -> datetime | None:
        """The last minute at or before `now` when this schedule fired (None within the horizon)."""
        day = now.replace(hour=0, minute=0, second=0, microsecond=0)
        for _ in range(horizon_days):
            if day.month in self.months and self._day_matches(day):
                for hour in sorted(self.hours, reverse=True):
                    for minute in sorted(self.minutes, reverse=True):
                        moment = day.replace(hour=hour, minute=minute)
                        if moment <= now:
                            return moment
            day -= timedelta(days=1)
        return None


@dataclass(frozen=True)
class DueModel:
    name: str
    fired_at: datetime  # the schedule's latest fire: the as_of of its catch-up
    missing: tuple[Range, ...]  # complete batches before fired_at the ledger lacks


def due_models(project: Project, ledger: Mapping[str, Sequence[Range]], now: datetime) -> list[DueModel]:
    """Incremental models with a cron whose latest fire leaves complete batches missing, by name."""
    due = []
    for name in sorted(project.models):
        header = project[name].header
        if not header.is_incremental or not header.cron or header.start is None:
            continue
        fired = Cron.parse(header.cron).latest_fire(now)
        if fired is None:
            continue
        window = (header.start, floor_batch(fired, header.batch))
        if window[1] <= window[0]:
            continue
        missing = subtract_ranges(window, complete_batches(merge_ranges(ledger.get(name, ())), header.batch))
        if missing:
            due.append(DueModel(name, fired, tuple(missing)))
    return due
