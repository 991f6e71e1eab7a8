"""The crash-safety argument of `DatabricksExecutor`, checked statement by statement: for every scenario, a
process that dies before or after any statement of a batch, followed by a new process that resumes as the
runner does (a batch whose marker committed is only recorded, anything else runs again), ends with exactly
the rows of an uninterrupted run, no duplicates, and no staging table left behind.

The warehouse is the DuckDB-backed stand-in (`warehouse_emulator`): one atomic commit per statement and
nothing across statements, which is what Databricks guarantees and all the argument relies on.
"""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

import pytest

from shared_core.adapters.engines.databricks import Credentials, DatabricksExecutor, Target
from shared_core.core.errors import BlockedBatchError, ExecutionError
from shared_core.core.planning.markers import BatchMarker, CommittedBatch
from tests.integration.parity_scenarios import DAY1, DAY2, SCENARIOS, Run, Scenario, normalize
from tests.integration.warehouse_emulator import Crash, Warehouse

pytestmark = pytest.mark.integration
MARKER = BatchMarker("p", "s", "h")


def executor_on(warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch) -> DatabricksExecutor:
    monkeypatch.setattr("databricks.sql.connect", warehouse.connect)
    return DatabricksExecutor(Target("adb-1.2.azuredatabricks.net", "/sql/1.0/warehouses/w", "lake"),
                              Credentials(token="dapi-test", source="test"), tenant="acme")


def run_model(executor: DatabricksExecutor, scenario: Scenario, index: int, *, resume: bool = False) -> None:
    """Run `scenario.runs[index]`'s batch of the model; with `resume`, as the runner resumes: a batch whose
    marker committed is not run again."""
    run = scenario.runs[index]
    start, end = scenario.window(run)
    marker = BatchMarker(f"plan-{scenario.name}", f"step-{index + 1}", f"hash-{scenario.name}")
    if resume and any(c.plan_id == marker.plan_id and c.step_id == marker.step_id and c.start == start
                      for c in executor.committed_batches([scenario.target]).get(scenario.target, [])):
        return
    with contextlib.suppress(BlockedBatchError):
        executor.run_batch(scenario.project(run)[scenario.target], start=start, end=end, reset=run.reset,
                           marker=marker)


def seed(executor: DatabricksExecutor, scenario: Scenario, index: int) -> None:
    executor.run_batch(scenario.project(scenario.runs[index])["raw.events"], start=None, end=None, reset=False)


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_a_crash_before_or_after_any_statement_resumes_to_the_same_rows(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch,
) -> None:
    last = len(scenario.runs) - 1
    probe = Warehouse()
    executor = executor_on(probe, monkeypatch)
    for index in range(last):
        seed(executor, scenario, index)
        run_model(executor, scenario, index)
    seed(executor, scenario, last)
    first = len(probe.log)
    run_model(executor, scenario, last)
    statements = len(probe.log) - first
    executor.close()
    assert statements >= 6
    for offset in range(statements):
        for phase in ("before", "after"):
            warehouse = Warehouse()
            executor = executor_on(warehouse, monkeypatch)
            for index in range(last):
                seed(executor, scenario, index)
                run_model(executor, scenario, index)
            seed(executor, scenario, last)
            warehouse.crash_at = (len(warehouse.log) + offset, phase)
            with pytest.raises(Crash):
                run_model(executor, scenario, last)
            warehouse.crash_at = None
            executor.close()
            resumed = executor_on(warehouse, monkeypatch)  # a new process
            run_model(resumed, scenario, last, resume=True)
            resumed.close()
            where = f"{scenario.name}: crash {phase} statement {offset + 1} of {statements}"
            assert normalize(warehouse.rows(f"lake.{scenario.target}")) == scenario.expected, where
            assert not [t for t in warehouse.tables() if "__il_" in t], where


def guarded_append(monkeypatch: pytest.MonkeyPatch) -> tuple[Warehouse, DatabricksExecutor, Scenario]:
    scenario = next(s for s in SCENARIOS if s.name == "append_only_without_time_column")
    warehouse = Warehouse()
    executor = executor_on(warehouse, monkeypatch)
    seed(executor, scenario, 0)
    run_model(executor, scenario, 0)
    seed(executor, scenario, 1)
    return warehouse, executor, scenario


def test_an_append_that_committed_before_its_marker_is_only_marked_on_resume(monkeypatch: pytest.MonkeyPatch) -> None:
    warehouse, executor, scenario = guarded_append(monkeypatch)
    first = len(warehouse.log)
    executor.run_batch(scenario.project(scenario.runs[1])[scenario.target], start=datetime(2024, 1, 2, tzinfo=UTC),
                       end=datetime(2024, 1, 3, tzinfo=UTC), reset=False, marker=MARKER)
    statements = [entry.sql for entry in warehouse.log[first:]]
    append = next(i for i, sql in enumerate(statements) if "INSERT INTO `lake`.`silver`.`ledger` SELECT" in sql)
    assert "DESCRIBE HISTORY" in statements[append - 2] and "'publishing'" not in statements[append - 1]
    assert warehouse.log[first + append - 1].parameters["state"] == "publishing"  # type: ignore[index]


def test_an_interrupted_append_the_history_cannot_explain_is_refused_not_guessed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    warehouse, executor, scenario = guarded_append(monkeypatch)
    model = scenario.project(scenario.runs[1])[scenario.target]
    window = {"start": datetime(2024, 1, 2, tzinfo=UTC), "end": datetime(2024, 1, 3, tzinfo=UTC)}
    first = len(warehouse.log)
    executor.run_batch(model, **window, reset=False, marker=MARKER)
    append = next(i for i, e in enumerate(warehouse.log[first:]) if "INSERT INTO `lake`.`silver`.`ledger` SELECT" in e.sql)
    warehouse2 = Warehouse()
    executor2 = executor_on(warehouse2, monkeypatch)
    seed(executor2, scenario, 0)
    run_model(executor2, scenario, 0)
    seed(executor2, scenario, 1)
    warehouse2.crash_at = (len(warehouse2.log) + append, "after")  # appended, not marked
    with pytest.raises(Crash):
        executor2.run_batch(model, **window, reset=False, marker=MARKER)
    warehouse2.crash_at = None
    warehouse2.db.execute("INSERT INTO lake.silver.ledger VALUES (99, 99)")  # someone else wrote the table
    warehouse2.history["lake.silver.ledger"].append({"version": 99, "operation": "WRITE",
                                                     "metrics": {"numOutputRows": "1"}})
    before = normalize(warehouse2.rows("lake.silver.ledger"))
    with pytest.raises(ExecutionError) as caught:
        executor_on(warehouse2, monkeypatch).run_batch(model, **window, reset=False, marker=MARKER)
    assert "may have appended batch" in str(caught.value) and "2 commit(s) since version" in str(caught.value)
    assert normalize(warehouse2.rows("lake.silver.ledger")) == before  # nothing appended twice, nothing removed


def test_committed_batches_come_from_the_marker_table(monkeypatch: pytest.MonkeyPatch) -> None:
    scenario = Scenario("markers", "", next(s for s in SCENARIOS if s.name == "append_only").model,
                        (Run(DAY1 + DAY2, "2024-01-01", "2024-01-02", reset=True),
                         Run(DAY1 + DAY2, "2024-01-02", "2024-01-03")), [])
    warehouse = Warehouse()
    executor = executor_on(warehouse, monkeypatch)
    for index in range(2):
        seed(executor, scenario, index)
        run_model(executor, scenario, index)
    day = [datetime(2024, 1, d, tzinfo=UTC) for d in (1, 2, 3)]
    assert executor.committed_batches(["silver.appended", "gold.other"]) == {"silver.appended": [
        CommittedBatch("silver.appended", "hash-markers", day[0], day[1], "plan-markers", "step-1", 2),
        CommittedBatch("silver.appended", "hash-markers", day[1], day[2], "plan-markers", "step-2", 2)]}
    seed(executor, scenario, 0)
    run_model(executor, scenario, 0)  # a reset: the table holds that batch only, and so do the markers
    assert [(c.start, c.step_id) for c in executor.committed_batches(["silver.appended"])["silver.appended"]] == [
        (day[0], "step-1")]
