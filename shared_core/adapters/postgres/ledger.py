"""The watermark ledger in PostgreSQL: completed `[start, end)` ranges per model, read merged.

One row per committed range (table `watermarks`); a model's completed ranges are the union of its rows.
Ranges are written only together with the run that completed them (`PostgresRunStore.finish_run`), so a
recorded success and its watermark never part; `record_range` is that shared write.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from shared_core.adapters.postgres._connection import Connection, PostgresConnection, Record
from shared_core.core.planning.intervals import Range, merge_ranges


class PostgresLedgerStore(PostgresConnection):
    """Reads the ledger (the `LedgerStore` port)."""

    async def load_ledger(self, tenant_id: str, models: Sequence[str] | None = None) -> dict[str, list[Range]]:
        """The completed ranges per model (merged), for `models` or all."""
        rows = await self._fetch(
            tenant_id,
            "SELECT model, range_start, range_end FROM watermarks WHERE tenant_id = $1 "
            "AND ($2::text[] IS NULL OR model = ANY($2::text[])) ORDER BY model, range_start",
            tenant_id, list(models) if models is not None else None,
        )
        return group_ledger(rows)

    async def ledger_before(self, tenant_id: str, models: Sequence[str], plan_id: str) -> dict[str, list[Range]]:
        """The ledger of `models` without the ranges recorded by plan `plan_id` (for the staleness check)."""
        rows = await self._fetch(
            tenant_id,
            "SELECT model, range_start, range_end FROM watermarks WHERE tenant_id = $1 AND model = ANY($2::text[]) "
            "AND plan_id IS DISTINCT FROM $3 ORDER BY model, range_start",
            tenant_id, list(models), plan_id,
        )
        return group_ledger(rows)


async def record_range(
    conn: Connection, tenant_id: str, model: str, start: datetime, end: datetime, plan_id: str, step_id: str, *,
    reset: bool,
) -> None:
    """Add `[start, end)` to the model's ledger on `conn` (inside the caller's transaction); with `reset`,
    the ledger first forgets the model (a backfill that starts from an empty table)."""
    if reset:
        await conn.execute("DELETE FROM watermarks WHERE tenant_id = $1 AND model = $2", tenant_id, model)
    await conn.execute(
        "INSERT INTO watermarks (tenant_id, model, range_start, range_end, plan_id, step_id) "
        "VALUES ($1, $2, $3, $4, $5, $6)",
        tenant_id, model, start, end, plan_id, step_id,
    )


def group_ledger(rows: Sequence[Record]) -> dict[str, list[Range]]:
    """Watermark rows (`model`, `range_start`, `range_end`) grouped per model into merged ranges.

    >>> from datetime import UTC, datetime
    >>> day = lambda d: datetime(2024, 1, d, tzinfo=UTC)
    >>> rows = [{"model": "a", "range_start": day(1), "range_end": day(2)},
    ...         {"model": "a", "range_start": day(2), "range_end": day(3)}]
    >>> [(s.day, e.day) for s, e in group_ledger(rows)["a"]]
    [(1, 3)]
    """
    ledger: dict[str, list[Range]] = {}
    for row in rows:
        ledger.setdefault(row["model"], []).append((row["range_start"], row["range_end"]))
    return {model: merge_ranges(ranges) for model, ranges in ledger.items()}
