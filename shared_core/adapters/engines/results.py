"""What an executor returns for a batch (the `BatchOutcome` of `shared_core.ports`), shared by every engine:
the rows written, the quality tests and contract checks, and what each statement cost as the engine reported it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TestOutcome:
    """One quality test or contract check of a batch."""

    __test__ = False  # not a pytest test class

    test: str
    severity: str
    failing_rows: int

    @property
    def passed(self) -> bool:
        return self.failing_rows == 0


@dataclass(frozen=True)
class StatementStats:
    """One statement an executor ran for a batch, with what the engine reported about it.

    `rows` is the engine's count of rows the statement wrote or returned (None when it reports none), `bytes`
    the bytes it reports (None when it reports none; databricks-sql-connector reports no byte counts, so
    `query_id` is kept to look the statement up in `system.query.history`).
    """

    label: str  # the operation: stage, count, audit, publish, mark, cleanup, ...
    seconds: float
    rows: int | None = None
    bytes: int | None = None
    query_id: str | None = None


@dataclass(frozen=True)
class BatchResult:
    """A published batch."""

    rows_written: int
    tests: tuple[TestOutcome, ...]
    published: bool
    statements: tuple[StatementStats, ...] = ()
