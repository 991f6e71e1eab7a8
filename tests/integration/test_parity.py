"""Parity of every kind and materialization: the same scenario on DuckDB (`DuckDBExecutor`) and through the
Databricks rendering (`DatabricksExecutor`, its connector answered by the DuckDB-backed warehouse stand-in)
ends with the same rows and the same test results, both equal to the expected rows written by hand; and the
exact Databricks SQL of each scenario is golden (`tests/fixtures/databricks_sql/<scenario>.sql`).

The golden SQL is what the executor sends, statement by statement, with its query tags and parameters.
Regenerate with `IRONLAYER_UPDATE_GOLDEN=1` and review every changed line against the Databricks SQL
reference (INSERT ... REPLACE WHERE / REPLACE USING, MERGE INTO, CREATE OR REPLACE TABLE ... AS,
CREATE TEMPORARY VIEW, DESCRIBE HISTORY, SHOW TABLES).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from shared_core.adapters.engines.databricks import Credentials, DatabricksExecutor, Target
from shared_core.adapters.engines.duckdb import DuckDBExecutor
from shared_core.core.errors import BlockedBatchError
from shared_core.core.planning.markers import BatchMarker
from tests.integration.parity_scenarios import SCENARIOS, Scenario, normalize
from tests.integration.warehouse_emulator import Warehouse

pytestmark = pytest.mark.integration

GOLDEN = Path(__file__).parents[1] / "fixtures" / "databricks_sql"
UPDATE = os.environ.get("IRONLAYER_UPDATE_GOLDEN") == "1"
HOST, HTTP_PATH = "adb-1234567890123456.7.azuredatabricks.net", "/sql/1.0/warehouses/abc123"


def databricks(warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch) -> DatabricksExecutor:
    monkeypatch.setattr("databricks.sql.connect", warehouse.connect)
    return DatabricksExecutor(Target(HOST, HTTP_PATH, "lake"), Credentials(token="dapi-test", source="test"),
                              tenant="acme")


def play(scenario: Scenario, executor: Any, on_run: Any = None) -> list[tuple[str, str, int]]:
    """Run the scenario; returns the last run's test results."""
    outcomes: tuple[Any, ...] = ()
    for index, run in enumerate(scenario.runs):
        project = scenario.project(run)
        executor.run_batch(project["raw.events"], start=None, end=None, reset=False)
        start, end = scenario.window(run)
        if on_run:
            on_run(index, run)
        try:
            outcomes = executor.run_batch(project[scenario.target], start=start, end=end, reset=run.reset,
                                          marker=BatchMarker(f"plan-{scenario.name}", f"step-{index + 1}",
                                                             f"hash-{scenario.name}")).tests
        except BlockedBatchError as exc:
            assert scenario.blocked and index == len(scenario.runs) - 1, str(exc)
            outcomes = exc.outcomes
    return [(o.test, o.severity, o.failing_rows) for o in outcomes]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_duckdb_and_the_databricks_rendering_end_with_the_same_rows_and_test_results(
    scenario: Scenario, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    duck = DuckDBExecutor(tmp_path / "w.duckdb")
    try:
        duck_tests = play(scenario, duck)
        duck_rows = normalize(duck.conn.execute(f"SELECT * FROM {scenario.target}").fetchall())
        duck_tables = {row[0] for row in duck.conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema <> '_ironlayer'").fetchall()}
    finally:
        duck.close()
    warehouse = Warehouse()
    executor = databricks(warehouse, monkeypatch)
    try:
        dbx_tests = play(scenario, executor)
    finally:
        executor.close()
    dbx_rows = normalize(warehouse.rows(f"lake.{scenario.target}"))
    assert duck_rows == scenario.expected
    assert dbx_rows == scenario.expected
    assert dbx_tests == duck_tests
    if scenario.tests is not None:
        assert duck_tests == scenario.tests
    assert not [t for t in warehouse.tables() if "__il_" in t]  # stages dropped, blocked or not
    assert not [t for t in duck_tables if "__il_" in t]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_golden_databricks_sql(scenario: Scenario, monkeypatch: pytest.MonkeyPatch) -> None:
    warehouse = Warehouse()
    executor = databricks(warehouse, monkeypatch)
    marks: list[tuple[int, int, Any]] = []

    def on_run(index: int, run: Any) -> None:
        marks.append((index, len(warehouse.log), run))

    try:
        play(scenario, executor, on_run)
    finally:
        executor.close()
    lines = [f"-- {scenario.name}: {scenario.about}", "-- model:",
             *[f"--   {line}" for line in scenario.model.strip().split(chr(10))]]
    bounds = [*[m[1] for m in marks[1:]], len(warehouse.log)]
    for (index, first, run), last in zip(marks, bounds, strict=True):
        window = f"[{run.start}, {run.end})" if run.start else "whole table"
        lines.append(f"\n-- run {index + 1}: {window}{', reset' if run.reset else ''}")
        tags = None
        for entry in warehouse.log[first:last]:
            if entry.tags and entry.tags.get("ironlayer_model") == "raw.events":
                continue  # the next run's seed
            if entry.tags != tags:
                tags = entry.tags
                lines.append(f"-- query tags: {json.dumps(tags, sort_keys=True)}")
            if entry.parameters:
                lines.append(f"-- parameters: {json.dumps(entry.parameters, sort_keys=True, default=str)}")
            lines.append(entry.sql + ";")
    text = "\n".join(lines) + "\n"
    path = GOLDEN / f"{scenario.name}.sql"
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, "utf-8")
    assert path.is_file(), f"{scenario.name}: run with IRONLAYER_UPDATE_GOLDEN=1 and review the SQL"
    assert text == path.read_text("utf-8"), (
        f"the Databricks SQL of '{scenario.name}' changed; if intended, regenerate with IRONLAYER_UPDATE_GOLDEN=1 "
        "and review every statement against the Databricks SQL reference")
