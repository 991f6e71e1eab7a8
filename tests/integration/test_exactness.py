"""Exactly once at the edges, on real PostgreSQL and real DuckDB files: zero duplicate rows, nothing missing.

A crash at every point of a batch (raised from the real executor's own checkpoints), then a resume or a
catch-up by another plan; a backfill of a range already in the ledger, the same backfill twice, two
overlapping backfills (one after the other, and at once), `backfill --downstream`, and a warehouse whose
markers were written in the layout before they carried the model version. Each ends with the exact rows
(as a multiset) of a clean, uninterrupted run.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import duckdb
import pytest

from shared_core.adapters.engines.duckdb import SANDBOX_CONFIG, BatchResult, DuckDBExecutor
from shared_core.adapters.git_writer import commit_files, init_repo
from shared_core.adapters.local_git import LocalGitSource
from shared_core.adapters.postgres.store import PostgresStateStore, open_store
from shared_core.cli.main import main
from shared_core.core.planning.markers import BatchMarker
from shared_core.core.planning.plan import Plan
from shared_core.core.planning.plan_codec import load_plan, plan_to_json
from shared_core.core.project.headers import parse_instant as t
from shared_core.core.project.models import Model
from shared_core.ports import InlineAnalyzer
from shared_core.services.apply import RunOptions, StepOutcome, run_apply, verify_plan
from shared_core.services.plans import plan_backfill, plan_catchup

pytestmark = pytest.mark.integration

ZERO = "0" * 40
RAW = "-- name: raw.events\n-- kind: FULL_REFRESH\nSELECT * FROM VALUES {rows} AS v(id, ts, amount)\n"
WINDOW = "WHERE ts >= '{{ start_date }}' AND ts < '{{ end_date }}'"
#: The model that crashes or is backfilled, in each kind (all named mart.log).
LOGS = {
    "append": ("-- name: mart.log\n-- kind: APPEND_ONLY\n-- time_column: ts\n-- start: 2024-01-01\n"
               f"SELECT id, ts, amount FROM {{{{ ref('raw.events') }}}} {WINDOW}\n"),
    "append_bare": ("-- name: mart.log\n-- kind: APPEND_ONLY\n-- start: 2024-01-01\n"
                    f"SELECT id, amount FROM {{{{ ref('raw.events') }}}} {WINDOW}\n"),
    "time_range": ("-- name: mart.log\n-- kind: INCREMENTAL_BY_TIME_RANGE\n-- time_column: ts\n-- start: 2024-01-01\n"
                   f"SELECT id, ts, amount FROM {{{{ ref('raw.events') }}}} {WINDOW}\n"),
}
DAILY = """-- name: mart.daily
-- kind: INCREMENTAL_BY_TIME_RANGE
-- time_column: day
-- start: 2024-01-01
SELECT CAST(ts AS DATE) AS day, count(*) AS events, sum(amount) AS amount
FROM {{ ref('mart.log') }}
WHERE ts >= '{{ start_date }}' AND ts < '{{ end_date }}'
GROUP BY CAST(ts AS DATE)
"""
TOTALS = ("-- name: mart.totals\n-- kind: FULL_REFRESH\n"
          "SELECT sum(amount) AS total, count(*) AS days FROM {{ ref('mart.daily') }}\n")
SHARE = """-- name: mart.share
-- kind: INCREMENTAL_BY_TIME_RANGE
-- time_column: day
-- start: 2024-01-01
SELECT d.day, d.amount, t.total
FROM {{ ref('mart.daily') }} AS d CROSS JOIN {{ ref('mart.totals') }} AS t
WHERE d.day >= '{{ start_date }}' AND d.day < '{{ end_date }}'
"""
POINTS = ("staged", "written", "audited", "marked", "committed")


def raw_rows(days: int, fixed: Iterable[int] = ()) -> str:
    """Three rows a day from 2024-01-01; the days in `fixed` carry other amounts (upstream data fixed later)."""
    changed = set(fixed)
    return ", ".join(
        f"({day * 10 + k}, TIMESTAMP '2024-01-{day:02d} {k + 1:02d}:00:00', {day * 10 + k}.{75 if day in changed else 50})"
        for day in range(1, days + 1) for k in range(3)
    )


class Crash(RuntimeError):
    """Stands for the process dying at one point of one batch."""


@dataclass
class Env:
    url: str
    admin: str
    tenant: str
    repo: Path
    tmp: Path

    def commit(self, files: dict[str, str | None], when: str) -> str:
        return commit_files(self.repo, files, "change", when)


@pytest.fixture()
def env(database_url: str, admin_database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    tenant = f"t{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("IRONLAYER_DATABASE_URL", database_url)
    monkeypatch.setenv("IRONLAYER_MIGRATION_DATABASE_URL", admin_database_url)
    monkeypatch.setenv("IRONLAYER_TENANT", tenant)
    monkeypatch.setenv("IRONLAYER_HOME", str(tmp_path / "home"))
    return Env(database_url, admin_database_url, tenant, init_repo(tmp_path / "repo"), tmp_path)


def crashing(point: str, model: str, batch: int) -> Callable[[Path], DuckDBExecutor]:
    """An executor that crashes at `point` of the `batch`-th batch (from 1) of `model`."""

    class CrashingExecutor(DuckDBExecutor):
        seen = 0

        def _checkpoint(self, at: str, name: str) -> None:
            if at == point and name == model:
                CrashingExecutor.seen += 1
                if CrashingExecutor.seen == batch:
                    raise Crash(f"crash at {point} of batch {batch} of {model}")

    return CrashingExecutor


class RecordingExecutor(DuckDBExecutor):
    """The real executor, noting which batches it ran (model, batch start)."""

    ran: list[tuple[str, datetime | None]]

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.ran = []

    def run_batch(self, model: Model, *, start: datetime | None, end: datetime | None, reset: bool,
                  marker: BatchMarker | None = None) -> BatchResult:
        self.ran.append((model.name, start))
        return super().run_batch(model, start=start, end=end, reset=reset, marker=marker)


def apply(env: Env, plan: Plan, warehouse: str, *, engine: Callable[[Path], DuckDBExecutor] = DuckDBExecutor,
          tenant: str | None = None, rerun: bool = False) -> tuple[list[StepOutcome], DuckDBExecutor]:
    """Apply `plan` in-process as `ironlayer apply` does (verified against the repository), on `warehouse`."""
    verified = verify_plan(plan, LocalGitSource(env.repo), InlineAnalyzer(), where=str(env.repo))
    name = tenant or env.tenant
    executor = engine(env.tmp / warehouse)

    async def run() -> list[StepOutcome]:
        store = await open_store(env.url, env.admin, name)
        try:
            return await run_apply(verified, store, executor, RunOptions(tenant=name, parallelism=1, rerun=rerun),
                                   actor="test")
        finally:
            await store.close()

    try:
        return asyncio.run(run()), executor
    finally:
        executor.close()


_PLANS: dict[tuple[str, ...], Plan] = {}


def plan_file(env: Env, base: str, target: str, *extra: str) -> Plan:
    """`ironlayer plan` of two commits over an empty ledger file (a new branch needs no state store); once per
    commits and options (the same trees and times give the same commits in every test's repository)."""
    key = (base, target, *extra)
    if "--watermarks" in extra or key not in _PLANS:
        out, empty = env.tmp / f"plan-{uuid.uuid4().hex[:8]}.json", env.tmp / "empty.json"
        empty.write_text("{}")
        ledger_args = [] if "--watermarks" in extra else ["--watermarks", str(empty)]
        assert main(["plan", str(env.repo), base, target, "--out", str(out), "--no-cache", *ledger_args,
                     *extra]) == 0
        _PLANS[key] = load_plan(out.read_text(), str(out))
    return _PLANS[key]


def catch_up(env: Env, head: str, as_of: str) -> Plan:
    """The catch-up plan of mart.log over the tenant's ledger, as the schedule makes it."""
    return plan_catchup(LocalGitSource(env.repo), head, ["mart.log"], as_of=t(as_of),
                        ledger=run_on_store(env, lambda s: s.load_ledger(env.tenant)), analyzer=InlineAnalyzer())


def run_on_store(env: Env, action: Callable[[PostgresStateStore], Any]) -> Any:
    async def run() -> Any:
        store = await open_store(env.url, env.admin, env.tenant)
        try:
            return await action(store)
        finally:
            await store.close()

    return asyncio.run(run())


def ledger(env: Env, model: str = "mart.log") -> list[tuple[str, str]]:
    ranges = run_on_store(env, lambda s: s.load_ledger(env.tenant, [model])).get(model, [])
    return [(f"{s:%Y-%m-%d}", f"{e:%Y-%m-%d}") for s, e in ranges]


def query(env: Env, sql: str, *args: object) -> list[Any]:
    async def run() -> list[Any]:
        conn = await asyncpg.connect(env.admin)  # the owner: reads past row-level security
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    return asyncio.run(run())


def connect(path: Path) -> duckdb.DuckDBPyConnection:
    """A connection with the executor's settings (this process may still hold the file open through them)."""
    return duckdb.connect(str(path), config=dict(SANDBOX_CONFIG))


def tables(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every table but IronLayer's own, each as the sorted multiset of its rows (as text)."""
    conn = connect(path)
    try:
        names = conn.execute("SELECT table_schema || '.' || table_name FROM information_schema.tables "
                             "WHERE table_schema <> '_ironlayer' ORDER BY 1").fetchall()
        return {n: sorted(conn.execute(f"SELECT CAST(COLUMNS(*) AS VARCHAR) FROM {n}").fetchall(), key=repr)
                for (n,) in names}
    finally:
        conn.close()


def markers(path: Path, model: str = "mart.log") -> list[tuple[Any, ...]]:
    conn = connect(path)
    try:
        return conn.execute("SELECT CAST(range_start AS DATE)::VARCHAR, model_hash IS NULL, plan_id, rows_written "
                            "FROM _ironlayer.committed_batches WHERE model = ? ORDER BY range_start",
                            [model]).fetchall()
    finally:
        conn.close()


def cli_backfill(env: Env, start: str, end: str, *extra: str, warehouse: str = "w.duckdb") -> int:
    return main(["backfill", str(env.repo), "mart.log", "--start", start, "--end", end, "--warehouse",
                 str(env.tmp / warehouse), "--auto-approve", *extra])


def cli_apply(env: Env, plan: Plan, warehouse: str = "w.duckdb") -> int:
    path = env.tmp / f"apply-{plan.plan_id[:8]}.json"
    path.write_text(plan_to_json(plan))
    return main(["apply", str(path), "--repo", str(env.repo), "--warehouse", str(env.tmp / warehouse),
                 "--auto-approve"])


_CLEAN: dict[str, dict[str, list[tuple[Any, ...]]]] = {}


def clean(env: Env, plan: Plan, warehouse: str = "clean.duckdb") -> dict[str, list[tuple[Any, ...]]]:
    """The tables of `plan` applied without interruption on a fresh warehouse, for a fresh tenant (once per plan:
    the same commits give the same plan ID, and the same plan the same tables)."""
    if plan.plan_id not in _CLEAN:
        outcomes, _ = apply(env, plan, warehouse, tenant=env.tenant + "c")
        assert {o.status for o in outcomes} == {"success"}
        _CLEAN[plan.plan_id] = tables(env.tmp / warehouse)
    return _CLEAN[plan.plan_id]


# -- a crash at every point of a batch, then a resume or a catch-up ---------------------------------------


@pytest.mark.parametrize("then", ["resume", "catch_up"])
@pytest.mark.parametrize("variant", sorted(LOGS))
@pytest.mark.parametrize("point", POINTS)
def test_a_crash_at_any_point_of_a_batch_then_resume_or_catch_up_is_exact(
    env: Env, point: str, variant: str, then: str,
) -> None:
    head = env.commit({"models/raw.sql": RAW.format(rows=raw_rows(9)), "models/log.sql": LOGS[variant]},
                      "2024-01-10T12:00:00+00:00")
    plan = plan_file(env, ZERO, head)
    with pytest.raises(Crash):
        apply(env, plan, "w.duckdb", engine=crashing(point, "mart.log", batch=4))
    # the state store never heard of the 4th batch; the warehouse holds it exactly when the crash followed the commit
    assert ledger(env) == [("2024-01-01", "2024-01-04")]
    assert ("2024-01-04" in [m[0] for m in markers(env.tmp / "w.duckdb")]) == (point == "committed")

    follow_up = plan if then == "resume" else catch_up(env, head, "2024-01-10T12:00:00Z")
    if then == "catch_up":
        assert [(s.model, s.run_type, (s.start or "")[:10], (s.end or "")[:10]) for s in follow_up.steps] == [
            ("mart.log", "incremental", "2024-01-04", "2024-01-10")]
    outcomes, executor = apply(env, follow_up, "w.duckdb", engine=RecordingExecutor)
    assert {o.status for o in outcomes} <= {"success", "done"}
    assert isinstance(executor, RecordingExecutor)
    reran = ("mart.log", t("2024-01-04")) in executor.ran
    # a committed batch is recorded, never appended again; a time-range model's catch-up may replace it
    assert reran == (point != "committed" or (then == "catch_up" and variant == "time_range"))
    assert tables(env.tmp / "w.duckdb") == clean(env, plan)
    assert ledger(env) == [("2024-01-01", "2024-01-10")]
    recorded = query(env, "SELECT rows_written FROM runs WHERE tenant_id = $1 AND model = 'mart.log' "
                     "AND batch_start = '2024-01-04' AND status = 'success'", env.tenant)
    assert [r["rows_written"] for r in recorded] == [3]


def test_a_crash_after_the_commit_of_a_reset_batch_then_a_catch_up_is_exact(env: Env) -> None:
    head = env.commit({"models/raw.sql": RAW.format(rows=raw_rows(9)), "models/log.sql": LOGS["append_bare"]},
                      "2024-01-10T12:00:00+00:00")
    plan = plan_file(env, ZERO, head)
    assert [s.reset for s in plan.steps if s.model == "mart.log"] == [True]
    with pytest.raises(Crash):
        apply(env, plan, "w.duckdb", engine=crashing("committed", "mart.log", batch=1))
    assert ledger(env) == []
    outcomes, executor = apply(env, catch_up(env, head, "2024-01-10T12:00:00Z"), "w.duckdb", engine=RecordingExecutor)
    assert {o.status for o in outcomes} == {"success"}
    assert isinstance(executor, RecordingExecutor) and ("mart.log", t("2024-01-01")) not in executor.ran
    assert tables(env.tmp / "w.duckdb") == clean(env, plan)


# -- backfills ----------------------------------------------------------------------------------------------


def test_backfilling_a_range_in_the_ledger_replaces_it_with_the_fixed_upstream_data(env: Env) -> None:
    first = env.commit({"models/raw.sql": RAW.format(rows=raw_rows(9)), "models/log.sql": LOGS["append"]},
                       "2024-01-10T12:00:00+00:00")
    assert cli_apply(env, plan_file(env, ZERO, first)) == 0
    before = tables(env.tmp / "w.duckdb")["mart.log"]
    fixed = env.commit({"models/raw.sql": RAW.format(rows=raw_rows(9, fixed=[3, 4, 5]))}, "2024-01-10T13:00:00+00:00")
    push = plan_file(env, first, fixed, "--watermarks", str(write_ledger(env)))
    assert [s.model for s in push.steps] == ["raw.events"]  # appended history is never re-run by a push
    assert cli_apply(env, push) == 0
    assert tables(env.tmp / "w.duckdb")["mart.log"] == before

    assert cli_backfill(env, "2024-01-03", "2024-01-06") == 0
    expected = clean(env, plan_file(env, ZERO, fixed))
    assert tables(env.tmp / "w.duckdb") == expected  # days 3-5 replaced, the rest untouched, nothing twice
    assert tables(env.tmp / "w.duckdb")["mart.log"] != before
    assert ledger(env) == [("2024-01-01", "2024-01-10")]


@pytest.mark.parametrize("variant", ["append", "time_range"])
def test_the_same_backfill_twice_runs_twice_and_replaces_its_rows(env: Env, variant: str) -> None:
    head = env.commit({"models/raw.sql": RAW.format(rows=raw_rows(9)), "models/log.sql": LOGS[variant]},
                      "2024-01-10T12:00:00+00:00")
    assert cli_apply(env, plan_file(env, ZERO, head)) == 0
    for _ in range(2):
        assert cli_backfill(env, "2024-01-02", "2024-01-05") == 0
    attempts = query(env, "SELECT batch_start, max(attempt) AS n, count(*) FILTER (WHERE status = 'success') AS ok "
                     "FROM runs WHERE tenant_id = $1 AND model = 'mart.log' AND plan_id IN (SELECT plan_id FROM "
                     "plans WHERE tenant_id = $1 AND base = target) GROUP BY batch_start ORDER BY 1", env.tenant)
    assert [(f"{r['batch_start']:%d}", r["n"], r["ok"]) for r in attempts] == [("02", 2, 2), ("03", 2, 2), ("04", 2, 2)]
    assert tables(env.tmp / "w.duckdb") == clean(env, plan_file(env, ZERO, head))
    assert ledger(env) == [("2024-01-01", "2024-01-10")]


def test_overlapping_backfills_one_after_the_other_equal_one_clean_run(env: Env) -> None:
    head = env.commit({"models/raw.sql": RAW.format(rows=raw_rows(15)), "models/log.sql": LOGS["append"]},
                      "2024-01-16T00:00:00+00:00")
    assert cli_apply(env, plan_file(env, ZERO, head, "--as-of", "2024-01-01")) == 0  # raw.events only
    assert cli_backfill(env, "2024-01-01", "2024-01-10") == 0
    assert cli_backfill(env, "2024-01-05", "2024-01-15") == 0
    assert tables(env.tmp / "w.duckdb") == clean(env, plan_file(env, ZERO, head, "--as-of", "2024-01-15"))
    assert ledger(env) == [("2024-01-01", "2024-01-15")]


def test_overlapping_backfills_at_once_take_turns_and_equal_one_clean_run(env: Env) -> None:
    head = env.commit({"models/raw.sql": RAW.format(rows=raw_rows(15)), "models/log.sql": LOGS["append"]},
                      "2024-01-16T00:00:00+00:00")
    assert cli_apply(env, plan_file(env, ZERO, head, "--as-of", "2024-01-01")) == 0
    source, analyzer = LocalGitSource(env.repo), InlineAnalyzer()
    plans = [plan_backfill(source, head, "mart.log", t(a), t(b), analyzer=analyzer)[0]
             for a, b in (("2024-01-01", "2024-01-10"), ("2024-01-05", "2024-01-15"))]
    verified = [verify_plan(p, source, analyzer, where="repo") for p in plans]
    executor = DuckDBExecutor(env.tmp / "w.duckdb")

    async def both() -> None:
        store = await open_store(env.url, env.admin, env.tenant)
        try:  # two holders, as two processes would be: the range lock, not the process, keeps them apart
            results = await asyncio.gather(*(
                run_apply(v, store, executor, RunOptions(tenant=env.tenant, parallelism=1, holder=f"host:{n}",
                                                         rerun=True), actor="test")
                for n, v in enumerate(verified)))
        finally:
            await store.close()
        assert [{o.status for o in r} for r in results] == [{"success"}, {"success"}]

    try:
        asyncio.run(both())
    finally:
        executor.close()
    spans = query(env, "SELECT plan_id, min(started_at) AS a, max(finished_at) AS b FROM runs WHERE tenant_id = $1 "
                  "AND model = 'mart.log' GROUP BY plan_id ORDER BY a", env.tenant)
    assert len(spans) == 2 and spans[0]["b"] <= spans[1]["a"]  # one waited for the other's lock
    assert tables(env.tmp / "w.duckdb") == clean(env, plan_file(env, ZERO, head, "--as-of", "2024-01-15"))


def test_an_append_only_model_without_a_time_column_refuses_to_append_a_range_twice(
    env: Env, capsys: pytest.CaptureFixture[str],
) -> None:
    head = env.commit({"models/raw.sql": RAW.format(rows=raw_rows(15)), "models/log.sql": LOGS["append_bare"]},
                      "2024-01-16T00:00:00+00:00")
    assert cli_apply(env, plan_file(env, ZERO, head, "--as-of", "2024-01-01")) == 0
    assert cli_backfill(env, "2024-01-01", "2024-01-10") == 0
    once = tables(env.tmp / "w.duckdb")
    runs = query(env, "SELECT count(*) FROM runs WHERE tenant_id = $1", env.tenant)[0][0]
    capsys.readouterr()
    assert cli_backfill(env, "2024-01-05", "2024-01-15") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: mart.log (models/log.sql): the warehouse already holds the rows appended for "
                          "[2024-01-05T00:00:00Z, 2024-01-06T00:00:00Z)")
    assert "add '-- time_column: <column>'" in err and err.endswith("nothing was run\n") and err.count("\n") == 1
    assert tables(env.tmp / "w.duckdb") == once  # nothing ran, not even the new days
    assert query(env, "SELECT count(*) FROM runs WHERE tenant_id = $1", env.tenant)[0][0] == runs
    assert cli_backfill(env, "2024-01-10", "2024-01-15") == 0  # ranges it never appended are fine
    assert tables(env.tmp / "w.duckdb") == clean(env, plan_file(env, ZERO, head, "--as-of", "2024-01-15"))


def test_backfill_downstream_refreshes_what_reads_the_backfilled_range(env: Env) -> None:
    models: dict[str, str | None] = {"models/raw.sql": RAW.format(rows=raw_rows(9)), "models/log.sql": LOGS["append"],
              "models/daily.sql": DAILY, "models/totals.sql": TOTALS, "models/share.sql": SHARE}
    first = env.commit(models, "2024-01-10T12:00:00+00:00")
    assert cli_apply(env, plan_file(env, ZERO, first)) == 0
    fixed = env.commit({"models/raw.sql": RAW.format(rows=raw_rows(9, fixed=[3, 4, 5]))}, "2024-01-10T13:00:00+00:00")
    assert cli_apply(env, plan_file(env, first, fixed, "--watermarks", str(write_ledger(env)))) == 0
    expected = clean(env, plan_file(env, ZERO, fixed))

    assert cli_backfill(env, "2024-01-03", "2024-01-06") == 0  # the model alone
    alone = tables(env.tmp / "w.duckdb")
    assert alone["mart.log"] == expected["mart.log"]
    assert alone["mart.daily"] != expected["mart.daily"]  # what reads it still has the old amounts

    assert cli_backfill(env, "2024-01-03", "2024-01-06", "--downstream") == 0
    assert tables(env.tmp / "w.duckdb") == expected
    downstream = query(env, "SELECT DISTINCT model FROM runs WHERE tenant_id = $1 AND status = 'success' AND plan_id = "
                       "(SELECT plan_id FROM plans WHERE tenant_id = $1 ORDER BY created_at DESC LIMIT 1)", env.tenant)
    assert sorted(r["model"] for r in downstream) == ["mart.daily", "mart.log", "mart.share", "mart.totals"]
    assert ledger(env, "mart.share") == [("2024-01-01", "2024-01-10")]


def write_ledger(env: Env) -> Path:
    """The tenant's ledger as a `--watermarks` file (what `ironlayer plan` reads from the state store)."""
    ledger_all = run_on_store(env, lambda s: s.load_ledger(env.tenant))
    path = env.tmp / f"ledger-{uuid.uuid4().hex[:8]}.json"
    path.write_text(json.dumps({m: [[f"{s:%Y-%m-%dT%H:%M:%SZ}", f"{e:%Y-%m-%dT%H:%M:%SZ}"] for s, e in ranges]
                                for m, ranges in ledger_all.items()}))
    return path


# -- a warehouse with markers of the old layout (keyed by plan and step) ---------------------------------------

OLD_MARKERS = ("CREATE TABLE _ironlayer.committed_batches (plan_id VARCHAR NOT NULL, step_id VARCHAR NOT NULL, "
               "model VARCHAR NOT NULL, range_start TIMESTAMP, range_end TIMESTAMP, rows_written BIGINT NOT NULL, "
               "committed_at TIMESTAMP NOT NULL DEFAULT current_timestamp)")


def to_old_layout(path: Path) -> None:
    """Rewrite the warehouse's markers as the executor before model versions wrote them: same rows, old table."""
    conn = connect(path)
    try:
        rows = conn.execute("SELECT plan_id, step_id, model, range_start, range_end, rows_written, committed_at "
                            "FROM _ironlayer.committed_batches").fetchall()
        conn.execute("DROP TABLE _ironlayer.committed_batches")
        conn.execute(OLD_MARKERS)
        conn.executemany("INSERT INTO _ironlayer.committed_batches VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
    finally:
        conn.close()


def marker_columns(path: Path) -> list[str]:
    conn = connect(path)
    try:
        return [r[0] for r in conn.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = "
                                           "'_ironlayer' AND table_name = 'committed_batches' ORDER BY ordinal_position"
                                           ).fetchall()]
    finally:
        conn.close()


@pytest.mark.parametrize("then", ["resume", "catch_up"])
def test_old_markers_are_upgraded_in_place_and_a_batch_they_hold_is_never_appended_again(env: Env, then: str) -> None:
    head = env.commit({"models/raw.sql": RAW.format(rows=raw_rows(9)), "models/log.sql": LOGS["append_bare"]},
                      "2024-01-10T12:00:00+00:00")
    plan = plan_file(env, ZERO, head)
    with pytest.raises(Crash):  # the 5th batch committed in the warehouse, never recorded in the state store
        apply(env, plan, "w.duckdb", engine=crashing("committed", "mart.log", batch=5))
    to_old_layout(env.tmp / "w.duckdb")
    assert "model_hash" not in marker_columns(env.tmp / "w.duckdb")
    held = markers_old(env.tmp / "w.duckdb")
    assert [d for d, _ in held] == ["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05"]

    DuckDBExecutor(env.tmp / "w.duckdb").close()  # opening upgrades it
    DuckDBExecutor(env.tmp / "w.duckdb").close()  # and again: nothing left to do
    assert marker_columns(env.tmp / "w.duckdb")[-1] == "model_hash"
    upgraded = markers(env.tmp / "w.duckdb")
    assert [(d, unknown, plan_id) for d, unknown, plan_id, _ in upgraded] == [
        (d, True, plan_id) for d, plan_id in held]  # every old marker kept, its version unknown

    follow_up = plan if then == "resume" else catch_up(env, head, "2024-01-10T12:00:00Z")
    outcomes, executor = apply(env, follow_up, "w.duckdb", engine=RecordingExecutor)
    assert {o.status for o in outcomes} <= {"success", "done"}
    assert isinstance(executor, RecordingExecutor)
    assert [s for m, s in executor.ran if m == "mart.log"] == [t(f"2024-01-{d:02d}") for d in range(6, 10)]
    assert tables(env.tmp / "w.duckdb") == clean(env, plan)
    assert ledger(env) == [("2024-01-01", "2024-01-10")]
    # an old marker still stands for rows that are there: appending its range again is refused
    assert cli_backfill(env, "2024-01-02", "2024-01-03") == 2


def markers_old(path: Path) -> list[tuple[str, str]]:
    conn = connect(path)
    try:
        return [(str(d), p) for d, p in conn.execute(
            "SELECT CAST(range_start AS DATE)::VARCHAR, plan_id FROM _ironlayer.committed_batches "
            "WHERE model = 'mart.log' ORDER BY range_start").fetchall()]
    finally:
        conn.close()
