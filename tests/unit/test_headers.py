"""Header parsing and validation: every key, every error names its file and line."""

from __future__ import annotations

import pytest

from shared_core.core.errors import ModelError
from shared_core.core.project.headers import QualityTest, parse_header, split_top_level

FULL = """
-- name: Analytics.Orders_Daily
-- kind: incremental_by_time_range
-- materialization: insert_overwrite
-- time_column: Order_Date
-- partition_by: order_date
-- start: 2024-01-01
-- batch: DAY
-- lookback: 2
-- cron: 0 3 * * *
-- owner: finance
-- tags: gold, finance, gold
-- tests: not_null(order_id), accepted_values(status:a|b)@warn, custom_sql(SELECT a, b FROM {model} WHERE a < 0)
-- contract_mode: strict
-- contract_columns: id:int:not_null, name:string
-- x_custom: kept
SELECT 1
"""


def test_full_header_is_parsed_and_normalized() -> None:
    header = parse_header(FULL, "models/orders.sql")
    assert header.name == "analytics.orders_daily"
    assert header.kind == "INCREMENTAL_BY_TIME_RANGE"
    assert header.materialization == "INSERT_OVERWRITE"
    assert header.time_column == "order_date"
    assert header.partition_by == ("order_date",)
    assert header.batch == "day"
    assert header.lookback == 2
    assert header.cron == "0 3 * * *"
    assert header.tags == ("finance", "gold")
    assert header.tests == (
        QualityTest("accepted_values", "status:a|b", "WARN"),
        QualityTest("custom_sql", "SELECT a, b FROM {model} WHERE a < 0", "BLOCK"),
        QualityTest("not_null", "order_id", "BLOCK"),
    )
    assert header.contract_mode == "STRICT"
    assert [(c.name, c.type, c.not_null) for c in header.contract_columns] == [("id", "INT", True), ("name", "STRING", False)]
    assert dict(header.raw)["x_custom"] == "kept"
    assert header.body_line == 17


def test_metadata_fields_do_not_enter_data_fields() -> None:
    header = parse_header(FULL, "m.sql")
    other = parse_header(FULL.replace("owner: finance", "owner: ops").replace("tags: gold", "tags: red"), "m.sql")
    assert header.data_fields() == other.data_fields()
    assert header.meta_fields() != other.meta_fields()


def test_defaults() -> None:
    header = parse_header("-- name: a.b\n-- kind: FULL_REFRESH\nSELECT 1", "m.sql")
    assert (header.materialization, header.batch, header.lookback, header.contract_mode) == ("TABLE", "day", 0, "DISABLED")
    assert header.start is None and header.tests == ()


def test_an_incremental_model_may_leave_out_its_start() -> None:
    """The open-source IronLayer format allows it: the project default, the ledger or the planner decide."""
    for kind in ("APPEND_ONLY", "INCREMENTAL_BY_TIME_RANGE"):
        header = parse_header(f"-- name: a.b\n-- kind: {kind}\n-- time_column: ts\nSELECT 1", "m.sql")
        assert header.is_incremental and header.start is None and header.data_fields()["start"] == ""


BASE = "-- name: a.b\n-- kind: FULL_REFRESH\n"


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("-- kind: FULL_REFRESH\nSELECT 1", 1, "missing required header '-- name: ...'"),
        ("-- name: a.b\nSELECT 1", 1, "missing required header '-- kind: ...'"),
        ("-- name: a b\n-- kind: FULL_REFRESH\n", 1, "invalid name 'a b'"),
        ("-- name: a.b\n-- kind: SNAPSHOT\n", 2, "unknown kind 'SNAPSHOT'; use one of FULL_REFRESH"),
        (BASE + "-- materialization: EPHEMERAL\n", 3, "unknown materialization 'EPHEMERAL'"),
        ("-- name: a.b\n-- kind: INCREMENTAL_BY_TIME_RANGE\n-- start: 2024-01-01\n", 2, "needs '-- time_column"),
        ("-- name: a.b\n-- kind: MERGE_BY_KEY\n", 2, "needs '-- unique_key"),
        ("-- name: a.b\n-- kind: APPEND_ONLY\n-- start: 2024-13-01\n", 3, "invalid start '2024-13-01'"),
        ("-- name: a.b\n-- kind: APPEND_ONLY\n-- batch: month\n-- start: 2024-01-05\n", 4, "not on a month boundary"),
        ("-- name: a.b\n-- kind: APPEND_ONLY\n-- batch: week\n-- start: 2024-01-01\n", 3, "unknown batch 'week'"),
        (BASE + "-- lookback: two\n", 3, "invalid lookback 'two'"),
        (BASE + "-- cron: 0 3 * *\n", 3, "give 5 fields"),
        (BASE + "-- cron: 61 3 * * *\n", 3, "invalid cron minute '61' in '61 3 * * *': '61' is out of range; values run 0-59"),
        (BASE + "-- cron: */0 3 * * *\n", 3, "invalid cron minute '*/0' in '*/0 3 * * *': the step in '*/0' is 0"),
        (BASE + "-- cron: 0 0 31 4 *\n", 3, "cron '0 0 31 4 *' never fires: day-of-month '31' does not occur in month '4'"),
        (BASE + "-- cron: 0  0 30 2 *\n", 3, "cron '0 0 30 2 *' never fires"),
        (BASE + "-- cron: 0 3 * * * 2024\n", 3, "invalid cron '0 3 * * * 2024'; give 5 fields"),
        (BASE + "-- tests: not_null(a, b)\n", 3, "not_null takes one column"),
        (BASE + "-- tests: is_positive(a)\n", 3, "unknown test 'is_positive'"),
        (BASE + "-- tests: not_null(a)@LOUD\n", 3, "unknown severity '@LOUD'"),
        (BASE + "-- tests: row_count_min(many)\n", 3, "row_count_min takes a whole number"),
        (BASE + "-- tests: custom_sql(SELECT 1)\n", 3, "custom_sql must select from {model}"),
        (BASE + "-- contract_mode: LOOSE\n", 3, "unknown contract_mode 'LOOSE'"),
        (BASE + "-- contract_columns: id\n", 3, "invalid contract column 'id'"),
        (BASE + "-- materialization: VIEW\n-- name: c.d\n", 4, "header key 'name' given twice (lines 1 and 4)"),
        ("-- name: a.b\n-- kind: MERGE_BY_KEY\n-- materialization: VIEW\n-- unique_key: id\n", 3, "VIEW only fits"),
        (BASE + "-- time_column: a b\n", 3, "invalid time_column 'a b'"),
    ],
)
def test_invalid_headers_name_file_and_line(text: str, line: int, message: str) -> None:
    with pytest.raises(ModelError) as caught:
        parse_header(text, "models/x.sql")
    assert caught.value.path == "models/x.sql"
    assert caught.value.line == line
    assert message in str(caught.value)
    assert str(caught.value).startswith(f"models/x.sql:{line}: ")
    assert "\n" not in str(caught.value)


def test_header_ends_at_first_non_header_line() -> None:
    header = parse_header("\n\n-- name: a.b\n-- kind: FULL_REFRESH\n-- a free comment\n-- owner: x\nSELECT 1", "m.sql")
    assert header.owner is None
    assert header.body_line == 5


def test_split_top_level_respects_parentheses_and_quotes() -> None:
    assert split_top_level("a(1, 2), b('x,y'), c") == ["a(1, 2)", "b('x,y')", "c"]
