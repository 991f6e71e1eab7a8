"""Billing rules, pure: plan tiers and their quotas, what a subscription entitles, quota decisions, which
subscription update may overwrite which, and the identity and timing of metered usage.

Values in, values out: the webhook handler, the billing timer and the orchestrator's quota check (through
`shared_core.services.billing`) pass `now` and stored rows in and act on what comes back.

- **Tiers**: `community` (no paid subscription), `team` and `enterprise`, each with a monthly step quota
  (None: unlimited) and a concurrency limit (plans executing at once).
- **Entitlement**: a tenant without a subscription is on `community`. A subscription that is `active`,
  `trialing` or `past_due` (Stripe still retrying the payment) grants its tier; one that is `unpaid`,
  `canceled`, `incomplete`, `incomplete_expired` or `paused` grants nothing: plans wait (402).
- **Ordering**: Stripe may deliver events late, twice or out of order. A delivery changes a subscription only
  when it is not older than what was applied (`newer_subscription_state`); a canceled subscription stays
  canceled (Stripe never revives one).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, TypedDict

__all__ = [
    "ACCEPTED_FUTURE",
    "ACCEPTED_PAST",
    "BLOCKING_STATUSES",
    "TIERS",
    "Entitlement",
    "MeterWindow",
    "QuotaDecision",
    "SubscriptionRow",
    "SubscriptionVersion",
    "Tier",
    "TierName",
    "UsageEventRow",
    "UsageKind",
    "UsageSummary",
    "decide_quota",
    "entitlement",
    "meter_identifier",
    "meter_window",
    "month_start",
    "newer_subscription_state",
    "retry_delay",
]

TierName = Literal["community", "team", "enterprise"]
UsageKind = Literal["plan_generated", "step_executed", "compute_seconds"]

#: How far in the past and the future Stripe accepts a meter event's timestamp (Stripe's API reference for
#: billing meter events: "within the past 35 calendar days or up to 5 minutes in the future").
ACCEPTED_PAST = timedelta(days=35)
ACCEPTED_FUTURE = timedelta(minutes=5)
#: Subscription statuses that grant nothing: the tenant's plans wait until the subscription is paid again.
BLOCKING_STATUSES = frozenset({"unpaid", "canceled", "incomplete", "incomplete_expired", "paused"})
#: Statuses a subscription never leaves (Stripe does not revive them).
TERMINAL_STATUSES = frozenset({"canceled", "incomplete_expired"})


@dataclass(frozen=True)
class Tier:
    """A plan tier: how many steps a month it includes (None: unlimited) and how many plans may run at once."""

    name: TierName
    monthly_steps: int | None
    concurrency: int


TIERS: dict[TierName, Tier] = {
    "community": Tier("community", 1_000, 1),
    "team": Tier("team", 50_000, 5),
    "enterprise": Tier("enterprise", None, 50),
}


class SubscriptionRow(TypedDict):
    """A tenant's subscription as last applied from Stripe (`stripe_subscriptions`)."""

    subscription_id: str
    customer_id: str
    status: str
    tier: TierName
    created: datetime
    period_start: datetime | None
    period_end: datetime | None
    ended_at: datetime | None
    event_created: datetime
    invoice_status: Literal["paid", "payment_failed"] | None
    invoice_created: datetime | None


class UsageEventRow(TypedDict):
    """One metered usage in the outbox, as the billing timer claims it."""

    id: int
    tenant_id: str
    identifier: str
    kind: UsageKind
    quantity: int
    occurred_at: datetime
    attempts: int


class UsageSummary(TypedDict):
    """A tenant's metered usage since `since` (the start of the month), by kind, and what is still unsent."""

    since: datetime
    plans: int
    steps: int
    compute_seconds: int
    pending: int
    expired: int


@dataclass(frozen=True)
class SubscriptionVersion:
    """What orders two states of one subscription: the event's time, the current period's start, the status."""

    event_created: datetime
    period_start: datetime | None
    status: str


def newer_subscription_state(stored: SubscriptionVersion | None, incoming: SubscriptionVersion) -> bool:
    """Whether `incoming` may replace `stored` (None: nothing stored yet).

    A terminal status (canceled) is final; a later current period wins; within the same period, the later
    event wins, and an event of the same second wins only when it moves towards the end of the subscription.

    >>> t = datetime(2024, 1, 1)
    >>> active, canceled = SubscriptionVersion(t, t, "active"), SubscriptionVersion(t, t, "canceled")
    >>> newer_subscription_state(canceled, SubscriptionVersion(t + timedelta(days=1), t, "active"))
    False
    >>> newer_subscription_state(active, canceled), newer_subscription_state(canceled, active)
    (True, False)
    """
    if stored is None:
        return True
    if stored.status in TERMINAL_STATUSES:
        return False
    if stored.period_start and incoming.period_start and incoming.period_start != stored.period_start:
        return incoming.period_start > stored.period_start
    if incoming.event_created != stored.event_created:
        return incoming.event_created > stored.event_created
    return _rank(incoming.status) >= _rank(stored.status)


def _rank(status: str) -> int:
    """How far along its life a status is: a same-second tie goes to the later stage."""
    order = ("incomplete", "trialing", "active", "past_due", "unpaid", "paused", "incomplete_expired", "canceled")
    return order.index(status) if status in order else 0


@dataclass(frozen=True)
class Entitlement:
    """What a tenant may do now: its tier, its subscription's status (`none`: never subscribed), and whether
    its plans may execute at all (`blocked` with the reason when not)."""

    tier: Tier
    status: str
    blocked: str | None = None


def entitlement(subscription: SubscriptionRow | None) -> Entitlement:
    """The entitlement of a tenant whose newest subscription is `subscription` (None: none, the free tier).

    >>> entitlement(None).tier.name, entitlement(None).blocked
    ('community', None)
    """
    if subscription is None:
        return Entitlement(TIERS["community"], "none")
    status = subscription["status"]
    tier = TIERS[subscription["tier"]]
    if status in BLOCKING_STATUSES:
        why = "has ended" if status in TERMINAL_STATUSES else f"is {status.replace('_', ' ')}"
        return Entitlement(tier, status, f"the {tier.name} subscription {subscription['subscription_id']} {why}; "
                                         "pay the open invoice or subscribe again, and the waiting plans resume")
    return Entitlement(tier, status)


@dataclass(frozen=True)
class QuotaDecision:
    """Whether a plan (or its next wave) may execute now.

    `ok`; `wait` (the concurrency limit is reached: HTTP 429, retry soon); or `blocked` (the subscription is
    unpaid or ended, or the month's steps are used up: HTTP 402, retry when that changes). `message` is one
    line for the commit status and the API.
    """

    status: Literal["ok", "wait", "blocked"]
    message: str
    http_status: int = 200
    retry_after_seconds: int = 0


def decide_quota(granted: Entitlement, *, used_steps: int, upcoming_steps: int, running_elsewhere: int,
                 holds_slot: bool) -> QuotaDecision:
    """Decide whether `upcoming_steps` more steps may start now.

    Args:
        granted: the tenant's entitlement.
        used_steps: steps executed this month (metered).
        upcoming_steps: the steps about to start (the whole plan before it starts, the wave before a wave).
        running_elsewhere: other plans of the tenant executing now.
        holds_slot: this plan is executing already (a later wave): concurrency does not apply again.

    >>> from shared_core.core.billing import TIERS
    >>> decide_quota(Entitlement(TIERS["team"], "active"), used_steps=10, upcoming_steps=5, running_elsewhere=0,
    ...              holds_slot=False).status
    'ok'
    >>> decide_quota(Entitlement(TIERS["community"], "none"), used_steps=0, upcoming_steps=1, running_elsewhere=1,
    ...              holds_slot=False).http_status
    429
    """
    tier = granted.tier
    if granted.blocked:
        return QuotaDecision("blocked", f"waiting: {granted.blocked}", 402, 3600)
    quota = tier.monthly_steps
    if quota is not None and used_steps + upcoming_steps > quota:
        return QuotaDecision(
            "blocked",
            f"waiting: the {tier.name} tier includes {quota} steps a month, {used_steps} are used and "
            f"{upcoming_steps} more would exceed it; upgrade the subscription, or the plan resumes next month",
            402, 3600,
        )
    if not holds_slot and running_elsewhere >= tier.concurrency:
        plans = "plan" if tier.concurrency == 1 else "plans"
        return QuotaDecision(
            "wait",
            f"queued: the {tier.name} tier runs {tier.concurrency} {plans} at once and {running_elsewhere} "
            "are running; this plan starts when one finishes",
            429, 60,
        )
    return QuotaDecision("ok", "ok")


def month_start(now: datetime) -> datetime:
    """The first instant of `now`'s calendar month (UTC), where monthly quotas restart.

    >>> month_start(datetime(2024, 2, 29, 13, 5)).isoformat()
    '2024-02-01T00:00:00'
    """
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def meter_identifier(tenant_id: str, kind: UsageKind, *parts: str) -> str:
    """The Stripe meter event identifier of one usage: derived from what it counts, so a resend is recognized.

    At most 100 characters (Stripe's limit), the same for the same inputs.

    >>> meter_identifier("acme", "plan_generated", "ab" * 32)[:22]
    'il_plan_generated_98ba'
    >>> meter_identifier("acme", "plan_generated", "x") == meter_identifier("acme", "plan_generated", "x")
    True
    """
    digest = hashlib.sha256("\x1f".join((tenant_id, kind, *parts)).encode()).hexdigest()
    return f"il_{kind}_{digest[:48]}"


MeterWindow = Literal["ok", "too_old", "too_new"]


def meter_window(occurred_at: datetime, now: datetime) -> MeterWindow:
    """Whether Stripe still accepts a meter event of `occurred_at` (see `ACCEPTED_PAST`, `ACCEPTED_FUTURE`).

    >>> now = datetime(2024, 3, 1)
    >>> meter_window(now - timedelta(days=34), now), meter_window(now - timedelta(days=36), now)
    ('ok', 'too_old')
    """
    if occurred_at < now - ACCEPTED_PAST:
        return "too_old"
    if occurred_at > now + ACCEPTED_FUTURE:
        return "too_new"
    return "ok"


def retry_delay(attempts: int) -> timedelta:
    """How long to wait before sending an event again after `attempts` failed tries: 1, 2, 4, ... minutes,
    at most 6 hours.

    >>> [int(retry_delay(n).total_seconds()) for n in (1, 2, 3, 20)]
    [60, 120, 240, 21600]
    """
    return timedelta(seconds=min(60 * 2 ** max(attempts - 1, 0), 6 * 3600))
