"""The one description of each kind and materialization (`materialize.describe_batch`), its contract checks,
and the Databricks rendering's choices that the golden SQL cannot show on its own (reset, first batch,
appends with and without a window, names outside the catalog)."""

from __future__ import annotations

import pytest

from shared_core.core.errors import ModelError
from shared_core.core.project.headers import ContractColumn
from shared_core.core.project.headers import parse_instant as t
from shared_core.core.project.models import Model, ModelSource, load_project
from shared_core.core.sql import contracts
from shared_core.core.sql.databricks_statements import DatabricksBatch, target_parts
from shared_core.core.sql.materialize import batch_id, builtin_test_query, describe_batch


def model(header: str, body: str = "SELECT 1 AS id, CAST('2024-01-01' AS TIMESTAMP) AS ts") -> Model:
    text = f"-- name: s.m\n{header}\n{body}\n"
    return load_project([ModelSource("models/m.sql", text)])["s.m"]


DAY = {"start": t("2024-01-01"), "end": t("2024-01-02")}

CASES = [
    ("-- kind: FULL_REFRESH", {}, "swap", None, ()),
    ("-- kind: FULL_REFRESH\n-- materialization: VIEW", {}, "view", None, ()),
    ("-- kind: FULL_REFRESH\n-- materialization: INSERT_OVERWRITE\n-- partition_by: id", {}, "swap", None, ()),
    ("-- kind: INCREMENTAL_BY_TIME_RANGE\n-- time_column: ts\n-- start: 2024-01-01", DAY, "replace_window", "ts", ()),
    ("-- kind: INCREMENTAL_BY_TIME_RANGE\n-- materialization: INSERT_OVERWRITE\n-- time_column: ts\n"
     "-- partition_by: ts\n-- start: 2024-01-01", DAY, "replace_window", "ts", ()),
    ("-- kind: APPEND_ONLY\n-- time_column: ts\n-- start: 2024-01-01", DAY, "replace_window", "ts", ()),
    ("-- kind: APPEND_ONLY\n-- start: 2024-01-01", DAY, "append", None, ()),
    ("-- kind: APPEND_ONLY\n-- materialization: INSERT_OVERWRITE\n-- partition_by: id\n-- start: 2024-01-01", DAY,
     "replace_partitions", None, ("id",)),
    ("-- kind: MERGE_BY_KEY\n-- materialization: MERGE\n-- unique_key: id", {}, "merge", None, ("id",)),
    ("-- kind: MERGE_BY_KEY\n-- unique_key: id, ts", {}, "merge", None, ("id", "ts")),
]


@pytest.mark.parametrize(("header", "window", "publish", "column", "keys"), CASES)
def test_each_kind_and_materialization_publishes_as_described(header: str, window: dict[str, object], publish: str,
                                                              column: str | None, keys: tuple[str, ...]) -> None:
    spec = describe_batch(model(header), start=window.get("start"), end=window.get("end"), reset=False)  # type: ignore[arg-type]
    assert (spec.publish, spec.window.column if spec.window else None, spec.keys) == (publish, column, keys)
    assert spec.idempotent == (publish != "append")


def test_reset_applies_to_tables_that_keep_rows_between_batches_only() -> None:
    assert describe_batch(model("-- kind: APPEND_ONLY\n-- start: 2024-01-01"), **DAY, reset=True).reset
    assert not describe_batch(model("-- kind: FULL_REFRESH"), start=None, end=None, reset=True).reset


def test_a_batch_id_is_stable_and_tells_batches_apart() -> None:
    assert batch_id("s.m", "p", "s", t("2024-01-01")) == batch_id("s.m", "p", "s", t("2024-01-01"))
    ids = {batch_id("s.m", "p", "s", t("2024-01-01")), batch_id("s.m", "p", "s", t("2024-01-02")),
           batch_id("s.m", "p", "s2", t("2024-01-01")), batch_id("s.n", "p", "s", t("2024-01-01"))}
    assert len(ids) == 4


def test_builtin_tests_quote_names_and_values_for_each_engine() -> None:
    from shared_core.core.project.headers import QualityTest

    test = QualityTest("accepted_values", "kind:it's|a\\b")
    assert builtin_test_query(test, "t", "duckdb") == "SELECT count(*) FROM t WHERE \"kind\" NOT IN ('it''s', 'a\\b')"
    assert builtin_test_query(test, "t", "databricks") == "SELECT count(*) FROM t WHERE `kind` NOT IN ('it\\'s', 'a\\\\b')"


def test_contract_checks_compare_types_by_meaning() -> None:
    check = contracts.ContractCheck(ContractColumn("amount", "DECIMAL(10,2)", not_null=True), "BLOCK")
    assert contracts.shape_violation(check, {"amount": "decimal(10, 2)"}) is None
    assert contracts.shape_violation(check, {"amount": "DECIMAL(18,3)"}) == "amount is DECIMAL(18,3), not DECIMAL(10,2)"
    assert contracts.failing_rows(check, {"amount": "decimal(10,2)"}, total_rows=9, null_rows=3) == 3
    assert contracts.failing_rows(check, {"amount": "double"}, total_rows=9, null_rows=0) == 9
    assert [contracts.canonical_type(t) for t in ("BIGINT", "long", "INT8", "TEXT", "timestamp with time zone")] == [
        "BIGINT", "BIGINT", "BIGINT", "STRING", "TIMESTAMP"]
    assert contracts.contract_checks(model("-- kind: FULL_REFRESH\n-- contract_columns: id:INT").header) == ()


def batch(header: str, **window: object) -> DatabricksBatch:
    spec = describe_batch(model(header), start=window.get("start"), end=window.get("end"), reset=False)  # type: ignore[arg-type]
    return DatabricksBatch(spec, catalog="main", batch="b1")


def test_the_first_batch_of_any_table_and_a_reset_are_a_swap_on_databricks() -> None:
    merge = batch("-- kind: MERGE_BY_KEY\n-- unique_key: id")
    assert merge.publish("q", ["id"], target_exists=False) == [
        "CREATE OR REPLACE TABLE `main`.`s`.`m` AS SELECT * FROM `main`.`s`.`__il_stage_m_b1`"]
    assert merge.create_audit_view(target_exists=False) == [
        "CREATE OR REPLACE TEMPORARY VIEW `__il_audit_b1` AS SELECT * FROM `main`.`s`.`__il_stage_m_b1`"]


def test_an_append_with_a_time_column_replaces_its_window_so_it_can_be_repeated() -> None:
    append = batch("-- kind: APPEND_ONLY\n-- time_column: ts\n-- start: 2024-01-01", **DAY)
    assert append.publish("q", ["id", "ts"], target_exists=True) == [
        "INSERT INTO `main`.`s`.`m` REPLACE WHERE `ts` >= TIMESTAMP '2024-01-01 00:00:00' AND "
        "`ts` < TIMESTAMP '2024-01-02 00:00:00' SELECT * FROM `main`.`s`.`__il_stage_m_b1`"]
    plain = batch("-- kind: APPEND_ONLY\n-- start: 2024-01-01", **DAY)
    assert plain.publish("q", ["id"], target_exists=True) == [
        "INSERT INTO `main`.`s`.`m` SELECT * FROM `main`.`s`.`__il_stage_m_b1`"]


def test_models_are_written_inside_the_catalog_only() -> None:
    assert target_parts("m", "main") == ("main", "default", "m")
    with pytest.raises(ModelError) as caught:
        target_parts("other.s.m", "main", path="models/m.sql")
    assert str(caught.value) == ("models/m.sql: model other.s.m names catalog other, but this repository writes to "
                                 "catalog main; name it s.m")
