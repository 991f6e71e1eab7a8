"""`due_models`: which incremental models a timer tick plans, from each model's cron and ledger."""

from __future__ import annotations

from datetime import UTC, datetime

from shared_core.core.planning.schedules import DueModel, due_models
from shared_core.core.project.models import ModelSource, Project, load_project


def _project(**crons: str | None) -> Project:
    sources = [ModelSource("models/base.sql", "-- name: s.base\n-- kind: FULL_REFRESH\nSELECT 1 AS d\n")]
    for name, cron in crons.items():
        header = f"-- name: s.{name}\n-- kind: INCREMENTAL_BY_TIME_RANGE\n-- time_column: d\n-- start: 2024-01-01\n"
        if cron is not None:
            header += f"-- cron: {cron}\n"
        sources.append(ModelSource(f"models/{name}.sql", header + "SELECT d FROM {{ ref('s.base') }}\n"))
    return load_project(sources)


def at(day: int, hour: int = 0, minute: int = 0, month: int = 1) -> datetime:
    return datetime(2024, month, day, hour, minute, tzinfo=UTC)


def test_a_model_is_due_from_its_latest_fire_with_every_missing_batch() -> None:
    project = _project(daily="0 3 * * *", never=None)
    due = due_models(project, {"s.daily": [(at(1), at(3))]}, at(5, 2, 59))
    assert due == [DueModel("s.daily", at(4, 3), ((at(3), at(4)),))]  # fired 4 Jan 03:00; 4 Jan not complete yet


def test_missed_ticks_and_gaps_are_planned_at_once() -> None:
    project = _project(daily="0 3 * * *")
    ledger = {"s.daily": [(at(1), at(2)), (at(4), at(5))]}
    due = due_models(project, ledger, at(8, 3))  # at the fire time itself: the fire counts
    assert due == [DueModel("s.daily", at(8, 3), ((at(2), at(4)), (at(5), at(8))))]


def test_nothing_is_due_when_the_ledger_is_complete_up_to_the_fire() -> None:
    project = _project(daily="0 3 * * *")
    assert due_models(project, {"s.daily": [(at(1), at(8))]}, at(8, 4)) == []
    assert due_models(project, {}, at(1, 5)) == []  # the first batch is not complete yet


def test_day_fields_restricted_on_both_sides_fire_on_either() -> None:
    project = _project(first_or_monday="0 6 1 * 1")  # 1 January 2024 is a Monday
    due = due_models(project, {"s.first_or_monday": [(at(1), at(8))]}, at(20, 12))
    assert due == [DueModel("s.first_or_monday", at(15, 6), ((at(8), at(15)),))]


def test_models_are_listed_by_name_with_their_own_fire_times() -> None:
    project = _project(hourly="*/30 * * * *", monthly="0 0 1 * *")
    due = due_models(project, {}, at(3, 10, 45, month=2))
    assert [(d.name, d.fired_at) for d in due] == [("s.hourly", at(3, 10, 30, month=2)), ("s.monthly", at(1, month=2))]
    assert due[1].missing == ((at(1), at(1, month=2)),)


def test_a_leap_day_schedule_is_found_years_back() -> None:
    project = _project(leap="0 0 29 2 *")
    due = due_models(project, {"s.leap": [(at(1), at(29, month=2))]}, datetime(2025, 6, 1, tzinfo=UTC))
    assert due == []  # its latest fire is 29 Feb 2024, and everything before it is done
    due = due_models(project, {"s.leap": [(at(1), at(28, month=2))]}, datetime(2027, 6, 1, tzinfo=UTC))
    assert due == [DueModel("s.leap", at(29, month=2), ((at(28, month=2), at(29, month=2)),))]
