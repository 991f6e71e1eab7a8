"""What an apply does about each batch given the warehouse's markers: done, record (never re-run) or run."""

from __future__ import annotations

from datetime import datetime

import pytest

from shared_core.core.planning.markers import (
    BatchAction,
    CommittedBatch,
    batch_action,
    reappend_conflict,
    reappend_refusal,
    replaces_by_time,
)
from shared_core.core.project.headers import parse_instant as t

JAN2, JAN3, JAN4 = t("2024-01-02"), t("2024-01-03"), t("2024-01-04")


def marker(plan: str, step: str, start: datetime | None = JAN2, end: datetime | None = JAN3, *,
           model_hash: str | None = "v1", rows: int = 7) -> CommittedBatch:
    return CommittedBatch("m.x", model_hash, start, end, plan, step, rows)


# (case, kind, run_type, recorded, markers, rerun) -> (action, rows)
CASES: list[tuple[str, str, str, bool, list[CommittedBatch], bool, tuple[BatchAction, int]]] = [
    ("nothing committed: run", "APPEND_ONLY", "incremental", False, [], False, ("run", 0)),
    ("this step committed and recorded it: done", "APPEND_ONLY", "incremental", True, [marker("p", "s")], False,
     ("done", 7)),
    ("this step committed it, never recorded (crash): record", "INCREMENTAL_BY_TIME_RANGE", "incremental", False,
     [marker("p", "s")], False, ("record", 7)),
    ("another plan appended this range: a catch-up records it", "APPEND_ONLY", "incremental", False,
     [marker("other", "s2")], False, ("record", 7)),
    ("another version of the model (canonicalizer bump) appended it: recorded too", "APPEND_ONLY", "incremental",
     False, [marker("other", "s2", model_hash="v0")], False, ("record", 7)),
    ("a marker from before markers carried the version: trusted", "APPEND_ONLY", "incremental", False,
     [marker("old", "s0", model_hash=None)], False, ("record", 7)),
    ("another plan wrote it for a time-range model: re-run (replaces the range)", "INCREMENTAL_BY_TIME_RANGE",
     "incremental", False, [marker("other", "s2")], False, ("run", 0)),
    ("a requested backfill of an appended range runs (replaces it)", "APPEND_ONLY", "backfill", False,
     [marker("other", "s2")], False, ("run", 0)),
    ("recorded, but the warehouse lost it (replaced file): run", "APPEND_ONLY", "incremental", True, [], False,
     ("run", 0)),
    ("a marker of another range does not count", "APPEND_ONLY", "incremental", False,
     [marker("other", "s2", JAN3, JAN4)], False, ("run", 0)),
    ("re-run asked for: run whatever is there", "APPEND_ONLY", "backfill", True, [marker("p", "s")], True,
     ("run", 0)),
    ("a full refresh committed by another plan runs again", "FULL_REFRESH", "full_refresh", False,
     [marker("other", "s2", None, None)], False, ("run", 0)),
]


@pytest.mark.parametrize(("case", "kind", "run_type", "recorded", "markers", "rerun", "expected"), CASES,
                         ids=[c[0] for c in CASES])
def test_batch_action(case: str, kind: str, run_type: str, recorded: bool, markers: list[CommittedBatch],
                      rerun: bool, expected: tuple[BatchAction, int]) -> None:
    start, end = (None, None) if kind == "FULL_REFRESH" else (JAN2, JAN3)
    assert batch_action(plan_id="p", step_id="s", kind=kind, run_type=run_type, start=start, end=end,
                        recorded=recorded, committed=markers, rerun=rerun) == expected


def test_non_incremental_batches_resume_by_their_own_marker_only() -> None:
    mine = marker("p", "s", None, None, rows=3)
    assert batch_action(plan_id="p", step_id="s", kind="FULL_REFRESH", run_type="full_refresh", start=None,
                        end=None, recorded=True, committed=[mine], rerun=False) == ("done", 3)


def test_only_append_only_models_without_a_time_column_refuse_to_append_twice() -> None:
    held = marker("other", "s2", JAN2, JAN4)
    assert reappend_conflict("APPEND_ONLY", None, JAN3, JAN4, [held]) == held  # overlaps part of it
    assert reappend_conflict("APPEND_ONLY", None, JAN4, t("2024-01-05"), [held]) is None  # touching is fine
    assert reappend_conflict("APPEND_ONLY", "ts", JAN3, JAN4, [held]) is None  # replaced by its time column
    assert reappend_conflict("INCREMENTAL_BY_TIME_RANGE", "ts", JAN3, JAN4, [held]) is None
    assert replaces_by_time("APPEND_ONLY", "ts") and replaces_by_time("INCREMENTAL_BY_TIME_RANGE", "ts")
    assert not replaces_by_time("APPEND_ONLY", None)


def test_the_refusal_names_the_model_the_ranges_the_plan_and_the_way_out() -> None:
    text = reappend_refusal("m.x", "models/x.sql", JAN3, JAN4, marker("a" * 64, "s2", JAN2, JAN4))
    assert text.startswith("m.x (models/x.sql): the warehouse already holds the rows appended for "
                           "[2024-01-02T00:00:00Z, 2024-01-04T00:00:00Z) (plan aaaaaaaaaaaa)")
    assert "[2024-01-03T00:00:00Z, 2024-01-04T00:00:00Z) is not appended again" in text
    assert "add '-- time_column: <column>'" in text and "\n" not in text
