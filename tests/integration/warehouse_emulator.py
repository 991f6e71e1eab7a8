"""A stand-in for a Databricks SQL warehouse behind databricks-sql-connector's `connect()`, backed by DuckDB.

Databricks itself cannot run here, so the executor's requests are answered by a DuckDB database playing the
warehouse (the STYLE rule: a stand-in only where the real thing cannot run, and then check the exact
requests). It keeps what the crash-safety argument of `DatabricksExecutor` rests on:

- every statement is one atomic commit (DuckDB runs it in its own transaction), and nothing spans two;
- the Databricks forms the executor sends are given their documented meaning: `INSERT INTO ... REPLACE
  WHERE` deletes the rows matching the predicate and inserts the query's rows, refusing rows outside the
  predicate (`DELTA_REPLACE_WHERE_MISMATCH`); `REPLACE USING (cols)` deletes the rows whose columns match a
  source row; `MERGE` runs as MERGE; `SHOW TABLES ... LIKE`, `DESCRIBE TABLE` and `DESCRIBE HISTORY` answer
  from the catalog and from a per-table commit log kept here (version, operation, `numOutputRows`);
- temporary views belong to one session (one DuckDB connection per `connect()`);
- statements of concurrent sessions interleave, one commit at a time (DuckDB's own optimistic catalog
  would refuse some concurrent DDL that a SQL warehouse accepts).
Everything else is transpiled from the Databricks dialect with sqlglot. Every statement is recorded with
its parameters and query tags (`log`), and `crash_at` stops the world before or after a given statement
(a `Crash` is a BaseException, as a killed process: nothing of the executor runs after it).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from typing import Any

import duckdb
import sqlglot
from sqlglot import exp


class Crash(BaseException):
    """The process died here."""


@dataclass
class Logged:
    sql: str
    parameters: dict[str, Any] | None
    tags: dict[str, str] | None


@dataclass
class Warehouse:
    catalog: str = "lake"
    log: list[Logged] = field(default_factory=list)
    connects: list[dict[str, Any]] = field(default_factory=list)
    crash_at: tuple[int, str] | None = None  # (statement index, "before" | "after")
    history: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.db = duckdb.connect()
        self.db.execute(f"ATTACH ':memory:' AS {self.catalog}")
        self.db.execute(f"USE {self.catalog}")
        self.db.execute("SET TimeZone = 'UTC'")
        self.lock = threading.Lock()
        self.commits = threading.Lock()  # one statement at a time

    def connect(self, **kwargs: Any) -> FakeConnection:
        """The replacement of `databricks.sql.connect` (records the arguments it was given)."""
        self.connects.append(kwargs)
        return FakeConnection(self)

    def rows(self, relation: str) -> list[tuple[Any, ...]]:
        """The rows of a table, sorted (for comparisons)."""
        return sorted(self.db.execute(f"SELECT * FROM {relation}").fetchall(), key=repr)

    def tables(self) -> list[str]:
        found = self.db.execute("SELECT table_schema || '.' || table_name FROM information_schema.tables "
                                "WHERE table_catalog = ? ORDER BY 1", [self.catalog]).fetchall()
        return [name for (name,) in found]


class FakeConnection:
    def __init__(self, warehouse: Warehouse) -> None:
        self.warehouse = warehouse
        self.db = warehouse.db.cursor()  # its own session: temporary views stay in it
        self.db.execute(f"USE {warehouse.catalog}")
        self.db.execute("SET TimeZone = 'UTC'")

    def cursor(self) -> FakeCursor:
        return FakeCursor(self)

    def close(self) -> None:
        self.db.close()


_COMMENT = re.compile(r"^/\*.*?\*/\s*", re.DOTALL)
_SHOW = re.compile(r"^SHOW TABLES IN `([^`]+)`\.`([^`]+)` LIKE '([^']+)'$")
_DESCRIBE = re.compile(r"^DESCRIBE TABLE (.+)$")
_HISTORY = re.compile(r"^DESCRIBE HISTORY (.+?)(?: LIMIT (\d+))?$")


class FakeCursor:
    def __init__(self, connection: FakeConnection) -> None:
        self.connection = connection
        self.description: list[tuple[str, ...]] | None = None
        self.rowcount = -1
        self.query_id: str | None = None
        self._rows: list[tuple[Any, ...]] = []

    def execute(self, operation: str, parameters: dict[str, Any] | None = None,
                query_tags: dict[str, str] | None = None) -> FakeCursor:
        warehouse = self.connection.warehouse
        with warehouse.lock:
            index = len(warehouse.log)
            warehouse.log.append(Logged(operation, parameters, query_tags))
            self.query_id = f"q-{index}"
        if warehouse.crash_at == (index, "before"):
            raise Crash(operation)
        with warehouse.commits:
            self._run(_COMMENT.sub("", operation, count=1), parameters or {})
        if warehouse.crash_at == (index, "after"):
            raise Crash(operation)
        return self

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self._rows

    def cancel(self) -> None:
        self.connection.db.interrupt()

    def close(self) -> None:
        pass

    # -- the warehouse's side ----------------------------------------------------------------------------

    def _result(self, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
        self.description = [(c, "string") for c in columns]
        self._rows = rows

    def _run(self, sql: str, parameters: dict[str, Any]) -> None:
        db, warehouse = self.connection.db, self.connection.warehouse
        self.description, self._rows, self.rowcount = None, [], -1
        if match := _SHOW.match(sql):
            found = db.execute("SELECT table_schema, table_name, false FROM information_schema.tables WHERE "
                               "table_catalog = ? AND table_schema = ? AND table_name = ?",
                               [match.group(1), match.group(2), match.group(3)]).fetchall()
            return self._result(["database", "tableName", "isTemporary"], found)
        if match := _DESCRIBE.match(sql):
            described = db.execute(f"DESCRIBE {self._duck(match.group(1))}").fetchall()
            return self._result(["col_name", "data_type", "comment"], [(r[0], r[1], None) for r in described])
        if match := _HISTORY.match(sql):
            commits = list(reversed(warehouse.history.get(self._key(match.group(1)), [])))
            limit = int(match.group(2)) if match.group(2) else len(commits)
            return self._result(["version", "operation", "operationMetrics"],
                                [(c["version"], c["operation"], c["metrics"]) for c in commits[:limit]])
        tree = sqlglot.parse_one(sql, read="databricks")
        db.execute("BEGIN TRANSACTION")
        try:
            written = self._write(tree, parameters)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        if written is not None:
            table, operation, rows = written
            with warehouse.lock:
                commits = warehouse.history.setdefault(table, [])
                commits.append({"version": len(commits), "operation": operation,
                                "metrics": {"numOutputRows": str(rows)}})
            self.rowcount = rows

    def _write(self, tree: exp.Expr, parameters: dict[str, Any]) -> tuple[str, str, int] | None:
        """Run one statement inside the open transaction; a write returns (table, operation, rows)."""
        db = self.connection.db
        if isinstance(tree, exp.Insert) and (tree.args.get("where") is not None or tree.args.get("using")):
            target = tree.this
            source = f"({self._duck_tree(tree.expression)})"
            if tree.args.get("where") is not None:
                predicate = self._duck_tree(tree.args["where"])
                outside = db.execute(f"SELECT count(*) FROM {source} AS s WHERE ({predicate}) IS NOT TRUE").fetchone()
                if outside and outside[0]:
                    raise RuntimeError("[DELTA_REPLACE_WHERE_MISMATCH] Written data does not conform to partial "
                                       "table overwrite condition or constraint. SQLSTATE: 44000")
                db.execute(f"DELETE FROM {self._duck_tree(target)} WHERE {predicate}")
            else:
                columns = ", ".join(self._duck_tree(c) for c in tree.args["using"])
                db.execute(f"DELETE FROM {self._duck_tree(target)} WHERE ({columns}) IN "
                           f"(SELECT {columns} FROM {source} AS s)")
            inserted = db.execute(f"INSERT INTO {self._duck_tree(target)} SELECT * FROM {source} AS s").fetchone()
            return self._key_tree(target), "WRITE", int(inserted[0]) if inserted else 0
        duck = self._duck_tree(tree)
        result = db.execute(duck, {k: v for k, v in parameters.items() if f"${k}" in duck})
        if isinstance(tree, exp.Select):
            self._result([d[0] for d in result.description or []], result.fetchall())
            return None
        if isinstance(tree, exp.Insert | exp.Merge):
            count = result.fetchone()
            written = int(count[0]) if count else 0
            self._result(["num_affected_rows"], [(written,)])
            return self._key_tree(tree.this), "MERGE" if isinstance(tree, exp.Merge) else "WRITE", written
        if isinstance(tree, exp.Create) and tree.args.get("expression") is not None \
                and (tree.args.get("kind") or "").upper() == "TABLE":
            table = tree.this.this if isinstance(tree.this, exp.Schema) else tree.this
            count = db.execute(f"SELECT count(*) FROM {self._duck_tree(table)}").fetchone()
            return self._key_tree(table), "CREATE OR REPLACE TABLE AS SELECT", int(count[0]) if count else 0
        return None

    def _duck_tree(self, tree: exp.Expr) -> str:
        return tree.sql(dialect="duckdb", unsupported_level=sqlglot.ErrorLevel.IGNORE)

    def _duck(self, relation: str) -> str:
        return self._duck_tree(sqlglot.parse_one(relation, read="databricks", into=exp.Table))

    def _key(self, relation: str) -> str:
        return self._key_tree(sqlglot.parse_one(relation, read="databricks", into=exp.Table))

    @staticmethod
    def _key_tree(table: exp.Expr) -> str:
        assert isinstance(table, exp.Table)
        return ".".join(part for part in (table.catalog, table.db, table.name) if part)
