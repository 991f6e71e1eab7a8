"""Sessions in production conditions: the connector's retry budget and session settings set explicitly, each
statement's cost returned with the batch, running statements cancelled when the step is cancelled or
outlives the statement timeout (on Databricks, on DuckDB, and from the runner)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from shared_core.adapters.engines.databricks import Credentials, DatabricksExecutor, Limits, Target
from shared_core.adapters.engines.duckdb import DuckDBExecutor
from shared_core.core.errors import ExecutionError
from shared_core.core.planning.markers import BatchMarker
from shared_core.core.project.headers import parse_instant as t
from shared_core.core.project.models import Model, ModelSource, load_project
from shared_core.services.apply import _in_thread
from tests.integration.parity_scenarios import DAY1, seed
from tests.integration.warehouse_emulator import Warehouse

pytestmark = pytest.mark.integration

SLOW = "-- name: gold.slow\n-- kind: FULL_REFRESH\nSELECT count(*) AS n FROM range(100000000000) AS r\n"
DAILY = ("-- name: gold.daily\n-- kind: INCREMENTAL_BY_TIME_RANGE\n-- time_column: ts\n-- start: 2024-01-01\n"
         "SELECT id, ts FROM {{ ref('raw.events') }} WHERE ts >= '{{ start_date }}' AND ts < '{{ end_date }}'\n")


def project() -> dict[str, Model]:
    loaded = load_project([ModelSource("models/raw.sql", seed(DAY1)), ModelSource("models/slow.sql", SLOW),
                           ModelSource("models/daily.sql", DAILY)])
    return {name: loaded[name] for name in ("raw.events", "gold.slow", "gold.daily")}


def executor_on(warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch, limits: Limits | None = None,
                ) -> DatabricksExecutor:
    monkeypatch.setattr("databricks.sql.connect", warehouse.connect)
    return DatabricksExecutor(Target("adb-1.2.azuredatabricks.net", "/sql/1.0/warehouses/w", "lake"),
                              Credentials(token="dapi-test", source="test"), tenant="acme", limits=limits)


def test_the_connector_runs_with_an_explicit_retry_budget_utc_and_no_telemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    warehouse = Warehouse()
    executor_on(warehouse, monkeypatch, Limits(statement_timeout=900)).close()
    arguments = warehouse.connects[0]
    assert {key: arguments[key] for key in sorted(arguments) if key.startswith("_")} == {
        "_port": 443, "_retry_delay_default": 1.0, "_retry_delay_max": 5.0, "_retry_delay_min": 1.0,
        "_retry_stop_after_attempts_count": 5, "_retry_stop_after_attempts_duration": 30.0, "_socket_timeout": 120.0}
    assert arguments["session_configuration"] == {"TIMEZONE": "UTC", "STATEMENT_TIMEOUT": "900"}
    assert arguments["query_tags"] == {"ironlayer_tenant": "acme"}
    assert arguments["enable_telemetry"] is False and arguments["user_agent_entry"] == "ironlayer"
    assert "credentials_provider" not in arguments and arguments["access_token"] == "dapi-test"


def test_each_statement_of_a_batch_is_returned_with_its_time_rows_and_query_id(monkeypatch: pytest.MonkeyPatch) -> None:
    warehouse = Warehouse()
    executor = executor_on(warehouse, monkeypatch)
    models = project()
    executor.run_batch(models["raw.events"], start=None, end=None, reset=False)
    executor.run_batch(models["gold.daily"], start=t("2024-01-01"), end=t("2024-01-02"), reset=True)
    result = executor.run_batch(models["gold.daily"], start=t("2024-01-01"), end=t("2024-01-02"), reset=False,
                                marker=BatchMarker("p", "s", "h"))
    executor.close()
    labels = [s.label for s in result.statements]
    assert labels == ["setup", "setup", "stage", "count", "describe", "audit", "publish", "cleanup", "cleanup", "mark"]
    publish = result.statements[labels.index("publish")]
    assert publish.rows == 2 and publish.bytes is None and publish.seconds > 0
    assert all(s.query_id and s.query_id.startswith("q-") for s in result.statements)
    assert result.statements[labels.index("count")].rows == 1  # a query reports the rows it returned


def slow_statement_is_cancelled(executor: Any, model: Model, cancel: Any) -> tuple[float, str]:
    timer = threading.Timer(0.5, cancel)
    timer.start()
    began = time.monotonic()
    with pytest.raises(ExecutionError) as caught:
        executor.run_batch(model, start=None, end=None, reset=False)
    timer.cancel()
    return time.monotonic() - began, str(caught.value)


def test_cancel_stops_the_running_statement_and_everything_after_it(monkeypatch: pytest.MonkeyPatch) -> None:
    warehouse = Warehouse()
    executor = executor_on(warehouse, monkeypatch)
    models = project()
    seconds, message = slow_statement_is_cancelled(executor, models["gold.slow"], executor.interrupt)
    assert seconds < 5 and message == "gold.slow: cancelled; nothing was published"
    with pytest.raises(ExecutionError, match="cancelled"):
        executor.run_batch(models["raw.events"], start=None, end=None, reset=False)
    executor.close()


def test_a_statement_past_the_statement_timeout_is_cancelled(monkeypatch: pytest.MonkeyPatch) -> None:
    warehouse = Warehouse()
    executor = executor_on(warehouse, monkeypatch, Limits(statement_timeout=0.3, cancel_grace=0.2))
    began = time.monotonic()
    with pytest.raises(ExecutionError) as caught:
        executor.run_batch(project()["gold.slow"], start=None, end=None, reset=False)
    assert time.monotonic() - began < 5
    assert str(caught.value) == ("gold.slow (models/slow.sql): a statement ran past the statement timeout (0.3s) "
                                 "and was cancelled; nothing was published")
    executor.close()


def test_duckdb_cancels_too(tmp_path: Any) -> None:
    executor = DuckDBExecutor(tmp_path / "w.duckdb")
    seconds, message = slow_statement_is_cancelled(executor, project()["gold.slow"], executor.interrupt)
    executor.close()
    assert seconds < 5 and message == "gold.slow: cancelled; nothing was published"


def test_a_cancelled_step_cancels_its_running_statement(tmp_path: Any) -> None:
    executor = DuckDBExecutor(tmp_path / "w.duckdb")

    async def cancel_soon() -> float:
        task = asyncio.ensure_future(_in_thread(executor, project()["gold.slow"], None, None, False,
                                                 BatchMarker("p", "s", "h")))
        await asyncio.sleep(0.5)
        task.cancel()
        began = time.monotonic()
        with pytest.raises(asyncio.CancelledError):
            await task
        return began

    began = asyncio.run(cancel_soon())  # asyncio.run waits for the worker thread: it ends because it was cancelled
    assert time.monotonic() - began < 5
    executor.close()


def test_a_batch_that_fails_mid_way_leaves_no_stage_and_the_target_as_it_was(monkeypatch: pytest.MonkeyPatch) -> None:
    warehouse = Warehouse()
    executor = executor_on(warehouse, monkeypatch)
    models = project()
    executor.run_batch(models["raw.events"], start=None, end=None, reset=False)
    executor.run_batch(models["gold.daily"], start=t("2024-01-01"), end=t("2024-01-02"), reset=True)
    before = warehouse.rows("lake.gold.daily")
    broken = load_project([ModelSource("models/raw.sql", seed(DAY1)), ModelSource("models/daily.sql", DAILY.replace(
        "-- start: 2024-01-01\n", "-- start: 2024-01-01\n-- tests: custom_sql(SELECT * FROM {model} WHERE nope > 0)\n"))])
    with pytest.raises(ExecutionError) as caught:
        executor.run_batch(broken["gold.daily"], start=t("2024-01-01"), end=t("2024-01-02"), reset=False,
                           marker=BatchMarker("p", "s", "h"))
    executor.close()
    assert str(caught.value).endswith("nothing was published") and "models/daily.sql" in str(caught.value)
    assert warehouse.rows("lake.gold.daily") == before
    assert not [name for name in warehouse.tables() if "__il_" in name]
    assert "DROP TABLE IF EXISTS `lake`.`gold`.`__il_stage_daily_" in warehouse.log[-1].sql


def test_a_marker_write_that_conflicts_with_another_batchs_is_repeated_not_the_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.integration.warehouse_emulator import FakeCursor

    warehouse = Warehouse()
    executor = executor_on(warehouse, monkeypatch)
    models = project()
    executor.run_batch(models["raw.events"], start=None, end=None, reset=False)
    real_run = FakeCursor._run
    conflicts = [1]

    def conflicting(self: FakeCursor, sql: str, parameters: dict[str, Any]) -> None:
        if "MERGE INTO `lake`.`_ironlayer`.`committed_batches`" in sql and conflicts:
            conflicts.pop()
            raise RuntimeError("[DELTA_CONCURRENT_APPEND] ConcurrentAppendException: Files were added to the root "
                               "of the table by a concurrent update. SQLSTATE: 2D521")
        real_run(self, sql, parameters)

    monkeypatch.setattr(FakeCursor, "_run", conflicting)
    first = len(warehouse.log)
    result = executor.run_batch(models["gold.daily"], start=t("2024-01-01"), end=t("2024-01-02"), reset=True,
                                marker=BatchMarker("p", "s", "h"))
    executor.close()
    sent = [entry.sql for entry in warehouse.log[first:]]
    assert result.rows_written == 2 and not conflicts
    assert sum("MERGE INTO `lake`.`_ironlayer`" in sql for sql in sent) == 2  # the marker, once more
    assert sum("CREATE OR REPLACE TABLE `lake`.`gold`.`daily`" in sql for sql in sent) == 1  # published once
