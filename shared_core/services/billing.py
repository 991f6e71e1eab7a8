"""Billing use cases: apply a verified Stripe event, send metered usage to Stripe, check a tenant's quota, report
its usage.

- **Webhook** (`handle_stripe_event`): the event's customer names the tenant (`stripe_customers`; a subscription
  whose metadata carries `tenant_id` maps an unmapped customer to that existing tenant). The event is recorded
  and applied in one transaction, so a redelivery changes nothing, and a subscription is only changed by a
  state that is not older than the one applied (`shared_core.core.billing.newer_subscription_state`).
- **Metering** (`send_usage`): the billing timer claims each billed tenant's due usage events and sends them as
  Billing Meter events under their identifiers; a failure that may pass is retried with backoff, an event
  older than Stripe accepts is marked `expired` (flagged, never sent), a refusal is `rejected`.
- **Quotas** (`check_quota`): before a plan executes and before each wave; the decision and the execution
  slot it takes are one transaction per tenant.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal, Protocol

from shared_core.core.billing import (
    BLOCKING_STATUSES,
    Entitlement,
    QuotaDecision,
    SubscriptionRow,
    SubscriptionVersion,
    UsageKind,
    UsageSummary,
    decide_quota,
    entitlement,
    meter_window,
    month_start,
    newer_subscription_state,
    retry_delay,
)
from shared_core.core.errors import ConcurrencyLimitError, InputError, PaymentRequiredError
from shared_core.core.stripe_events import StripeEvent
from shared_core.ports import BillingStore, MeterClient, SecurityStore

__all__ = [
    "SendReport",
    "UsageReport",
    "WebhookOutcome",
    "check_quota",
    "handle_stripe_event",
    "map_customer",
    "quota_preview",
    "require_quota",
    "send_usage",
    "usage_report",
]

logger = logging.getLogger(__name__)

#: How long a claimed usage event is left to its sender before another run may claim it.
LEASE_SECONDS = 300

_Decide = Callable[[SubscriptionRow | None], tuple[SubscriptionRow | None, str]]


class BillingStores(BillingStore, SecurityStore, Protocol):
    """What the webhook touches: billing state, and tenants (to map a customer by subscription metadata)."""


@dataclass(frozen=True)
class WebhookOutcome:
    """What a Stripe delivery did: `applied` (with what), `duplicate` (seen before) or `ignored` (not ours)."""

    status: Literal["applied", "duplicate", "ignored"]
    detail: str
    tenant_id: str | None = None


async def handle_stripe_event(store: BillingStores, event: StripeEvent, *, operator_tenant: str) -> WebhookOutcome:
    """Apply one verified Stripe event (see the module docstring).

    Raises:
        ConflictError: subscription metadata names a tenant for a customer that pays for another tenant.
        StateError: the state store refuses or cannot be reached (Stripe redelivers).
    """
    if event.kind == "meter_errors" and event.meter_errors is not None:
        report = event.meter_errors
        refused = report.refused_identifiers
        flagged = 0
        for billed, _ in await store.billed_tenants():
            flagged += await store.refuse_usage(billed, refused)
        detail = (f"meter {report.meter or '?'}: Stripe refused {report.reason.error_count} event(s) "
                  f"({', '.join(sorted({t.code for t in report.reason.error_types})) or 'no code'}); "
                  f"{flagged} sampled event(s) marked rejected")
        logger.warning("Stripe meter error report %s: %s", event.id, detail)
        return await _record(store, operator_tenant, event, None, lambda stored: (None, detail))
    customer = event.subscription.customer if event.subscription else event.invoice.customer if event.invoice else ""
    if not customer:
        return WebhookOutcome("ignored", f"{event.type} is not handled")
    tenant_id = await store.tenant_for_customer(customer)
    if tenant_id is None and event.subscription is not None:
        named = event.subscription.metadata.get("tenant_id", "")
        if named and await store.tenant_exists(named):
            await store.map_customer(named, customer, "metadata")
            tenant_id = named
    if tenant_id is None:
        return WebhookOutcome("ignored", f"Stripe customer {customer} is not mapped to a tenant; map it with "
                                         "'ironlayer billing customer' (or set tenant_id in the subscription's "
                                         "metadata) and resend the event")
    if event.subscription is not None:
        sub = event.subscription
        return await _record(store, tenant_id, event, sub.id, lambda stored: _subscription_change(stored, event))
    assert event.invoice is not None
    return await _record(store, tenant_id, event, event.invoice.subscription_id,
                         lambda stored: _invoice_change(stored, event))


async def _record(store: BillingStore, tenant_id: str, event: StripeEvent, subscription_id: str | None,
                  decide: _Decide) -> WebhookOutcome:
    outcome = await store.apply_stripe_event(tenant_id, event.id, event.type, event.created_at, subscription_id, decide)
    if outcome is None:
        return WebhookOutcome("duplicate", f"event {event.id} was handled before", tenant_id)
    return WebhookOutcome("applied", outcome, tenant_id)


def _subscription_change(stored: SubscriptionRow | None, event: StripeEvent) -> tuple[SubscriptionRow | None, str]:
    sub = event.subscription
    assert sub is not None
    start, end = sub.period
    incoming = SubscriptionVersion(event.created_at, start, sub.status)
    if stored is not None:
        kept = SubscriptionVersion(stored["event_created"], stored["period_start"], stored["status"])
        if not newer_subscription_state(kept, incoming):
            return None, (f"stale: {event.type} ({sub.status}) is older than the applied state ({stored['status']}); "
                          "kept")
    row = SubscriptionRow(
        subscription_id=sub.id, customer_id=sub.customer, status=sub.status, tier=sub.tier, created=sub.created_at,
        period_start=start, period_end=end, ended_at=sub.ended, event_created=event.created_at,
        invoice_status=stored["invoice_status"] if stored else None,
        invoice_created=stored["invoice_created"] if stored else None,
    )
    return row, f"subscription {sub.id}: {sub.status}, {sub.tier} tier"


def _invoice_change(stored: SubscriptionRow | None, event: StripeEvent) -> tuple[SubscriptionRow | None, str]:
    invoice = event.invoice
    assert invoice is not None
    status: Literal["paid", "payment_failed"] = "paid" if event.type == "invoice.paid" else "payment_failed"
    if stored is None:
        return None, f"invoice {invoice.id} ({status}) of a subscription not known yet; its state comes with it"
    if stored["invoice_created"] is not None and invoice.created_at < stored["invoice_created"]:
        return None, f"stale: invoice {invoice.id} ({status}) is older than the recorded one; kept"
    return ({**stored, "invoice_status": status, "invoice_created": invoice.created_at},
            f"subscription {stored['subscription_id']}: invoice {invoice.id} {status.replace('_', ' ')}")


@dataclass
class SendReport:
    """What one billing run did, by outcome."""

    sent: int = 0
    retried: int = 0
    expired: int = 0
    rejected: int = 0
    errors: list[str] = field(default_factory=list)


async def send_usage(store: BillingStore, client: MeterClient, event_names: Mapping[UsageKind, str], *,
                     now: datetime, batch: int = 200, tenants: Collection[str] | None = None) -> SendReport:
    """Send every billed tenant's (or only `tenants`') due usage events to Stripe (see the module docstring);
    never raises for Stripe."""
    report = SendReport()
    for tenant_id, customer in await store.billed_tenants():
        if tenants is not None and tenant_id not in tenants:
            continue
        for usage in await store.claim_usage(tenant_id, now, batch, LEASE_SECONDS):
            window = meter_window(usage["occurred_at"], now)
            if window == "too_old":
                report.expired += 1
                await store.mark_usage(tenant_id, usage["id"], "expired",
                                       error=f"older than Stripe accepts ({usage['occurred_at']:%Y-%m-%d}; meter "
                                             "events may be at most 35 days old); not sent, bill it by hand")
                continue
            if window == "too_new":  # a clock ahead of Stripe's: wait until it is inside the window
                await store.mark_usage(tenant_id, usage["id"], "pending", error="timestamp ahead of now",
                                       retry_at=usage["occurred_at"] - timedelta(minutes=4))
                report.retried += 1
                continue
            result = await asyncio.to_thread(client.send, event_names[usage["kind"]], customer, usage["quantity"],
                                             usage["identifier"], usage["occurred_at"])
            if result.outcome == "sent":
                report.sent += 1
                await store.mark_usage(tenant_id, usage["id"], "sent", error=result.detail or None)
            elif result.outcome == "retry":
                report.retried += 1
                report.errors.append(result.detail)
                await store.mark_usage(tenant_id, usage["id"], "pending", error=result.detail,
                                       retry_at=now + retry_delay(usage["attempts"] + 1))
            else:
                report.rejected += 1
                report.errors.append(result.detail)
                await store.mark_usage(tenant_id, usage["id"], "rejected", error=result.detail)
    return report


async def check_quota(store: BillingStore, tenant_id: str, instance: str, *, steps: int,
                      now: datetime) -> QuotaDecision:
    """Whether the job of `instance` may start `steps` more steps now; takes its execution slot when it may."""
    granted = await _entitlement(store, tenant_id)
    used = (await store.usage_summary(tenant_id, month_start(now)))["steps"]

    def decide(running: int, holds: bool) -> tuple[QuotaDecision, bool]:
        decision = decide_quota(granted, used_steps=used, upcoming_steps=steps, running_elsewhere=running,
                                holds_slot=holds)
        return decision, decision.status == "ok"

    return await store.claim_execution(tenant_id, instance, decide)


async def quota_preview(store: BillingStore, tenant_id: str, *, steps: int, now: datetime) -> QuotaDecision:
    """Whether a new plan of `steps` steps could start now (nothing is taken)."""
    granted = await _entitlement(store, tenant_id)
    used = (await store.usage_summary(tenant_id, month_start(now)))["steps"]

    def decide(running: int, holds: bool) -> tuple[QuotaDecision, bool]:
        return decide_quota(granted, used_steps=used, upcoming_steps=steps, running_elsewhere=running,
                            holds_slot=False), False

    return await store.claim_execution(tenant_id, "", decide)


def require_quota(decision: QuotaDecision) -> None:
    """Raise the API's error for a decision that is not ok.

    Raises:
        PaymentRequiredError: blocked (402).
        ConcurrencyLimitError: wait (429, with Retry-After).
    """
    if decision.status == "blocked":
        raise PaymentRequiredError(decision.message)
    if decision.status == "wait":
        raise ConcurrencyLimitError(decision.message, retry_after_seconds=decision.retry_after_seconds)


@dataclass(frozen=True)
class UsageReport:
    """A tenant's month: its entitlement, its metered usage, its Stripe customer."""

    entitlement: Entitlement
    usage: UsageSummary
    customer: str | None


async def usage_report(store: BillingStore, tenant_id: str, *, now: datetime) -> UsageReport:
    """This month's usage of the tenant against its tier."""
    return UsageReport(await _entitlement(store, tenant_id), await store.usage_summary(tenant_id, month_start(now)),
                       await store.customer_for_tenant(tenant_id))


async def map_customer(store: BillingStore, tenant_id: str, customer_id: str, *, by: str) -> bool:
    """Map a Stripe customer to a tenant (operators: `ironlayer billing customer`).

    Raises:
        InputError: not a Stripe customer ID.
        ConflictError: the customer pays for another tenant.
    """
    if not customer_id.startswith("cus_") or not customer_id[4:].isalnum() or len(customer_id) > 254:
        raise InputError(f"{customer_id[:60]!r} is not a Stripe customer ID (cus_...); copy it from the dashboard")
    return await store.map_customer(tenant_id, customer_id, by)


async def _entitlement(store: BillingStore, tenant_id: str) -> Entitlement:
    return entitlement(await store.current_subscription(tenant_id, sorted(BLOCKING_STATUSES)))
