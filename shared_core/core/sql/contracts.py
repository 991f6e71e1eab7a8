"""Model contracts (`contract_mode`, `contract_columns`) as audit checks over a batch's columns and rows.

A contract names columns with a type and optionally NOT_NULL. Each contract column is one check of the
audit, next to the quality tests: `contract(name:TYPE[:NOT_NULL])`, BLOCK under `STRICT`, WARN under `WARN`,
none under `DISABLED`. A check counts the rows that break it: every row when the column is missing or has
another type (at least one, so that an empty batch with the wrong shape still fails), else the NULL rows
of a NOT_NULL column, else none.

Types are compared by meaning, not spelling: each engine names its types its own way (DuckDB `VARCHAR`,
`INTEGER`; Databricks `string`, `int`), so both sides are reduced to one canonical name first
(`canonical_type`). A DECIMAL contract without precision accepts any precision; with one it must match.
Pure: values in, values out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from shared_core.core.project.headers import ContractColumn, Header

#: Spellings of one type across DuckDB, Databricks and the SQL standard -> the canonical name.
_SYNONYMS = {
    "TINYINT": "TINYINT", "BYTE": "TINYINT", "INT1": "TINYINT", "INT8": "BIGINT",
    "SMALLINT": "SMALLINT", "SHORT": "SMALLINT", "INT2": "SMALLINT", "INT16": "SMALLINT",
    "INT": "INT", "INTEGER": "INT", "INT4": "INT", "INT32": "INT", "SIGNED": "INT",
    "BIGINT": "BIGINT", "LONG": "BIGINT", "INT64": "BIGINT",
    "HUGEINT": "HUGEINT",
    "FLOAT": "FLOAT", "REAL": "FLOAT", "FLOAT4": "FLOAT",
    "DOUBLE": "DOUBLE", "FLOAT8": "DOUBLE", "DOUBLE PRECISION": "DOUBLE",
    "DECIMAL": "DECIMAL", "DEC": "DECIMAL", "NUMERIC": "DECIMAL",
    "STRING": "STRING", "VARCHAR": "STRING", "TEXT": "STRING", "CHAR": "STRING", "BPCHAR": "STRING",
    "CHARACTER VARYING": "STRING",
    "BOOLEAN": "BOOLEAN", "BOOL": "BOOLEAN", "LOGICAL": "BOOLEAN",
    "DATE": "DATE",
    "TIMESTAMP": "TIMESTAMP", "DATETIME": "TIMESTAMP", "TIMESTAMP_NTZ": "TIMESTAMP",
    "TIMESTAMP WITHOUT TIME ZONE": "TIMESTAMP",
    "TIMESTAMP_LTZ": "TIMESTAMP", "TIMESTAMPTZ": "TIMESTAMP", "TIMESTAMP WITH TIME ZONE": "TIMESTAMP",
    "BINARY": "BINARY", "BLOB": "BINARY", "BYTEA": "BINARY", "VARBINARY": "BINARY",
}
_PARAMS = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_ ]*?)\s*(\(([^()]*)\))?\s*$")


@dataclass(frozen=True)
class ContractCheck:
    """One contract column as an audit check."""

    column: ContractColumn
    severity: str  # BLOCK (STRICT) or WARN

    @property
    def name(self) -> str:
        """The check as the run records it, e.g. `contract(customer_id:INT:NOT_NULL)`."""
        flag = ":NOT_NULL" if self.column.not_null else ""
        return f"contract({self.column.name}:{self.column.type}{flag})"


def contract_checks(header: Header) -> tuple[ContractCheck, ...]:
    """The audit checks of a model's contract: one per contract column, none when the mode is DISABLED.

    >>> from shared_core.core.project.headers import parse_header
    >>> header = parse_header("-- name: s.t\\n-- kind: FULL_REFRESH\\n-- contract_mode: WARN\\n"
    ...                       "-- contract_columns: id:INT:NOT_NULL\\nSELECT 1 AS id", "t.sql")
    >>> [(c.name, c.severity) for c in contract_checks(header)]
    [('contract(id:INT:NOT_NULL)', 'WARN')]
    """
    if header.contract_mode == "DISABLED":
        return ()
    severity = "BLOCK" if header.contract_mode == "STRICT" else "WARN"
    return tuple(ContractCheck(column, severity) for column in header.contract_columns)


def canonical_type(name: str) -> str:
    """One name for a type however an engine spells it: upper case, synonyms folded, parameters kept.

    >>> [canonical_type(t) for t in ("varchar", "INTEGER", "decimal(10, 2)", "timestamp_ntz", "STRUCT<a: INT>")]
    ['STRING', 'INT', 'DECIMAL(10,2)', 'TIMESTAMP', 'STRUCT<A: INT>']
    """
    text = " ".join(name.strip().upper().split())
    found = _PARAMS.match(text)
    if not found:
        return text  # nested types (ARRAY<...>, STRUCT<...>, MAP<...>) compare as written, upper-cased
    base = _SYNONYMS.get(found.group(1), found.group(1))
    if base == "STRING" or found.group(3) is None:
        return base  # VARCHAR(20) is a STRING with a limit: the contract's STRING accepts it
    return f"{base}({','.join(part.strip() for part in found.group(3).split(','))})"


def type_matches(declared: str, actual: str) -> bool:
    """Whether a column of type `actual` satisfies a contract that declares `declared`.

    >>> type_matches("INT", "INTEGER"), type_matches("DECIMAL", "DECIMAL(18,3)"), type_matches("INT", "BIGINT")
    (True, True, False)
    """
    want, got = canonical_type(declared), canonical_type(actual)
    if want == got:
        return True
    return "(" not in want and got.startswith(want + "(")  # DECIMAL accepts any precision


def shape_violation(check: ContractCheck, columns: Mapping[str, str]) -> str | None:
    """Why the batch's columns (lower-cased name -> engine type) break `check`'s shape, or None.

    >>> check = ContractCheck(ContractColumn("email", "STRING"), "BLOCK")
    >>> shape_violation(check, {"email": "DATE"}), shape_violation(check, {}), shape_violation(check, {"email": "text"})
    ('email is DATE, not STRING', 'email is missing', None)
    """
    column = check.column.name.lower()
    if column not in columns:
        return f"{check.column.name} is missing"
    if not type_matches(check.column.type, columns[column]):
        return f"{check.column.name} is {canonical_type(columns[column])}, not {canonical_type(check.column.type)}"
    return None


def failing_rows(check: ContractCheck, columns: Mapping[str, str], *, total_rows: int, null_rows: int) -> int:
    """The rows that break `check`: all of them (at least one) when the shape is wrong, else the NULLs of a
    NOT_NULL column.

    >>> check = ContractCheck(ContractColumn("id", "INT", not_null=True), "BLOCK")
    >>> failing_rows(check, {"id": "int"}, total_rows=5, null_rows=2)
    2
    >>> failing_rows(check, {}, total_rows=0, null_rows=0)  # missing: fails even with no rows
    1
    """
    if shape_violation(check, columns) is not None:
        return max(total_rows, 1)
    return null_rows if check.column.not_null else 0
