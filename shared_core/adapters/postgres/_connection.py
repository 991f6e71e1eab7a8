"""The state store's connection to PostgreSQL: one lazy asyncpg pool, tenant-bound transactions, error mapping.

Row-level security compares every row's `tenant_id` with `app.tenant_id`, which each transaction sets with
`set_config('app.tenant_id', $1, true)` before its statements: a pooled connection never carries a tenant
from one use to the next. Losing the server (refused or dropped connections, shutdowns, timeouts) becomes
`StateUnavailableError` (safe to retry); a server that refuses the login becomes `StateError`. Other
database errors are bugs or constraint violations and stay as they are.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from shared_core.core.errors import StateError, StateUnavailableError

# asyncpg ships no type information, so its connections and records are untyped here: these names mark
# that boundary. The adapter reads records by column name into the typed rows of `shared_core.core.state`.
Connection = Any  # an asyncpg connection
Record = Any  # an asyncpg record (a row, read by column name)
Value = Any  # one column's value as asyncpg decodes it

UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, unreachable; TimeoutError (the command timeout) is one too
    asyncpg.PostgresConnectionError,  # SQLSTATE class 08, and a connection lost mid-operation
    asyncpg.CannotConnectNowError,  # starting up
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
)
_BIND = "SELECT set_config('app.tenant_id', $1, true)"


def redact(url: str) -> str:
    """The URL without its password, for messages.

    >>> redact("postgresql://app:s3cret@db:5432/ironlayer")
    'postgresql://app:***@db:5432/ironlayer'
    """
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)


def _lost_mid_transaction(exc: BaseException) -> bool:
    """Whether an asyncpg InterfaceError means the server dropped the connection while a transaction held it.

    The pool detaches a connection the server closed, so the transaction's next statement finds it "released
    back to the pool" and its end finds it "closed": neither is a bug of the caller, both mean "unreachable".
    """
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, asyncpg.InterfaceError) and any(text in str(seen) for text in _LOST):
            return True
        seen = seen.__context__
    return False


_LOST = ("the underlying connection is closed", "connection has been released back to the pool")


class _SessionlessConnection(asyncpg.Connection):  # type: ignore[misc]  # asyncpg ships no type information
    """A pooled connection released without asyncpg's reset query (`RESET ALL`, `UNLISTEN *`, ...).

    The store keeps no session state: its advisory locks and settings are transaction-scoped, and asyncpg
    still rolls back a transaction left open. Skipping the reset saves one round trip per store call.
    """

    def get_reset_query(self) -> str:
        return ""


class PostgresConnection:
    """One asyncpg pool (created on first use, reused) and the transactions every store query runs in."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._pool: asyncpg.Pool | None = None

    async def pool(self) -> asyncpg.Pool:
        """The pool, created on first use.

        Raises:
            StateUnavailableError: the server cannot be reached.
            StateError: the server refused the connection (role, password, database).
        """
        if self._pool is None:
            try:
                self._pool = await asyncpg.create_pool(
                    self.url, min_size=1, max_size=4, command_timeout=60, connection_class=_SessionlessConnection
                )
            except UNAVAILABLE as exc:
                raise StateUnavailableError(
                    f"state store unreachable at {redact(self.url)}: {exc}; start PostgreSQL or fix "
                    "IRONLAYER_DATABASE_URL"
                ) from exc
            except asyncpg.PostgresError as exc:
                raise StateError(f"state store at {redact(self.url)} refused the connection: {exc}") from exc
        return self._pool

    async def close(self) -> None:
        """Close the pool (a later call opens a new one)."""
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def health(self) -> None:
        """Return when the store answers; raise StateUnavailableError otherwise."""
        async with self._connection() as conn:
            await conn.fetchval("SELECT 1")

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Connection]:
        """A pooled connection bound to no tenant (it sees only what row-level security leaves public)."""
        pool = await self.pool()
        try:
            async with pool.acquire() as conn:
                yield conn
        except UNAVAILABLE as exc:
            raise self._unavailable(exc) from exc

    @asynccontextmanager
    async def _transaction(self, tenant_id: str) -> AsyncIterator[Connection]:
        """A pooled connection inside a transaction bound to `tenant_id`; commits when the block ends.

        Raises:
            StateError: no tenant given.
            StateUnavailableError: the server went away.
        """
        if not tenant_id:
            raise StateError("no tenant given; every state store call is bound to a tenant")
        pool = await self.pool()
        try:
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute(_BIND, tenant_id)
                yield conn
        except UNAVAILABLE as exc:
            raise self._unavailable(exc) from exc
        except asyncpg.InterfaceError as exc:
            if _lost_mid_transaction(exc):
                raise self._unavailable(exc) from exc
            raise

    async def _execute(self, tenant_id: str, sql: str, *args: object) -> str:
        """Run one statement in its own tenant-bound transaction; returns its status (`INSERT 0 1`)."""
        async with self._transaction(tenant_id) as conn:
            return str(await conn.execute(sql, *args))

    async def _fetch(self, tenant_id: str, sql: str, *args: object) -> list[Record]:
        """The records of one query, in its own tenant-bound transaction."""
        async with self._transaction(tenant_id) as conn:
            return list(await conn.fetch(sql, *args))

    async def _fetchrow(self, tenant_id: str, sql: str, *args: object) -> Record | None:
        """The first record of one query (or None), in its own tenant-bound transaction."""
        async with self._transaction(tenant_id) as conn:
            return await conn.fetchrow(sql, *args)

    async def _fetchval(self, tenant_id: str, sql: str, *args: object) -> Value:
        """The first value of one query (or None), in its own tenant-bound transaction."""
        async with self._transaction(tenant_id) as conn:
            return await conn.fetchval(sql, *args)

    def _unavailable(self, exc: BaseException) -> StateUnavailableError:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return StateUnavailableError(
            f"state store unreachable at {redact(self.url)}: {first_line}; safe to retry"
        )
