"""Databricks statement errors become one line: the class, SQLSTATE, the names the SQL itself contains, the
model's file and the line where the name is written; messages that can quote data are withheld.

The messages are Databricks' own (error classes and wording from the Databricks error reference), raised as
the connector raises them (`ServerOperationError`); a real workspace cannot run here.
"""

from __future__ import annotations

import pytest
from databricks.sql.exc import DatabaseError, ServerOperationError

from shared_core.adapters.engines._databricks_errors import connection_error, is_conflict, statement_error
from shared_core.core.project.models import Model, ModelSource, load_project

TEXT = """-- name: gold.revenue
-- kind: FULL_REFRESH
SELECT order_date,
       SUM(amt) AS revenue
FROM silver.orders
GROUP BY order_date
"""


def server_error(message: str) -> Exception:
    """The connector's error for a failed statement (its classes are not annotated)."""
    return ServerOperationError(message, {"diagnostic-info": "org.apache.spark..."})  # type: ignore[no-untyped-call]


def session_error(message: str) -> Exception:
    """The connector's error for a session the warehouse refused."""
    return DatabaseError(message)  # type: ignore[no-untyped-call]


def model() -> Model:
    return load_project([ModelSource("models/gold/revenue.sql", TEXT.replace("FROM silver.orders",
                                                                              "FROM {{ ref('silver.orders') }}")),
                         ModelSource("models/silver/orders.sql", "-- name: silver.orders\n-- kind: FULL_REFRESH\n"
                                                                 "SELECT 1 AS amount")])["gold.revenue"]


SQL = "CREATE OR REPLACE TABLE `main`.`gold`.`__il_stage_revenue_x` AS SELECT `order_date`, SUM(`amt`) AS `revenue` ..."


@pytest.mark.parametrize(("message", "expected"), [
    ("[UNRESOLVED_COLUMN.WITH_SUGGESTION] A column, variable, or function parameter with name `amt` cannot be "
     "resolved. Did you mean one of the following? [`amount`, `secret_salary`]. SQLSTATE: 42703; line 1 pos 62",
     "models/gold/revenue.sql:4: gold.revenue: Databricks UNRESOLVED_COLUMN.WITH_SUGGESTION (SQLSTATE 42703): A "
     "column, variable, or function parameter with name `amt` cannot be resolved; nothing was published"),
    ("[TABLE_OR_VIEW_NOT_FOUND] The table or view `main`.`silver`.`orders` cannot be found. Verify the spelling "
     "and correctness of the schema and catalog. SQLSTATE: 42P01; line 1 pos 80",
     "models/gold/revenue.sql:5: gold.revenue: Databricks TABLE_OR_VIEW_NOT_FOUND (SQLSTATE 42P01): The table or "
     "view `main`.`silver`.`orders` cannot be found; nothing was published"),
    ("[CAST_INVALID_INPUT] The value 'ann@example.com' of the type \"STRING\" cannot be cast to \"INT\" because it "
     "is malformed. SQLSTATE: 22018",
     "models/gold/revenue.sql: gold.revenue: Databricks CAST_INVALID_INPUT (SQLSTATE 22018) (the message may quote "
     "data and is withheld); nothing was published"),
    ("[INSUFFICIENT_PERMISSIONS] Insufficient privileges: User does not have MODIFY on Table "
     "`main`.`gold`.`__il_stage_revenue_x`. SQLSTATE: 42501",
     "models/gold/revenue.sql: gold.revenue: Databricks INSUFFICIENT_PERMISSIONS (SQLSTATE 42501): Insufficient "
     "privileges: User does not have MODIFY on Table `main`.`gold`.`__il_stage_revenue_x` (see the README: "
     "Databricks privileges); nothing was published"),
    ("[TABLE_OR_VIEW_NOT_FOUND] The table or view `hr`.`salaries` cannot be found. SQLSTATE: 42P01",
     "models/gold/revenue.sql: gold.revenue: Databricks TABLE_OR_VIEW_NOT_FOUND (SQLSTATE 42P01): The table or view "
     "`?` cannot be found; nothing was published"),
])
def test_statement_errors_are_one_line_with_the_models_file_and_line(message: str, expected: str) -> None:
    error = statement_error(server_error(message),
                            model=model(), sql=SQL, catalog="main")
    assert str(error) == expected


def test_a_missing_catalog_names_the_catalog_and_the_grant() -> None:
    error = statement_error(server_error("[NO_SUCH_CATALOG_EXCEPTION] Catalog 'sales' was not found. SQLSTATE: "
                                         "42704"), model=model(), sql=SQL, catalog="sales")
    assert str(error) == ("gold.revenue (models/gold/revenue.sql): catalog sales does not exist or the principal "
                          "cannot see it; create it or grant USE CATALOG; nothing was published")


def test_a_session_refused_for_a_catalog_or_permission_says_so() -> None:
    where = {"host": "adb-1.2.azuredatabricks.net", "port": 443, "http_path": "/sql/1.0/warehouses/w",
             "principal": "token", "credential": "credential dbx", "waited": 0.5}
    missing = session_error("[NO_SUCH_CATALOG_EXCEPTION] Catalog 'sales' was not found. Please verify the catalog "
                            "name. SQLSTATE: 42704")
    assert str(connection_error(missing, **where, catalog="sales")) == (  # type: ignore[arg-type]
        "catalog sales does not exist on Databricks workspace adb-1.2.azuredatabricks.net or the token cannot see "
        "it; create it or grant USE CATALOG")
    denied = session_error("[INSUFFICIENT_PERMISSIONS] Insufficient privileges: User does not have USE CATALOG on "
                           "Catalog `sales`. SQLSTATE: 42501")
    assert str(connection_error(denied, **where, catalog="sales")) == (  # type: ignore[arg-type]
        "Databricks workspace adb-1.2.azuredatabricks.net: INSUFFICIENT_PERMISSIONS (SQLSTATE 42501): Insufficient "
        "privileges: User does not have USE CATALOG on Catalog `sales`")


def test_concurrent_delta_writes_are_recognised_as_conflicts() -> None:
    assert is_conflict("[DELTA_CONCURRENT_APPEND] ConcurrentAppendException: Files were added to the root of the "
                       "table by a concurrent update. SQLSTATE: 2D521")
    assert is_conflict("io.delta.exceptions.ConcurrentDeleteReadException: This transaction attempted to read ...")
    assert not is_conflict("[TABLE_OR_VIEW_NOT_FOUND] The table or view `x` cannot be found. SQLSTATE: 42P01")
