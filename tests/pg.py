"""Helpers for tests that talk to the real PostgreSQL server: a store for one scenario, rows read as the owner."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from shared_core.adapters.postgres.store import PostgresStateStore

T = TypeVar("T")


def with_store(url: str, scenario: Callable[[PostgresStateStore], Awaitable[T]]) -> T:
    """Run `scenario(store)` on a fresh store (its own event loop and pool), closing it afterwards."""

    async def main() -> T:
        store = PostgresStateStore(url)
        try:
            return await scenario(store)
        finally:
            await store.close()

    return asyncio.run(main())


def owner_rows(url: str, sql: str, *args: object) -> list[dict[str, Any]]:
    """The rows of `sql` read over a plain connection at `url` (the owner role sees past row-level security)."""

    async def main() -> list[dict[str, Any]]:
        conn = await asyncpg.connect(url)
        try:
            return [dict(row) for row in await conn.fetch(sql, *args)]
        finally:
            await conn.close()

    return asyncio.run(main())
