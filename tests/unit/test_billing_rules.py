"""Billing rules, pure: which subscription state may replace which, entitlements, quota decisions, Stripe's window
for meter events, the recorded Stripe payloads read into models, and the docs' runtime chart."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shared_core.core.billing import (
    TIERS,
    Entitlement,
    SubscriptionRow,
    SubscriptionVersion,
    decide_quota,
    entitlement,
    meter_identifier,
    meter_window,
    newer_subscription_state,
)
from shared_core.core.docs.runtime_chart import ModelRuntime, read_telemetry, runtime_panel
from shared_core.core.errors import InputError, WebhookError
from shared_core.core.stripe_events import read_event
from shared_core.core.telemetry import ModelPoint, ModelStats

FIXTURES = Path(__file__).parents[1] / "fixtures" / "stripe"
T0 = datetime(2024, 3, 1, tzinfo=UTC)
P1, P2 = T0, T0 + timedelta(days=30)


@pytest.mark.parametrize(
    ("stored", "incoming", "applies"),
    [
        (None, SubscriptionVersion(T0, P1, "active"), True),
        (SubscriptionVersion(T0, P1, "active"), SubscriptionVersion(T0 + timedelta(1), P1, "past_due"), True),
        (SubscriptionVersion(T0 + timedelta(1), P1, "past_due"), SubscriptionVersion(T0, P1, "active"), False),
        (SubscriptionVersion(T0, P2, "active"), SubscriptionVersion(T0 + timedelta(1), P1, "unpaid"), False),
        (SubscriptionVersion(T0 + timedelta(1), P1, "unpaid"), SubscriptionVersion(T0, P2, "active"), True),
        (SubscriptionVersion(T0, P1, "canceled"), SubscriptionVersion(T0 + timedelta(9), P2, "active"), False),
        (SubscriptionVersion(T0, P1, "active"), SubscriptionVersion(T0, P1, "canceled"), True),  # same second
        (SubscriptionVersion(T0, P1, "canceled"), SubscriptionVersion(T0, P1, "active"), False),
        (SubscriptionVersion(T0, None, "trialing"), SubscriptionVersion(T0 + timedelta(1), None, "active"), True),
    ],
)
def test_a_state_replaces_the_applied_one_only_when_it_is_not_older(
        stored: SubscriptionVersion | None, incoming: SubscriptionVersion, applies: bool) -> None:
    assert newer_subscription_state(stored, incoming) is applies


def subscription(status: str, tier: str = "team") -> SubscriptionRow:
    return SubscriptionRow(subscription_id="sub_1", customer_id="cus_1", status=status, tier=tier,  # type: ignore[typeddict-item]
                           created=T0, period_start=None, period_end=None, ended_at=None, event_created=T0,
                           invoice_status=None, invoice_created=None)


@pytest.mark.parametrize(("status", "blocked"), [("active", False), ("trialing", False), ("past_due", False),
                                                 ("unpaid", True), ("canceled", True), ("incomplete", True),
                                                 ("incomplete_expired", True), ("paused", True)])
def test_what_a_subscription_status_grants(status: str, blocked: bool) -> None:
    granted = entitlement(subscription(status, "enterprise"))
    assert granted.tier.name == "enterprise" and (granted.blocked is not None) is blocked


@pytest.mark.parametrize(
    ("tier", "used", "upcoming", "running", "holds", "expected"),
    [
        ("community", 0, 1000, 0, False, ("ok", 200)),
        ("community", 0, 1001, 0, False, ("blocked", 402)),
        ("community", 999, 1, 0, False, ("ok", 200)),
        ("community", 0, 1, 1, False, ("wait", 429)),
        ("community", 0, 1, 1, True, ("ok", 200)),  # a later wave of a plan holding its slot
        ("team", 49_000, 500, 4, False, ("ok", 200)),
        ("team", 49_000, 500, 5, False, ("wait", 429)),
        ("enterprise", 10_000_000, 5000, 49, False, ("ok", 200)),
    ],
)
def test_quota_decisions(tier: str, used: int, upcoming: int, running: int, holds: bool,
                         expected: tuple[str, int]) -> None:
    decision = decide_quota(Entitlement(TIERS[tier], "active"), used_steps=used,  # type: ignore[index]
                            upcoming_steps=upcoming, running_elsewhere=running, holds_slot=holds)
    assert (decision.status, decision.http_status) == expected


def test_a_blocked_subscription_blocks_before_any_count() -> None:
    decision = decide_quota(entitlement(subscription("unpaid")), used_steps=0, upcoming_steps=1, running_elsewhere=0,
                            holds_slot=True)
    assert (decision.status, decision.http_status, decision.retry_after_seconds) == ("blocked", 402, 3600)
    assert decision.message == ("waiting: the team subscription sub_1 is unpaid; pay the open invoice or subscribe "
                                "again, and the waiting plans resume")


def test_meter_identifiers_are_stable_distinct_and_fit_stripe() -> None:
    one = meter_identifier("acme", "step_executed", "p" * 64, "s" * 64, "7")
    assert one == meter_identifier("acme", "step_executed", "p" * 64, "s" * 64, "7")
    assert len({one, meter_identifier("acme", "step_executed", "p" * 64, "s" * 64, "8"),
                meter_identifier("acme", "compute_seconds", "p" * 64, "s" * 64, "7"),
                meter_identifier("beta", "step_executed", "p" * 64, "s" * 64, "7")}) == 4
    assert len(one) <= 100 and one.startswith("il_step_executed_")


@pytest.mark.parametrize(("age", "window"), [(timedelta(days=35) - timedelta(seconds=1), "ok"),
                                             (timedelta(days=35, seconds=1), "too_old"),
                                             (-timedelta(minutes=5), "ok"), (-timedelta(minutes=5, seconds=1),
                                                                              "too_new")])
def test_stripes_window_for_meter_events(age: timedelta, window: str) -> None:
    assert meter_window(T0 - age, T0) == window


def test_the_recorded_payloads_read_into_models() -> None:
    def event(name: str, event_type: str) -> bytes:
        data = json.loads((FIXTURES / name).read_text())
        data = data if "object" in data and isinstance(data["object"], dict) else {"object": data}
        return json.dumps({"id": "evt_1", "type": event_type, "created": 1700000000, "data": data}).encode()

    created = read_event(event("pay.subscription.created.data.json", "customer.subscription.created"))
    assert created.kind == "subscription" and created.subscription is not None
    assert (created.subscription.tier, created.subscription.status) == ("team", "active")
    assert [int(t.timestamp()) for t in created.subscription.period if t] == [1486568724, 1488987924]
    openapi = read_event(event("openapi.subscription.json", "customer.subscription.updated"))
    assert openapi.subscription is not None and openapi.subscription.ended is not None
    failed = read_event(event("pay.invoice.payment_failed.data.json", "invoice.payment_failed"))
    assert failed.invoice is not None and failed.invoice.subscription_id == "sub_1234"
    invoice = read_event(event("openapi.invoice.json", "invoice.paid"))
    assert invoice.invoice is not None and invoice.invoice.subscription_id == "subscription"
    other = read_event((FIXTURES / "openapi.event.json").read_bytes())
    assert (other.kind, other.type) == ("other", "plan.created")


def test_a_handled_object_without_a_field_ironlayer_reads_is_a_webhook_error() -> None:
    body = json.dumps({"id": "evt_1", "type": "invoice.paid", "created": 1,
                       "data": {"object": {"id": "in_1", "created": 1}}}).encode()
    with pytest.raises(WebhookError) as refused:
        read_event(body)
    assert str(refused.value) == "the Stripe event's invoice.customer is invalid: Field required"


STATS = ModelStats(model="m.a", engine="duckdb", steps=2, failed=1, p50_seconds=1.5, p95_seconds=2.9,
                   rows_written=1200, cost_usd=0.0123, last_run="2024-03-02T00:00:00+00:00")
POINTS = (ModelPoint(at="2024-03-01T00:00:00+00:00", seconds=1.0, cost_usd=0.001),
          ModelPoint(at="2024-03-02T00:00:00+00:00", seconds=3.0, cost_usd=0.003))


def test_the_runtime_panel_charts_the_numbers_given_and_nothing_without_them() -> None:
    panel = runtime_panel(ModelRuntime(STATS, POINTS))
    assert panel.count("<rect ") == 2 and 'height="116.00"' in panel and 'height="38.67"' in panel
    assert "2 steps · p50 1.50 s · p95 2.90 s · 1,200 rows · est. $0.0123 on duckdb · 1 failed" in panel
    assert "<title>2024-03-02 00:00: 3.00 s, $0.0030</title>" in panel
    assert runtime_panel(ModelRuntime(STATS, POINTS)) == panel
    assert runtime_panel(ModelRuntime(STATS, ())) == "" and runtime_panel(None) == ""
    assert "&lt;script&gt;" in runtime_panel(ModelRuntime({**STATS, "engine": "<script>"}, POINTS))


def test_telemetry_json_is_read_or_refused_naming_the_file() -> None:
    text = json.dumps({"models": [STATS], "points": {"m.a": list(POINTS)}})
    assert read_telemetry(text, "stats.json") == {"m.a": ModelRuntime(STATS, POINTS)}
    for bad in ('{"models": [{"model": "m"}]}', "[]", '{"models": [], "points": {"m": [{"at": "x", "seconds": -1, '
                                                       '"cost_usd": 0}]}}'):
        with pytest.raises(InputError) as refused:
            read_telemetry(bad, "stats.json")
        assert str(refused.value).startswith("stats.json: not the JSON of 'ironlayer runs --stats --json'")
