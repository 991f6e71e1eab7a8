"""DuckDBExecutor on real DuckDB files: every kind, idempotent re-runs, write-audit-publish and batch markers."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from shared_core.adapters.engines.duckdb import DuckDBExecutor
from shared_core.core.errors import BlockedBatchError, ExecutionError
from shared_core.core.planning.markers import BatchMarker
from shared_core.core.project.headers import parse_instant as t
from shared_core.core.project.models import ModelSource, Project, load_project

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).parents[2] / "examples" / "shop" / "v1"


def shop() -> Project:
    return load_project([ModelSource(str(p.relative_to(EXAMPLES)), p.read_text("utf-8"))
                         for p in sorted(EXAMPLES.rglob("*.sql"))])


def build_all(executor: DuckDBExecutor, project: Project, as_of: str = "2024-01-10") -> None:
    for name in project.order:
        model = project[name]
        header = model.header
        if header.is_incremental:
            assert header.start is not None
            day = header.start
            while day < t(as_of):
                nxt = t(f"{day:%Y-%m}-{day.day + 1:02d}")
                executor.run_batch(model, start=day, end=nxt, reset=day == header.start)
                day = nxt
        else:
            executor.run_batch(model, start=None, end=None, reset=False)


def snapshot(path: Path) -> dict[str, list[tuple[object, ...]]]:
    conn = duckdb.connect(str(path), read_only=True)
    try:
        tables = conn.execute("SELECT table_schema || '.' || table_name FROM information_schema.tables "
                              "ORDER BY 1").fetchall()
        return {name: sorted(conn.execute(f"SELECT CAST(COLUMNS(*) AS VARCHAR) FROM {name}").fetchall(), key=repr)
                for (name,) in tables}
    finally:
        conn.close()


def test_every_kind_builds_and_a_rerun_gives_identical_tables(tmp_path: Path) -> None:
    project = shop()
    executor = DuckDBExecutor(tmp_path / "w.duckdb")
    build_all(executor, project)
    executor.close()
    first = snapshot(tmp_path / "w.duckdb")
    assert len(first["silver.orders"]) == 12 and len(first["silver.customers"]) == 6
    assert len(first["gold.daily_revenue"]) == 8  # 8 days with orders before 2024-01-10
    assert ("2024-01-01", "2", "155.50") in first["gold.daily_revenue"]
    assert len(first["silver.events"]) == 10
    assert sorted(first["gold.funnel"]) == [("checkout", "3", "3"), ("visit", "6", "7")]
    executor = DuckDBExecutor(tmp_path / "w.duckdb")
    build_all(executor, project)  # replace-range and merge are idempotent; append re-runs start from reset
    executor.close()
    assert snapshot(tmp_path / "w.duckdb") == first
    assert not any("__il_stage" in name for name in first)


def test_rerunning_one_time_range_batch_never_duplicates_rows(tmp_path: Path) -> None:
    project = shop()
    executor = DuckDBExecutor(tmp_path / "w.duckdb")
    build_all(executor, project)
    before = executor.conn.execute("SELECT count(*) FROM silver.orders").fetchone()
    for _ in range(3):
        executor.run_batch(project["silver.orders"], start=t("2024-01-03"), end=t("2024-01-04"), reset=False)
    after = executor.conn.execute("SELECT count(*) FROM silver.orders").fetchone()
    assert before == after == (12,)


def test_block_failure_keeps_the_previous_table_visible(tmp_path: Path) -> None:
    project = shop()
    executor = DuckDBExecutor(tmp_path / "w.duckdb")
    build_all(executor, project)
    good = executor.conn.execute("SELECT * FROM gold.customer_ltv ORDER BY customer_id").fetchall()
    broken_text = project["gold.customer_ltv"].text.replace("c.customer_id,\n    c.name", "NULL AS customer_id,\n    c.name")
    broken = load_project([ModelSource("m.sql", broken_text)] + [
        ModelSource(project[n].path, project[n].text) for n in project.order if n != "gold.customer_ltv"])
    with pytest.raises(BlockedBatchError) as caught:
        executor.run_batch(broken["gold.customer_ltv"], start=None, end=None, reset=False)
    assert "not_null(customer_id)@BLOCK (6 failing)" in str(caught.value)
    assert executor.conn.execute("SELECT * FROM gold.customer_ltv ORDER BY customer_id").fetchall() == good
    assert executor.conn.execute("SELECT count(*) FROM information_schema.tables WHERE table_name LIKE '__il_stage%'"
                                 ).fetchone() == (0,)


def test_sql_error_publishes_nothing(tmp_path: Path) -> None:
    project = shop()
    executor = DuckDBExecutor(tmp_path / "w.duckdb")
    build_all(executor, project)
    text = project["silver.orders"].text.replace("o.amount", "o.no_such_column")
    broken = load_project([ModelSource("silver/orders.sql", text)] + [
        ModelSource(project[n].path, project[n].text) for n in project.order if n != "silver.orders"])
    with pytest.raises(ExecutionError, match="DuckDB error"):
        executor.run_batch(broken["silver.orders"], start=t("2024-01-03"), end=t("2024-01-04"), reset=False)
    assert executor.conn.execute("SELECT count(*) FROM silver.orders").fetchone() == (12,)


def test_an_append_only_batch_with_a_time_column_replaces_its_range_when_run_again(tmp_path: Path) -> None:
    project = shop()
    executor = DuckDBExecutor(tmp_path / "w.duckdb")
    build_all(executor, project)
    before = executor.conn.execute("SELECT * FROM silver.events ORDER BY event_id").fetchall()
    for _ in range(3):
        executor.run_batch(project["silver.events"], start=t("2024-01-02"), end=t("2024-01-03"), reset=False)
    assert executor.conn.execute("SELECT * FROM silver.events ORDER BY event_id").fetchall() == before


BARE_LOG = ("-- name: mart.bare\n-- kind: APPEND_ONLY\n-- start: 2024-01-01\n"
            "SELECT 1 AS n FROM range(3) WHERE '{{ start_date }}' < '{{ end_date }}'\n")


def test_markers_are_keyed_by_model_version_and_range_and_a_reset_drops_them(tmp_path: Path) -> None:
    model = load_project([ModelSource("models/bare.sql", BARE_LOG)])["mart.bare"]
    executor = DuckDBExecutor(tmp_path / "w.duckdb")
    jan1, jan2, jan3 = t("2024-01-01"), t("2024-01-02"), t("2024-01-03")
    executor.run_batch(model, start=jan1, end=jan2, reset=True, marker=BatchMarker("p1", "s1", "v1"))
    executor.run_batch(model, start=jan2, end=jan3, reset=False, marker=BatchMarker("p2", "s2", "v1"))
    held = executor.committed_batches(["mart.bare", "other.model"])
    assert list(held) == ["mart.bare"]
    assert [(c.start, c.end, c.model_hash, c.plan_id, c.step_id, c.rows_written) for c in held["mart.bare"]] == [
        (jan1, jan2, "v1", "p1", "s1", 3), (jan2, jan3, "v1", "p2", "s2", 3)]
    executor.run_batch(model, start=jan1, end=jan2, reset=True, marker=BatchMarker("p3", "s3", "v2"))
    assert [(c.start, c.model_hash, c.plan_id) for c in executor.committed_batches(["mart.bare"])["mart.bare"]] == [
        (jan1, "v2", "p3")]  # rebuilt from empty: the other batches' rows, and markers, are gone
    assert executor.conn.execute("SELECT count(*) FROM mart.bare").fetchone() == (3,)


def test_an_append_only_batch_without_a_time_column_never_appends_over_a_committed_range(tmp_path: Path) -> None:
    model = load_project([ModelSource("models/bare.sql", BARE_LOG)])["mart.bare"]
    executor = DuckDBExecutor(tmp_path / "w.duckdb")
    executor.run_batch(model, start=t("2024-01-01"), end=t("2024-01-03"), reset=True,
                       marker=BatchMarker("p1", "s1", "v1"))
    with pytest.raises(ExecutionError) as caught:  # checked inside the batch's own transaction
        executor.run_batch(model, start=t("2024-01-02"), end=t("2024-01-03"), reset=False,
                           marker=BatchMarker("p2", "s2", "v1"))
    assert str(caught.value).startswith("mart.bare (models/bare.sql): the warehouse already holds the rows appended "
                                        "for [2024-01-01T00:00:00Z, 2024-01-03T00:00:00Z) (plan p1)")
    assert str(caught.value).endswith("; nothing was published")
    assert executor.conn.execute("SELECT count(*) FROM mart.bare").fetchone() == (3,)
    executor.run_batch(model, start=t("2024-01-03"), end=t("2024-01-04"), reset=False,
                       marker=BatchMarker("p2", "s2", "v1"))  # the next range appends
    assert executor.conn.execute("SELECT count(*) FROM mart.bare").fetchone() == (6,)
