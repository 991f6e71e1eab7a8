"""`ironlayer apply --engine databricks`: a plan applies on Databricks through the same runner and services as on
DuckDB (real PostgreSQL state store; the connector answered by the DuckDB-backed warehouse stand-in), ends with
the same tables as `--engine duckdb`, resumes after a crash between a publish and its marker without
duplicating rows, and reads its workspace from the ecosystem's variables through `Settings`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shared_core.cli.main import main
from tests.integration.parity_scenarios import normalize
from tests.integration.test_apply import LOG, apply, base_project, commit, ledger, plan, tables
from tests.integration.warehouse_emulator import Crash, Warehouse

pytestmark = pytest.mark.integration

HOST, HTTP_PATH = "adb-1234567890123456.7.azuredatabricks.net", "/sql/1.0/warehouses/abc123"


@pytest.fixture()
def workspace(env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Warehouse:
    warehouse = Warehouse()
    monkeypatch.setattr("databricks.sql.connect", warehouse.connect)
    monkeypatch.setenv("DATABRICKS_HOST", f"https://{HOST}/")
    monkeypatch.setenv("DATABRICKS_HTTP_PATH", HTTP_PATH)
    monkeypatch.setenv("DATABRICKS_TOKEN", "dapi-test-token")
    return warehouse


def apply_databricks(env: dict[str, Any], plan_file: Path, *extra: str) -> int:
    return main(["apply", str(plan_file), "--repo", str(env["repo"]), "--engine", "databricks", "--catalog", "lake",
                 "--auto-approve", *extra])


def lake_tables(warehouse: Warehouse) -> dict[str, list[tuple[Any, ...]]]:
    return {name: normalize(warehouse.rows(f"lake.{name}")) for name in warehouse.tables()
            if not name.startswith("_ironlayer.")}


def test_a_plan_applies_on_databricks_as_on_duckdb_and_a_second_apply_changes_nothing(
    env: dict[str, Any], workspace: Warehouse, capsys: pytest.CaptureFixture[str],
) -> None:
    head = base_project(env, days=4)
    head = commit(env, {"models/log.sql": LOG})
    plan_file = plan(env, "0" * 40, head, "p1.json")
    assert apply(env, plan_file) == 0
    duck = {name: normalize([tuple(_typed(v) for v in row) for row in rows])
            for name, rows in tables(env["tmp"] / "w.duckdb").items()}
    capsys.readouterr()
    assert apply_databricks(env, plan_file) == 0
    out = capsys.readouterr().out
    assert f"Warehouse: Databricks {HOST}{HTTP_PATH}, catalog lake" in out
    lake = lake_tables(workspace)
    assert set(lake) == set(duck) == {"mart.daily", "mart.log", "mart.totals", "raw.events", "ref.lookup"}
    assert {name: [tuple(map(str, row)) for row in rows] for name, rows in lake.items()} == {
        name: [tuple(map(str, row)) for row in rows] for name, rows in duck.items()}
    connect = workspace.connects[0]
    assert (connect["server_hostname"], connect["http_path"], connect["catalog"], connect["access_token"]) == (
        HOST, HTTP_PATH, "lake", "dapi-test-token")
    tenant = env["tenant"]
    assert all(entry.tags and entry.tags["ironlayer_tenant"] == tenant for entry in workspace.log)
    assert all(entry.sql.startswith("/* ironlayer ") and f"tenant={tenant}" in entry.sql for entry in workspace.log)
    published = [e for e in workspace.log if "REPLACE WHERE" in e.sql or "CREATE OR REPLACE TABLE `lake`.`mart`" in e.sql]
    assert published and all({"ironlayer_plan", "ironlayer_step", "ironlayer_model"} <= set(e.tags or {})
                              for e in published)
    before = len(workspace.log)
    assert apply_databricks(env, plan_file) == 0  # every batch's marker committed: nothing runs again
    assert "done" in capsys.readouterr().out
    again = workspace.log[before:]
    assert not [e for e in again if "__il_stage" in e.sql]
    assert lake_tables(workspace) == lake


def test_a_crash_between_publish_and_marker_resumes_without_duplicates(
    env: dict[str, Any], workspace: Warehouse,
) -> None:
    head = base_project(env, days=4)
    head = commit(env, {"models/log.sql": LOG})
    plan_file = plan(env, "0" * 40, head, "p1.json")
    probe = Warehouse()
    _run_on(probe, env, plan_file)
    expected = lake_tables(probe)
    appends = [i for i, e in enumerate(probe.log) if e.sql.split("*/ ", 1)[1].startswith("INSERT INTO `lake`.`mart`.`log`")]
    assert appends  # the third day of mart.log: published, then the process dies before its marker
    workspace.crash_at = (appends[1], "after")
    with pytest.raises(Crash):
        apply_databricks(env, plan_file)
    workspace.crash_at = None
    assert apply_databricks(env, plan_file) == 0
    assert lake_tables(workspace) == expected
    assert ledger(env, "mart.log") == [("2024-01-01", "2024-01-10")]
    assert not [t for t in workspace.tables() if "__il_" in t]


def _run_on(warehouse: Warehouse, env: dict[str, Any], plan_file: Path) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("databricks.sql.connect", warehouse.connect)
        patch.setenv("IRONLAYER_TENANT", env["tenant"] + "probe")
        assert apply_databricks(env, plan_file) == 0


def test_missing_workspace_settings_are_named(env: dict[str, Any], capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DATABRICKS_HOST", "DATABRICKS_HTTP_PATH", "DATABRICKS_TOKEN", "DATABRICKS_CLIENT_ID",
                 "DATABRICKS_CLIENT_SECRET", "IRONLAYER_DATABRICKS_HOST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DATABRICKS_HOST", HOST)
    monkeypatch.setenv("DATABRICKS_CLIENT_ID", "sp-client")
    plan_file = plan(env, "0" * 40, base_project(env, days=2), "p1.json")
    capsys.readouterr()
    assert apply_databricks(env, plan_file) == 2
    assert capsys.readouterr().err.strip() == ("error: --engine databricks needs DATABRICKS_HTTP_PATH, "
                                               "DATABRICKS_CLIENT_SECRET in the environment")
    assert main(["apply", str(plan_file), "--repo", str(env["repo"]), "--catalog", "lake", "--auto-approve"]) == 2
    assert "--catalog is for --engine databricks" in capsys.readouterr().err


def _typed(value: str) -> Any:
    """DuckDB values read as text by `tables()`, back to numbers where they are numbers (and UTC timestamps
    without their `+00`, as `normalize` writes them)."""
    if isinstance(value, str) and value.endswith("+00"):
        return value.removesuffix("+00")
    try:
        number = float(value)
    except (TypeError, ValueError):
        return value
    return int(number) if number.is_integer() else number
