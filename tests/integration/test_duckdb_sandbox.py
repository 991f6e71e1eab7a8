"""The DuckDB session as a sandbox: settings fixed and locked, UTC whatever the host's TZ, errors without data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from shared_core.adapters.engines.duckdb import DuckDBExecutor
from shared_core.core.errors import ExecutionError
from shared_core.core.project.models import ModelSource, load_project

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]
EVENTS = """-- name: tz.events
-- kind: INCREMENTAL_BY_TIME_RANGE
-- time_column: ts
-- start: 2024-03-10
SELECT ts, hour(ts) AS h, CAST(date_trunc('DAY', ts) AS STRING) AS day_start, CAST(from_unixtime(0) AS STRING) AS epoch
FROM (
  SELECT CAST('2024-03-10 03:30:00+00:00' AS TIMESTAMP) AS ts
  UNION ALL SELECT CAST('2024-03-11 02:00:00+00:00' AS TIMESTAMP)
) AS s
WHERE ts >= '{{ start_date }}' AND ts < '{{ end_date }}'
"""
# Runs one batch [2024-03-10, 2024-03-11) and prints what it wrote and when the marker says it committed.
SCRIPT = f"""
import json, sys
from datetime import UTC, datetime
from shared_core.adapters.engines.duckdb import DuckDBExecutor
from shared_core.core.planning.markers import BatchMarker
from shared_core.core.project.headers import parse_instant
from shared_core.core.project.models import ModelSource, load_project

model = load_project([ModelSource("models/events.sql", {EVENTS!r})])["tz.events"]
executor = DuckDBExecutor(sys.argv[1])
executor.run_batch(model, start=parse_instant("2024-03-10"), end=parse_instant("2024-03-11"), reset=True,
                   marker=BatchMarker("plan", "step", "hash"))
rows = executor.conn.execute("SELECT CAST(ts AS VARCHAR), h, day_start, epoch FROM tz.events").fetchall()
(committed,) = executor.conn.execute("SELECT committed_at FROM _ironlayer.committed_batches").fetchone()
hours = round((committed - datetime.now(UTC).replace(tzinfo=None)).total_seconds() / 3600)
print(json.dumps({{"rows": [list(r) for r in rows], "marker_hours_from_utc": hours}}))
"""


def test_sessions_have_external_access_off_extensions_off_utc_and_a_locked_configuration(tmp_path: Path) -> None:
    executor = DuckDBExecutor(tmp_path / "w.duckdb")
    try:
        for conn in (executor.root, executor.conn):
            assert conn.execute(
                "SELECT current_setting('enable_external_access'), current_setting('autoinstall_known_extensions'), "
                "current_setting('autoload_known_extensions'), current_setting('allow_community_extensions'), "
                "current_setting('python_enable_replacements'), current_setting('lock_configuration'), "
                "current_setting('TimeZone')").fetchone() == (False, False, False, False, False, True, "UTC")
    finally:
        executor.close()


def test_python_variables_are_never_tables(tmp_path: Path) -> None:
    plain = duckdb.connect()
    secrets_rel = plain.sql("SELECT 'hunter2' AS password")  # noqa: F841  (DuckDB's Python client scans it by name)
    assert plain.execute("SELECT * FROM secrets_rel").fetchall() == [("hunter2",)]  # outside the sandbox it can
    executor = DuckDBExecutor(tmp_path / "w.duckdb")
    try:
        with pytest.raises(duckdb.CatalogException, match="secrets_rel"):
            executor.conn.execute("SELECT * FROM secrets_rel").fetchall()
    finally:
        executor.close()
        plain.close()


def test_a_second_executor_on_the_same_file_shares_the_locked_session(tmp_path: Path) -> None:
    first = DuckDBExecutor(tmp_path / "w.duckdb")
    second = DuckDBExecutor(tmp_path / "w.duckdb")  # one DuckDB instance per file and process: already locked
    try:
        second.conn.execute("CREATE TABLE t AS SELECT 1 AS x")
        assert first.conn.execute("SELECT x FROM t").fetchall() == [(1,)]
        with pytest.raises(duckdb.Error, match="locked"):
            second.conn.execute("SET GLOBAL TimeZone = 'America/New_York'")
    finally:
        second.close()
        first.close()


def test_a_warehouse_opened_without_the_sandbox_is_refused(tmp_path: Path) -> None:
    plain = duckdb.connect(str(tmp_path / "w.duckdb"))
    try:
        with pytest.raises(ExecutionError, match="cannot open warehouse"):
            DuckDBExecutor(tmp_path / "w.duckdb")
    finally:
        plain.close()


@pytest.mark.parametrize("zone", ["America/New_York", "Asia/Kolkata"])
def test_the_same_batch_gives_the_same_timestamps_under_any_host_time_zone(tmp_path: Path, zone: str) -> None:
    def run(tz: str) -> dict[str, object]:
        env = {**os.environ, "TZ": tz, "PYTHONPATH": str(ROOT)}
        done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / f"{tz.replace('/', '_')}.duckdb")],
                              env=env, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stderr
        result: dict[str, object] = json.loads(done.stdout)
        return result

    in_utc, elsewhere = run("UTC"), run(zone)
    assert elsewhere == in_utc
    assert in_utc == {
        "rows": [["2024-03-10 03:30:00+00", 3, "2024-03-10 00:00:00+00", "1970-01-01 00:00:00"]],
        "marker_hours_from_utc": 0,
    }


SOURCE = "CREATE TABLE landing.people AS SELECT 's3cr3t-alice@example.com' AS email, 'hunter2' AS note"


@pytest.mark.parametrize(
    ("body", "kept", "dropped"),
    [
        ("SELECT CAST(email AS INT) AS n FROM landing.people", ["Conversion Error at line 1"],
         ["s3cr3t", "alice", "example.com"]),
        ("SELECT CAST(note AS DATE) AS d FROM landing.people", ["Conversion Error"], ["hunter2"]),
        ("SELECT json_extract(note, '$.a') AS j FROM landing.people", ["Invalid Input Error"], ["hunter2"]),
        ("SELECT emial FROM landing.people", ['Binder Error at line 1', 'Referenced column "emial" not found'],
         ["Candidate", '"email"']),
    ],
)
def test_engine_errors_keep_class_and_position_but_never_data(
    tmp_path: Path, body: str, kept: list[str], dropped: list[str],
) -> None:
    executor = DuckDBExecutor(tmp_path / "w.duckdb")
    try:
        executor.conn.execute("CREATE SCHEMA landing")
        executor.conn.execute(SOURCE)
        text = f"-- name: mart.people\n-- kind: FULL_REFRESH\n-- sources: landing.people\n{body}\n"
        model = load_project([ModelSource("models/people.sql", text)])["mart.people"]
        with pytest.raises(ExecutionError) as caught:
            executor.run_batch(model, start=None, end=None, reset=False)
    finally:
        executor.close()
    message = str(caught.value)
    assert message.startswith("mart.people (models/people.sql): DuckDB error: ")
    assert message.endswith("; nothing was published")
    assert "\n" not in message
    for text in kept:
        assert text in message
    for text in dropped:
        assert text not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
