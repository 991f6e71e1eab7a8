"""`ironlayer apply` end to end on real PostgreSQL and real DuckDB files.

Covers: identical tables on re-apply, crash and resume, serialized overlapping applies, stale plans,
BLOCK failures that keep old data and skip downstream, ledger gaps, and the confirmation prompt.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import asyncpg
import duckdb
import pytest

from shared_core.adapters.git_writer import commit_files, init_repo
from shared_core.adapters.postgres.store import PostgresStateStore
from shared_core.cli.main import main
from shared_core.core.planning.plan_codec import load_plan
from shared_core.core.project.headers import parse_instant as t
from tests.integration.seeding import record_completed

pytestmark = pytest.mark.integration

RAW = "-- name: raw.events\n-- kind: FULL_REFRESH\nSELECT * FROM VALUES {rows} AS v(id, ts, amount)\n"
DAILY = """-- name: mart.daily
-- kind: INCREMENTAL_BY_TIME_RANGE
-- time_column: day
-- start: 2024-01-01
-- tests: not_null(day), not_null(events)
SELECT CAST(ts AS DATE) AS day, count(*) AS events, sum(amount) AS amount
FROM {{ ref('raw.events') }}
WHERE ts >= '{{ start_date }}' AND ts < '{{ end_date }}'
GROUP BY CAST(ts AS DATE)
"""
TOTALS = ("-- name: mart.totals\n-- kind: FULL_REFRESH\n-- tests: not_null(total)\n"
          "SELECT sum(amount) AS total FROM {{ ref('mart.daily') }}\n")
LOOKUP = "-- name: ref.lookup\n-- kind: FULL_REFRESH\nSELECT 1 AS k, 'one' AS label\n"
LOG = """-- name: mart.log
-- kind: APPEND_ONLY
-- time_column: ts
-- start: 2024-01-01
SELECT id, ts FROM {{ ref('raw.events') }} WHERE ts >= '{{ start_date }}' AND ts < '{{ end_date }}'
"""


def raw_rows(days: int) -> str:
    rows = [f"({i}, TIMESTAMP '2024-01-{1 + i % days:02d} 10:00:00', {i}.5)" for i in range(days * 3)]
    return ", ".join(rows)


def commit(env: dict[str, Any], files: dict[str, str | None], when: str = "2024-01-10T12:00:00+00:00") -> str:
    return commit_files(env["repo"], files, "change", when)


def plan(env: dict[str, Any], base: str, target: str, name: str, *extra: str) -> Path:
    out: Path = env["tmp"] / name
    assert main(["plan", str(env["repo"]), base, target, "--out", str(out), "--no-cache", *extra]) == 0
    return out


def apply(env: dict[str, Any], plan_file: Path, warehouse: str = "w.duckdb", *extra: str) -> int:
    return main(["apply", str(plan_file), "--repo", str(env["repo"]), "--warehouse", str(env["tmp"] / warehouse),
                 "--auto-approve", *extra])


def tables(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    conn = duckdb.connect(str(path), read_only=True)
    try:
        names = conn.execute("SELECT table_schema || '.' || table_name FROM information_schema.tables "
                             "WHERE table_schema <> '_ironlayer' ORDER BY 1").fetchall()
        return {n: sorted(conn.execute(f"SELECT CAST(COLUMNS(*) AS VARCHAR) FROM {n}").fetchall(), key=repr)
                for (n,) in names}
    finally:
        conn.close()


def query(env: dict[str, Any], sql: str, *args: Any) -> list[Any]:
    async def run() -> list[Any]:
        conn = await asyncpg.connect(env["admin"])  # the owner: inspects and tampers past RLS
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    return asyncio.run(run())


def ledger(env: dict[str, Any], model: str) -> list[tuple[str, str]]:
    async def run() -> Any:
        store = PostgresStateStore(env["url"])
        try:
            return await store.load_ledger(env["tenant"], [model])
        finally:
            await store.close()

    return [(f"{s:%Y-%m-%d}", f"{e:%Y-%m-%d}") for s, e in asyncio.run(run()).get(model, [])]


def base_project(env: dict[str, Any], days: int = 9) -> str:
    return commit(env, {"models/raw.sql": RAW.format(rows=raw_rows(days)), "models/daily.sql": DAILY,
                        "models/totals.sql": TOTALS, "models/lookup.sql": LOOKUP})


def test_apply_builds_everything_and_a_second_apply_changes_nothing(env: dict[str, Any],
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    head = base_project(env)
    plan_file = plan(env, "0" * 40, head, "p1.json")
    assert apply(env, plan_file) == 0
    first = tables(env["tmp"] / "w.duckdb")
    assert len(first["mart.daily"]) == 9
    assert ledger(env, "mart.daily") == [("2024-01-01", "2024-01-10")]
    runs_before = query(env, "SELECT count(*) FROM runs WHERE tenant_id = $1", env["tenant"])[0][0]
    capsys.readouterr()
    assert apply(env, plan_file) == 0
    assert "done" in capsys.readouterr().out
    assert tables(env["tmp"] / "w.duckdb") == first
    assert query(env, "SELECT count(*) FROM runs WHERE tenant_id = $1", env["tenant"])[0][0] == runs_before
    statuses = query(env, "SELECT status FROM plans WHERE tenant_id = $1", env["tenant"])
    assert [r["status"] for r in statuses] == ["succeeded"]
    versions = query(env, "SELECT name, current_hash FROM models WHERE tenant_id = $1 ORDER BY name", env["tenant"])
    steps = {s.model: s.model_hash for s in load_plan(plan_file.read_text(), "p1.json").steps}
    assert {r["name"]: r["current_hash"] for r in versions} == steps


def test_block_failure_keeps_old_data_skips_downstream_and_lets_other_branches_finish(
    env: dict[str, Any], capsys: pytest.CaptureFixture[str],
) -> None:
    head = base_project(env)
    assert apply(env, plan(env, "0" * 40, head, "p1.json")) == 0
    good = tables(env["tmp"] / "w.duckdb")
    broken_daily = DAILY.replace("count(*) AS events", "CAST(NULL AS BIGINT) AS events")
    second = commit(env, {"models/daily.sql": broken_daily,
                          "models/lookup.sql": LOOKUP.replace("'one'", "'uno'")}, "2024-01-10T13:00:00+00:00")
    plan_file = plan(env, head, second, "p2.json")
    capsys.readouterr()
    assert apply(env, plan_file) == 1
    out = capsys.readouterr().out
    assert "not_null(events)@BLOCK" in out and "failed" in out and "skipped" in out
    after = tables(env["tmp"] / "w.duckdb")
    assert after["mart.daily"] == good["mart.daily"]  # readers still see the old data
    assert after["mart.totals"] == good["mart.totals"]  # downstream skipped, untouched
    assert after["ref.lookup"] == [("1", "uno")]  # the independent branch finished
    assert ledger(env, "mart.daily") == [("2024-01-01", "2024-01-10")]  # not advanced, not reset
    runs = query(env, "SELECT model, status FROM runs WHERE tenant_id = $1 AND plan_id = $2 ORDER BY run_id",
                 env["tenant"], load_plan(plan_file.read_text(), plan_file.name).plan_id)
    assert ("mart.daily", "failed") in [tuple(r) for r in runs]
    assert ("mart.totals", "skipped") in [tuple(r) for r in runs]
    failing = query(env, "SELECT test, severity, passed, failing_rows FROM test_results WHERE tenant_id = $1 "
                    "AND NOT passed", env["tenant"])
    assert [tuple(r) for r in failing] == [("not_null(events)@BLOCK", "BLOCK", False, 1)]


def test_stale_plan_is_refused(env: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    head = commit(env, {"models/raw.sql": RAW.format(rows=raw_rows(9)), "models/log.sql": LOG})
    assert apply(env, plan(env, "0" * 40, head, "p1.json")) == 0
    second = commit(env, {"models/raw.sql": RAW.format(rows=raw_rows(11))}, "2024-01-12T00:00:00+00:00")
    plan_file = plan(env, head, second, "p2.json")
    assert load_plan(plan_file.read_text(), "p2.json").inputs.watermarks == {  # the append-only log read its ledger
        "mart.log": (("2024-01-01T00:00:00Z", "2024-01-10T00:00:00Z"),)}

    async def other_apply() -> None:
        store = PostgresStateStore(env["url"])
        try:
            await record_completed(store, env["tenant"], "mart.log", t("2024-01-10"), t("2024-01-11"),
                                   plan_id="f" * 64)
        finally:
            await store.close()

    asyncio.run(other_apply())
    capsys.readouterr()
    assert apply(env, plan_file) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: stale plan ") and "mart.log moved since planning" in err and "re-plan" in err
    assert err.count("\n") == 1
    assert len(tables(env["tmp"] / "w.duckdb")["mart.log"]) == 27  # nothing ran


def test_ledger_gaps_are_planned_and_filled(env: dict[str, Any]) -> None:
    head = commit(env, {"models/raw.sql": RAW.format(rows=raw_rows(9)), "models/log.sql": LOG})
    assert apply(env, plan(env, "0" * 40, head, "p1.json")) == 0

    async def lose_runs() -> None:  # as if the runs of 01-03, 01-04 and from 01-08 on had never happened
        conn = await asyncpg.connect(env["admin"])  # the owner: inspects and tampers past RLS
        try:
            await conn.execute("DELETE FROM watermarks WHERE tenant_id = $1 AND model = 'mart.log'", env["tenant"])
            await conn.execute(
                "INSERT INTO watermarks (tenant_id, model, range_start, range_end) VALUES "
                "($1, 'mart.log', '2024-01-01', '2024-01-03'), ($1, 'mart.log', '2024-01-05', '2024-01-08')",
                env["tenant"])
        finally:
            await conn.close()

    asyncio.run(lose_runs())
    warehouse = duckdb.connect(str(env["tmp"] / "w.duckdb"))  # the rows, and their markers committed with them
    warehouse.execute("DELETE FROM mart.log WHERE (ts >= '2024-01-03' AND ts < '2024-01-05') OR ts >= '2024-01-08'")
    warehouse.execute("DELETE FROM _ironlayer.committed_batches WHERE model = 'mart.log' AND "
                      "((range_start >= '2024-01-03' AND range_start < '2024-01-05') OR range_start >= '2024-01-08')")
    warehouse.close()
    second = commit(env, {"models/raw.sql": RAW.format(rows=raw_rows(12))}, "2024-01-12T06:00:00+00:00")
    plan_file = plan(env, head, second, "p2.json")
    log_steps = [(s.start[:10], s.end[:10]) for s in load_plan(plan_file.read_text(), "p2.json").steps
                 if s.model == "mart.log" and s.start is not None and s.end is not None]
    assert log_steps == [("2024-01-03", "2024-01-05"), ("2024-01-08", "2024-01-12")]  # the gap and the tail
    assert apply(env, plan_file) == 0
    assert ledger(env, "mart.log") == [("2024-01-01", "2024-01-12")]
    conn = duckdb.connect(str(env["tmp"] / "w.duckdb"), read_only=True)
    per_day = conn.execute("SELECT CAST(ts AS DATE)::VARCHAR, count(*) FROM mart.log GROUP BY 1 ORDER BY 1").fetchall()
    conn.close()
    assert per_day == [(f"2024-01-{d:02d}", 3) for d in range(1, 12)]  # every day once: no gap, no duplicate


def test_a_locked_range_waits_then_fails_naming_the_holder(env: dict[str, Any],
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    head = base_project(env)

    async def hold() -> None:
        store = PostgresStateStore(env["url"])
        try:
            await store.ensure_tenant(env["tenant"], "t")
            lock_id, _ = await store.try_lock(env["tenant"], "raw.events", None, None, "build-host-7:4242", 600)
            assert lock_id is not None
        finally:
            await store.close()

    asyncio.run(hold())
    began = time.monotonic()
    assert apply(env, plan(env, "0" * 40, head, "p1.json"), "w.duckdb", "--lock-timeout", "1") == 1
    assert time.monotonic() - began >= 1.0
    out = capsys.readouterr().out
    assert "raw.events is locked by build-host-7:4242" in out
    assert not (env["tmp"] / "w.duckdb").exists() or "raw.events" not in tables(env["tmp"] / "w.duckdb")


def test_overlapping_concurrent_backfills_serialize(env: dict[str, Any]) -> None:
    """Two processes backfill overlapping ranges of one model; the range lock in PostgreSQL orders them.

    Each writes its own DuckDB file (DuckDB admits one writing process per file, which would serialize them
    anyway): the lock, not the file, must keep the overlapping ranges apart, as it does on Databricks.
    """
    head = base_project(env)
    for warehouse in ("a.duckdb", "b.duckdb"):
        assert apply(env, plan(env, "0" * 40, head, "p1.json"), warehouse) == 0
    slow = DAILY.replace("FROM {{ ref('raw.events') }}",
                         "FROM {{ ref('raw.events') }} CROSS JOIN (SELECT count(*) AS n FROM range(3000000)) AS slow")
    commit(env, {"models/daily.sql": slow}, "2024-01-10T14:00:00+00:00")
    command = [sys.executable, "-m", "shared_core.cli", "backfill", str(env["repo"]), "mart.daily",
               "--auto-approve", "--lock-timeout", "120"]
    ranges = (["--start", "2024-01-01", "--end", "2024-01-07", "--warehouse", str(env["tmp"] / "a.duckdb")],
              ["--start", "2024-01-04", "--end", "2024-01-10", "--warehouse", str(env["tmp"] / "b.duckdb")])
    children = [subprocess.Popen(command + r, env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                for r in ranges]
    outputs = [c.communicate(timeout=300)[0].decode() for c in children]
    assert [c.returncode for c in children] == [0, 0], outputs
    spans = query(env, "SELECT plan_id, min(started_at) AS a, max(finished_at) AS b FROM runs WHERE tenant_id = $1 "
                  "AND model = 'mart.daily' AND plan_id IN (SELECT plan_id FROM plans WHERE tenant_id = $1 "
                  "AND base = target) GROUP BY plan_id ORDER BY a", env["tenant"])
    assert len(spans) == 2
    assert spans[0]["b"] <= spans[1]["a"]  # the second waited for the first: no overlap in time
    assert ledger(env, "mart.daily") == [("2024-01-01", "2024-01-10")]


def test_killed_apply_resumes_to_the_same_tables_as_an_uninterrupted_run(env: dict[str, Any]) -> None:
    many = 40
    slow_daily = DAILY.replace(
        "FROM {{ ref('raw.events') }}",
        "FROM {{ ref('raw.events') }} CROSS JOIN (SELECT count(*) AS n FROM range(2000000)) AS slow")
    head = commit(env, {"models/raw.sql": RAW.format(rows=raw_rows(28)), "models/daily.sql": slow_daily,
                        "models/totals.sql": TOTALS}, f"2024-02-{many - 31 + 1:02d}T00:00:00+00:00")
    plan_file = plan(env, "0" * 40, head, "p1.json")
    plan_id = load_plan(plan_file.read_text(), plan_file.name).plan_id
    command = [sys.executable, "-m", "shared_core.cli", "apply", str(plan_file), "--repo", str(env["repo"]),
               "--warehouse", str(env["tmp"] / "crash.duckdb"), "--auto-approve"]
    child = subprocess.Popen(command, env=os.environ.copy(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        done = query(env, "SELECT count(*) FROM runs WHERE tenant_id = $1 AND plan_id = $2 AND model = 'mart.daily' "
                     "AND status = 'success'", env["tenant"], plan_id)[0][0]
        if done >= 5:
            break
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL
    partial = query(env, "SELECT count(*) FROM runs WHERE tenant_id = $1 AND plan_id = $2 AND status = 'success' "
                    "AND model = 'mart.daily'", env["tenant"], plan_id)[0][0]
    assert 5 <= partial < many  # killed in the middle of the step
    assert apply(env, plan_file, "crash.duckdb") == 0  # resume: locks of the dead process are broken at once
    resumed = tables(env["tmp"] / "crash.duckdb")
    interrupted = query(env, "SELECT count(*) FROM runs WHERE tenant_id = $1 AND plan_id = $2 AND status = 'failed' "
                        "AND error LIKE 'interrupted%'", env["tenant"], plan_id)[0][0]
    assert interrupted <= 1

    os.environ["IRONLAYER_TENANT"] = env["tenant"] + "b"  # a second tenant: an uninterrupted run from scratch
    try:
        assert apply(env, plan_file, "clean.duckdb") == 0
    finally:
        os.environ["IRONLAYER_TENANT"] = env["tenant"]
    assert resumed == tables(env["tmp"] / "clean.duckdb")
    assert len(resumed["mart.daily"]) == 28
    assert ledger(env, "mart.daily") == [("2024-01-01", f"2024-02-{many - 31 + 1:02d}")]


def test_apply_without_a_terminal_refuses_to_run(env: dict[str, Any], capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    head = base_project(env)
    plan_file = plan(env, "0" * 40, head, "p1.json")
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False)
    code = main(["apply", str(plan_file), "--repo", str(env["repo"]), "--warehouse", str(env["tmp"] / "w.duckdb")])
    assert code == 2
    assert "no terminal to ask; pass --auto-approve" in capsys.readouterr().err
    assert not (env["tmp"] / "w.duckdb").exists()


def test_plan_from_another_repository_is_refused(env: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    head = base_project(env)
    plan_file = plan(env, "0" * 40, head, "p1.json")
    other = init_repo(env["tmp"] / "other")
    commit_files(other, {"models/raw.sql": RAW.format(rows=raw_rows(2))}, "x", "2024-01-01T00:00:00+00:00")
    capsys.readouterr()
    assert main(["apply", str(plan_file), "--repo", str(other), "--auto-approve"]) == 2
    assert "unknown git ref" in capsys.readouterr().err


def test_warn_failures_are_recorded_and_shown_and_runs_and_status_report(
    env: dict[str, Any], capsys: pytest.CaptureFixture[str],
) -> None:
    warned = LOOKUP.replace("-- kind: FULL_REFRESH\n", "-- kind: FULL_REFRESH\n-- tests: row_count_min(100)@WARN\n")
    head = commit(env, {"models/lookup.sql": warned})
    plan_file = plan(env, "0" * 40, head, "p1.json")
    plan_id = load_plan(plan_file.read_text(), plan_file.name).plan_id
    capsys.readouterr()
    assert apply(env, plan_file) == 0  # a WARN failure does not fail the step
    out = capsys.readouterr().out
    assert "warn ref.lookup: row_count_min(100)@WARN failed (1 failing)" in out
    assert tables(env["tmp"] / "w.duckdb")["ref.lookup"] == [("1", "one")]  # published
    rows = query(env, "SELECT test, passed FROM test_results WHERE tenant_id = $1", env["tenant"])
    assert [tuple(r) for r in rows] == [("row_count_min(100)@WARN", False)]
    assert main(["runs", "--plan", plan_id[:10]]) == 0
    runs_out = capsys.readouterr().out
    assert plan_id[:12] in runs_out and "ref.lookup" in runs_out and "success" in runs_out
    assert main(["status"]) == 0
    status_out = capsys.readouterr().out
    assert plan_id[:12] in status_out and "succeeded" in status_out and "The ledger is empty." in status_out
