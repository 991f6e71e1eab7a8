"""Metering and subscriptions in PostgreSQL: the usage outbox, Stripe customers, subscriptions and events, and the
execution slots that concurrency limits count.

Usage events are inserted by `insert_usage` inside the transaction of what they count (`plans.py` when a plan is
stored, `locks.py` when a step finishes); the billing timer claims the due ones per tenant and marks what it
sent. A Stripe event is recorded and applied in one transaction (`apply_stripe_event`): a redelivery finds its
event ID and changes nothing. The customer map is readable without a tenant (webhooks are routed by it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Literal, TypeVar

from shared_core.adapters.postgres._connection import Connection, PostgresConnection, Record
from shared_core.core.billing import SubscriptionRow, UsageEventRow, UsageKind, UsageSummary
from shared_core.core.errors import ConflictError
from shared_core.security.scrub import scrub

__all__ = ["PostgresBillingStore", "insert_usage"]

QuotaT = TypeVar("QuotaT")

_SUBSCRIPTION_COLUMNS = (
    "subscription_id, customer_id, status, tier, created, period_start, period_end, ended_at, event_created, "
    "invoice_status, invoice_created"
)


async def insert_usage(conn: Connection, tenant_id: str, identifier: str, kind: UsageKind, quantity: int,
                       plan_id: str | None, step_id: str | None) -> None:
    """Add a usage event to the outbox inside the caller's transaction (a second insert of it is a no-op)."""
    await conn.execute(
        "INSERT INTO usage_events (tenant_id, identifier, kind, quantity, plan_id, step_id) "
        "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (identifier) DO NOTHING",
        tenant_id, identifier, kind, quantity, plan_id, step_id,
    )


class PostgresBillingStore(PostgresConnection):
    """The usage outbox, Stripe customers, subscriptions and events, execution slots (the `BillingStore` port)."""

    async def map_customer(self, tenant_id: str, customer_id: str, mapped_by: str) -> bool:
        """Map a Stripe customer to the tenant; False when it was mapped to it already.

        Raises:
            ConflictError: the customer pays for another tenant (unmap it there first).
        """
        async with self._transaction(tenant_id) as conn:
            inserted = await conn.fetchval(
                "INSERT INTO stripe_customers (tenant_id, customer_id, mapped_by) VALUES ($1, $2, $3) "
                "ON CONFLICT (customer_id) DO NOTHING RETURNING true",
                tenant_id, customer_id, mapped_by,
            )
            if inserted:
                return True
            owner = await conn.fetchval("SELECT tenant_id FROM stripe_customers WHERE customer_id = $1", customer_id)
        if owner != tenant_id:
            raise ConflictError(f"Stripe customer {customer_id} pays for another tenant; it was not mapped to "
                                f"{tenant_id}")
        return False

    async def tenant_for_customer(self, customer_id: str) -> str | None:
        """The tenant a Stripe customer pays for, or None (routing data, readable without a tenant)."""
        async with self._connection() as conn:
            value = await conn.fetchval("SELECT tenant_id FROM stripe_customers WHERE customer_id = $1", customer_id)
        return str(value) if value is not None else None

    async def customer_for_tenant(self, tenant_id: str) -> str | None:
        """The tenant's Stripe customer (the first mapped), or None."""
        value = await self._fetchval(
            tenant_id, "SELECT customer_id FROM stripe_customers WHERE tenant_id = $1 ORDER BY mapped_at, customer_id "
            "LIMIT 1", tenant_id,
        )
        return str(value) if value is not None else None

    async def billed_tenants(self) -> list[tuple[str, str]]:
        """`(tenant_id, customer_id)` of every tenant with a Stripe customer (its first), by tenant."""
        async with self._connection() as conn:
            rows = await conn.fetch(
                "SELECT DISTINCT ON (tenant_id) tenant_id, customer_id FROM stripe_customers "
                "ORDER BY tenant_id, mapped_at, customer_id"
            )
        return [(row["tenant_id"], row["customer_id"]) for row in rows]

    async def apply_stripe_event(
        self, tenant_id: str, event_id: str, event_type: str, created: datetime, subscription_id: str | None,
        decide: Callable[[SubscriptionRow | None], tuple[SubscriptionRow | None, str]],
    ) -> str | None:
        """Record a Stripe event and apply `decide(stored subscription)` to its subscription, in one transaction.

        `decide` returns the subscription's new row (None: leave it) and a line saying what was done, which is
        stored with the event and returned. Returns None when the event was recorded before (a redelivery).
        """
        async with self._transaction(tenant_id) as conn:
            fresh = await conn.fetchval(
                "INSERT INTO stripe_events (event_id, tenant_id, type, created, outcome) VALUES ($1, $2, $3, $4, '') "
                "ON CONFLICT (event_id) DO NOTHING RETURNING true",
                event_id, tenant_id, event_type, created,
            )
            if not fresh:
                return None
            stored = None
            if subscription_id is not None:
                row = await conn.fetchrow(
                    f"SELECT {_SUBSCRIPTION_COLUMNS} FROM stripe_subscriptions WHERE subscription_id = $1 "
                    "FOR UPDATE", subscription_id,
                )
                stored = _subscription(row) if row is not None else None
            new, outcome = decide(stored)
            if new is not None:
                await _upsert_subscription(conn, tenant_id, new)
            await conn.execute("UPDATE stripe_events SET outcome = $2 WHERE event_id = $1", event_id, scrub(outcome))
            return outcome

    async def current_subscription(self, tenant_id: str, blocking: Sequence[str]) -> SubscriptionRow | None:
        """The subscription that decides the tenant's entitlement: its newest one whose status is not in
        `blocking`, else its newest one; None when it has none."""
        row = await self._fetchrow(
            tenant_id,
            f"SELECT {_SUBSCRIPTION_COLUMNS} FROM stripe_subscriptions WHERE tenant_id = $1 "
            "ORDER BY (status <> ALL($2::text[])) DESC, created DESC, subscription_id LIMIT 1",
            tenant_id, list(blocking),
        )
        return _subscription(row) if row is not None else None

    async def usage_summary(self, tenant_id: str, since: datetime) -> UsageSummary:
        """The tenant's usage since `since`, by kind, with the counts of unsent and expired events."""
        row = await self._fetchrow(  # an aggregate: always one row
            tenant_id,
            "SELECT coalesce(sum(quantity) FILTER (WHERE kind = 'plan_generated'), 0) AS plans, "
            "coalesce(sum(quantity) FILTER (WHERE kind = 'step_executed'), 0) AS steps, "
            "coalesce(sum(quantity) FILTER (WHERE kind = 'compute_seconds'), 0) AS compute, "
            "count(*) FILTER (WHERE status = 'pending') AS pending, "
            "count(*) FILTER (WHERE status = 'expired') AS expired "
            "FROM usage_events WHERE tenant_id = $1 AND occurred_at >= $2",
            tenant_id, since,
        )
        assert row is not None
        return UsageSummary(since=since, plans=int(row["plans"]), steps=int(row["steps"]),
                            compute_seconds=int(row["compute"]), pending=int(row["pending"]),
                            expired=int(row["expired"]))

    async def claim_usage(self, tenant_id: str, now: datetime, limit: int, lease_seconds: int) -> list[UsageEventRow]:
        """The tenant's pending events due at `now` (oldest first), leased for `lease_seconds` so that a second
        sender running at once skips them."""
        rows = await self._fetch(
            tenant_id,
            "UPDATE usage_events SET next_attempt_at = $2::timestamptz + make_interval(secs => $4) WHERE id IN ("
            " SELECT id FROM usage_events WHERE tenant_id = $1 AND status = 'pending' AND next_attempt_at <= $2 "
            " ORDER BY occurred_at, id LIMIT $3 FOR UPDATE SKIP LOCKED) "
            "RETURNING id, tenant_id, identifier, kind, quantity, occurred_at, attempts",
            tenant_id, now, limit, float(lease_seconds),
        )
        return sorted((UsageEventRow(id=r["id"], tenant_id=r["tenant_id"], identifier=r["identifier"], kind=r["kind"],
                                     quantity=r["quantity"], occurred_at=r["occurred_at"], attempts=r["attempts"])
                       for r in rows), key=lambda e: (e["occurred_at"], e["id"]))

    async def mark_usage(self, tenant_id: str, event_id: int, status: Literal["sent", "expired", "rejected", "pending"],
                         *, error: str | None = None, retry_at: datetime | None = None) -> None:
        """Record what sending an event did: sent, expired (too old for Stripe), rejected, or pending again
        (`retry_at`, after a failure that may pass)."""
        await self._execute(
            tenant_id,
            "UPDATE usage_events SET status = $3, attempts = attempts + 1, last_error = $4, "
            "sent_at = CASE WHEN $3 = 'sent' THEN now() ELSE sent_at END, "
            "next_attempt_at = coalesce($5::timestamptz, next_attempt_at) WHERE tenant_id = $1 AND id = $2",
            tenant_id, event_id, status, scrub(error) if error else None, retry_at,
        )

    async def refuse_usage(self, tenant_id: str, refused: Mapping[str, str]) -> int:
        """Mark the tenant's events whose identifiers Stripe refused after accepting them `rejected`, with
        Stripe's message; returns how many."""
        if not refused:
            return 0
        result = await self._execute(
            tenant_id,
            "UPDATE usage_events AS u SET status = 'rejected', last_error = r.error FROM "
            "unnest($2::text[], $3::text[]) AS r(identifier, error) WHERE u.tenant_id = $1 "
            "AND u.identifier = r.identifier",
            tenant_id, list(refused), [scrub(refused[key])[:500] for key in refused],
        )
        return int(result.split()[-1])

    async def claim_execution(self, tenant_id: str, instance: str,
                              decide: Callable[[int, bool], tuple[QuotaT, bool]]) -> QuotaT:
        """Decide, atomically per tenant, whether the job of `instance` may execute, and take its slot if so.

        `decide(running elsewhere, holds a slot)` returns its decision and whether the job may run; a job that
        may run and held no slot takes one in the same transaction, so two jobs deciding at once never both
        take the last slot. A slot counts while its job has not ended.
        """
        async with self._transaction(tenant_id) as conn:
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('execution-slots/' || $1))", tenant_id)
            running = await conn.fetchval(
                "SELECT count(*) FROM execution_slots s JOIN jobs j ON j.tenant_id = s.tenant_id "
                "AND j.instance_id = s.instance_id WHERE s.tenant_id = $1 AND s.instance_id <> $2 "
                "AND j.status NOT IN ('succeeded', 'failed', 'cancelled')",
                tenant_id, instance,
            )
            holds = bool(await conn.fetchval(
                "SELECT true FROM execution_slots WHERE tenant_id = $1 AND instance_id = $2", tenant_id, instance))
            decision, may_run = decide(int(running), holds)
            if may_run and not holds and instance:
                await conn.execute("INSERT INTO execution_slots (tenant_id, instance_id) VALUES ($1, $2)",
                                   tenant_id, instance)
            return decision


async def _upsert_subscription(conn: Connection, tenant_id: str, row: SubscriptionRow) -> None:
    await conn.execute(
        "INSERT INTO stripe_subscriptions (tenant_id, subscription_id, customer_id, status, tier, created, "
        "period_start, period_end, ended_at, event_created, invoice_status, invoice_created) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT (subscription_id) DO UPDATE SET "
        "customer_id = EXCLUDED.customer_id, status = EXCLUDED.status, tier = EXCLUDED.tier, "
        "created = EXCLUDED.created, period_start = EXCLUDED.period_start, period_end = EXCLUDED.period_end, "
        "ended_at = EXCLUDED.ended_at, event_created = EXCLUDED.event_created, "
        "invoice_status = EXCLUDED.invoice_status, invoice_created = EXCLUDED.invoice_created, updated_at = now()",
        tenant_id, row["subscription_id"], row["customer_id"], row["status"], row["tier"], row["created"],
        row["period_start"], row["period_end"], row["ended_at"], row["event_created"], row["invoice_status"],
        row["invoice_created"],
    )


def _subscription(row: Record) -> SubscriptionRow:
    return SubscriptionRow(
        subscription_id=row["subscription_id"], customer_id=row["customer_id"], status=row["status"],
        tier=row["tier"], created=row["created"], period_start=row["period_start"], period_end=row["period_end"],
        ended_at=row["ended_at"], event_created=row["event_created"], invoice_status=row["invoice_status"],
        invoice_created=row["invoice_created"],
    )
