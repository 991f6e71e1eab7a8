"""Metering end to end on real PostgreSQL and the real `stripe` SDK: usage events written with what they count,
sent as Billing Meter events to a recording stand-in for Stripe on 127.0.0.1 (exact bodies, identifiers and
idempotency keys), retried with backoff, never billed twice, flagged when too old for Stripe."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest

from shared_core.adapters.postgres.store import PostgresStateStore
from shared_core.adapters.stripe.meters import StripeMeterClient
from shared_core.core.billing import UsageKind, meter_identifier
from shared_core.services.billing import SendReport, send_usage
from tests.functions.stripe_support import StripeStandIn, serve_stripe
from tests.pg import owner_rows as owner
from tests.pg import with_store
from tests.plans import stub_plan

pytestmark = pytest.mark.integration
T = TypeVar("T")
NAMES: dict[UsageKind, str] = {"plan_generated": "ironlayer_plans", "step_executed": "ironlayer_steps",
         "compute_seconds": "ironlayer_compute_seconds"}
API_KEY = "sk_test_0123456789abcdefghijklmnopqrstuvwxyz"

stripe_api = pytest.fixture(serve_stripe())


@pytest.fixture()
def tenant(database_url: str) -> Iterator[str]:
    name = f"m{uuid.uuid4().hex[:12]}"
    with_store(database_url, lambda store: store.ensure_tenant(name, name))
    yield name


def usage(admin_url: str, tenant: str) -> list[dict[str, Any]]:
    return owner(admin_url, "SELECT kind, identifier, quantity, plan_id, step_id, status, attempts, last_error, "
                            "next_attempt_at, occurred_at FROM usage_events WHERE tenant_id = $1 ORDER BY id", tenant)


def record_work(url: str, tenant: str, plan_id: str, engine_seconds: float) -> int:
    """Store a plan (twice) and finish one step of it under a lock; returns the lock ID."""

    async def work(store: PostgresStateStore) -> int:
        assert await store.save_plan(tenant, stub_plan(plan_id), "{}")
        assert not await store.save_plan(tenant, stub_plan(plan_id), "{}")  # stored before: not metered again
        lock, _ = await store.try_lock(tenant, "m.daily", None, None, "host:1", 60)
        assert lock is not None
        await store.finish_step(tenant, lock, plan_id, "s1", {"engine_seconds": engine_seconds, "rows_written": 3},
                                {"model": "m.daily"}, None)
        return lock

    return with_store(url, work)


def save(url: str, tenant: str, plan_id: str) -> bool:
    return with_store(url, lambda store: store.save_plan(tenant, stub_plan(plan_id), "{}"))


def send(url: str, stand_in: StripeStandIn, now: datetime, tenant: str, retries: int = 0) -> SendReport:
    """Send the test tenant's usage (the session's database holds other tests' tenants too)."""
    client = StripeMeterClient(API_KEY, api_base=stand_in.url, max_network_retries=retries)
    return with_store(url, lambda store: send_usage(store, client, NAMES, now=now, tenants={tenant}))


def test_usage_is_written_with_what_it_counts(database_url: str, admin_database_url: str, tenant: str) -> None:
    plan_id = uuid.uuid4().hex * 2
    lock = record_work(database_url, tenant, plan_id, 2.25)
    rows = usage(admin_database_url, tenant)
    assert [(r["kind"], r["quantity"], r["plan_id"], r["step_id"], r["status"]) for r in rows] == [
        ("plan_generated", 1, plan_id, None, "pending"),
        ("step_executed", 1, plan_id, "s1", "pending"),
        ("compute_seconds", 3, plan_id, "s1", "pending"),  # whole seconds, rounded up
    ]
    assert [r["identifier"] for r in rows] == [
        meter_identifier(tenant, "plan_generated", plan_id),
        meter_identifier(tenant, "step_executed", plan_id, "s1", str(lock)),
        meter_identifier(tenant, "compute_seconds", plan_id, "s1", str(lock)),
    ]


def test_pending_usage_leaves_as_meter_events_with_exact_bodies(database_url: str, admin_database_url: str,
                                                                 tenant: str, stripe_api: StripeStandIn) -> None:
    customer = f"cus_{tenant}"
    with_store(database_url, lambda store: store.map_customer(tenant, customer, "command"))
    plan_id = uuid.uuid4().hex * 2
    record_work(database_url, tenant, plan_id, 0.5)
    events = usage(admin_database_url, tenant)
    report = send(database_url, stripe_api, datetime.now(UTC), tenant)
    assert (report.sent, report.retried, report.expired, report.rejected) == (3, 0, 0, 0)
    assert [r.path for r in stripe_api.requests] == ["/v1/billing/meter_events"] * 3
    for request, event in zip(stripe_api.requests, events, strict=True):
        assert sorted(request.form) == sorted([
            ("event_name", NAMES[event["kind"]]), ("identifier", event["identifier"]),
            ("timestamp", str(int(event["occurred_at"].timestamp()))),
            ("payload[stripe_customer_id]", customer), ("payload[value]", str(event["quantity"])),
        ])
        assert request.headers["idempotency-key"] == event["identifier"]
        assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert [r["status"] for r in usage(admin_database_url, tenant)] == ["sent"] * 3
    assert send(database_url, stripe_api, datetime.now(UTC), tenant).sent == 0  # nothing is sent twice
    assert len(stripe_api.requests) == 3


def test_the_sdk_retries_a_failed_request_with_the_same_identifier_and_idempotency_key(
        database_url: str, admin_database_url: str, tenant: str, stripe_api: StripeStandIn) -> None:
    with_store(database_url, lambda store: store.map_customer(tenant, f"cus_{tenant}", "command"))
    plan_id = uuid.uuid4().hex * 2
    with_store(database_url, lambda store: store.save_plan(tenant, stub_plan(plan_id), "{}"))
    stripe_api.script.append((500, {"error": {"type": "api_error", "message": "try again"}}, {}))
    report = send(database_url, stripe_api, datetime.now(UTC), tenant, retries=2)
    assert report.sent == 1 and len(stripe_api.requests) == 2
    first, second = stripe_api.requests
    assert first.form == second.form and first.headers["idempotency-key"] == second.headers["idempotency-key"]
    assert dict(second.form)["identifier"] == meter_identifier(tenant, "plan_generated", plan_id)


def test_a_failure_that_may_pass_is_retried_later_with_backoff_and_billed_once(
        database_url: str, admin_database_url: str, tenant: str, stripe_api: StripeStandIn) -> None:
    with_store(database_url, lambda store: store.map_customer(tenant, f"cus_{tenant}", "command"))
    plan_id = uuid.uuid4().hex * 2
    with_store(database_url, lambda store: store.save_plan(tenant, stub_plan(plan_id), "{}"))
    now = datetime.now(UTC)
    stripe_api.script.append((503, {"error": {"type": "api_error", "message": "unavailable"}}, {}))
    assert send(database_url, stripe_api, now, tenant).retried == 1
    [row] = usage(admin_database_url, tenant)
    assert (row["status"], row["attempts"]) == ("pending", 1) and "HTTP 503" in row["last_error"]
    assert row["next_attempt_at"] == now + timedelta(minutes=1)
    assert send(database_url, stripe_api, now + timedelta(seconds=30), tenant).sent == 0  # not due yet
    assert len(stripe_api.requests) == 1
    # the first request reached Stripe after all: Stripe refuses the identifier it holds, which counts as sent
    stripe_api.script.append((400, {"error": {"type": "invalid_request_error", "message": (
        f"An event already exists with identifier {row['identifier']}.")}}, {"Stripe-Should-Retry": "false"}))
    assert send(database_url, stripe_api, now + timedelta(minutes=2), tenant).sent == 1
    assert [dict(r.form)["identifier"] for r in stripe_api.requests] == [row["identifier"]] * 2
    [row] = usage(admin_database_url, tenant)
    assert (row["status"], row["attempts"]) == ("sent", 2)


def test_a_refused_event_is_rejected_and_one_too_old_is_flagged_and_not_sent(
        database_url: str, admin_database_url: str, tenant: str, stripe_api: StripeStandIn) -> None:
    with_store(database_url, lambda store: store.map_customer(tenant, f"cus_{tenant}", "command"))
    plans = [uuid.uuid4().hex * 2 for _ in range(2)]
    for plan_id in plans:
        save(database_url, tenant, plan_id)
    now = datetime.now(UTC)
    owner(admin_database_url, "UPDATE usage_events SET occurred_at = $2 WHERE tenant_id = $1 AND plan_id = $3",
          tenant, now - timedelta(days=35, minutes=1), plans[0])
    stripe_api.script.append((400, {"error": {"type": "invalid_request_error", "message": "No such meter",
                                              "param": "event_name"}}, {}))
    report = send(database_url, stripe_api, now, tenant)
    assert (report.sent, report.expired, report.rejected) == (0, 1, 1)
    assert len(stripe_api.requests) == 1 and dict(stripe_api.requests[0].form)["identifier"] == meter_identifier(
        tenant, "plan_generated", plans[1])
    rows = {r["plan_id"]: r for r in usage(admin_database_url, tenant)}
    assert rows[plans[0]]["status"] == "expired" and "older than Stripe accepts" in rows[plans[0]]["last_error"]
    assert rows[plans[1]]["status"] == "rejected" and "No such meter" in rows[plans[1]]["last_error"]


def test_usage_of_a_tenant_without_a_stripe_customer_is_kept_pending(
        database_url: str, admin_database_url: str, tenant: str, stripe_api: StripeStandIn) -> None:
    with_store(database_url, lambda store: store.save_plan(tenant, stub_plan(uuid.uuid4().hex * 2), "{}"))
    send(database_url, stripe_api, datetime.now(UTC), tenant)
    assert [r["status"] for r in usage(admin_database_url, tenant)] == ["pending"]
    assert stripe_api.requests == []
