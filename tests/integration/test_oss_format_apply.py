"""The open-source-format fixture (tests/fixtures/oss_format) runs on DuckDB as planned, batch by batch.

Its incremental models have no `start`: the plan backfills the 30 days before `as_of`, and the executor
writes exactly the rows of those batches (INSERT_OVERWRITE by day included).
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from shared_core.adapters.engines.duckdb import DuckDBExecutor
from shared_core.adapters.git_writer import read_tree
from shared_core.core.planning.intervals import add_batches
from shared_core.core.planning.planner import ZERO_SHA, build_plan
from shared_core.core.project.config import PlannerSettings
from shared_core.core.project.headers import parse_instant
from shared_core.core.project.models import ModelSource, Project, load_project
from shared_core.ports import InlineAnalyzer

pytestmark = pytest.mark.integration
TARGET = Path(__file__).parents[1] / "fixtures" / "oss_format" / "target"


def test_the_plan_of_models_without_start_runs_exactly_its_batches(tmp_path: Path) -> None:
    project = load_project([ModelSource(path, text) for path, text in read_tree(TARGET).items()])
    plan = build_plan(Project({}), project, base_sha=ZERO_SHA, target_sha="t" * 40,
                      as_of=parse_instant("2024-03-02T12:00:00Z"), ledger={}, settings=PlannerSettings(),
                      analyzer=InlineAnalyzer())
    executor = DuckDBExecutor(tmp_path / "w.duckdb")
    try:
        for step in plan.steps:
            model = project[step.model]
            if step.start is None or step.end is None:
                executor.run_batch(model, start=None, end=None, reset=False)
                continue
            first, day, end = parse_instant(step.start), parse_instant(step.start), parse_instant(step.end)
            assert (day, end) == (parse_instant("2024-02-01"), parse_instant("2024-03-02"))  # 30 days back
            while day < end:
                executor.run_batch(model, start=day, end=add_batches(day, "day", 1), reset=step.reset and day == first)
                day = add_batches(day, "day", 1)
    finally:
        executor.close()
    conn = duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True)
    try:
        daily = conn.execute("SELECT CAST(ride_date AS VARCHAR), district, rides, riders, CAST(revenue AS VARCHAR), "
                             "avg_minutes FROM marts.rides_daily ORDER BY 1").fetchall()
        summary = conn.execute("SELECT busiest_station, active_riders FROM marts.fleet_summary").fetchall()
    finally:
        conn.close()
    # the ride of 2024-03-02 is after the last complete batch before as_of: not loaded yet
    assert daily == [("2024-03-01", "north", 2, 2, "8.50", 18.5)]
    assert summary == [("Harbour", 0)]
    assert dict(plan.inputs.watermarks) == {}
