"""`POST /api/stripe/webhook` with the recorded Stripe payloads in correctly signed envelopes: subscriptions and
invoices applied to the customer's tenant on real PostgreSQL, deliveries that are tampered with, stale, unsigned,
duplicated or out of order, customers mapped by command or by subscription metadata, and meter error reports."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from functions import resources
from shared_core.core.billing import meter_identifier
from tests.functions.conftest import handler, json_body, request
from tests.functions.stripe_support import WEBHOOK_SECRET, envelope, fixture, sign, subscription_data
from tests.pg import owner_rows, with_store

pytestmark = pytest.mark.integration
T = TypeVar("T")
NOW = int(time.time())


@pytest.fixture()
def stripe_env(app_env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv("IRONLAYER_STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET)
    resources.reset()
    tenant = app_env["tenant"]
    with_store(app_env["url"], lambda store: store.ensure_tenant(tenant, tenant))
    return app_env


def ids(env: dict[str, Any]) -> tuple[str, str]:
    """This test's Stripe customer and subscription IDs (the session's database is shared by the tests)."""
    return f"cus_{env['tenant']}", f"sub_{env['tenant']}"


def created_data(env: dict[str, Any], name: str = "pay.subscription.created.data.json", **changes: Any) -> Any:
    customer, sub = ids(env)
    return subscription_data(name, **{"id": sub, "customer": customer, **changes})


def deliver(body: bytes, signature: str | None) -> Any:
    headers = {"Stripe-Signature": signature} if signature is not None else {}
    return asyncio.run(handler("stripe_webhook")(request("POST", "/api/stripe/webhook", body=body, headers=headers)))


def map_customer(env: dict[str, Any], customer: str) -> None:
    with_store(env["url"], lambda store: store.map_customer(env["tenant"], customer, "command"))


def subscription(env: dict[str, Any], admin_url: str, subscription_id: str) -> dict[str, Any]:
    rows = owner_rows(admin_url, "SELECT * FROM stripe_subscriptions WHERE subscription_id = $1", subscription_id)
    assert len(rows) == 1 and rows[0]["tenant_id"] == env["tenant"]
    return rows[0]


def test_a_signed_subscription_event_sets_the_tenants_subscription(stripe_env: dict[str, Any],
                                                                    admin_database_url: str) -> None:
    customer, sub = ids(stripe_env)
    map_customer(stripe_env, customer)
    event_id = f"evt_{stripe_env['tenant']}_created"
    body = envelope("customer.subscription.created", created_data(stripe_env), event_id=event_id, created=NOW - 60)
    response = deliver(body, sign(body))
    assert response.status_code == 200
    assert json_body(response) == {"event": event_id, "status": "applied",
                                   "detail": f"subscription {sub}: active, team tier"}
    row = subscription(stripe_env, admin_database_url, sub)
    assert (row["status"], row["tier"], row["customer_id"]) == ("active", "team", customer)
    assert int(row["period_start"].timestamp()) == 1486568724 and int(row["created"].timestamp()) == 1466783124


def test_a_redelivered_event_is_applied_once(stripe_env: dict[str, Any], admin_database_url: str) -> None:
    customer, sub = ids(stripe_env)
    map_customer(stripe_env, customer)
    event_id = f"evt_{stripe_env['tenant']}_dup"
    body = envelope("customer.subscription.created", created_data(stripe_env), event_id=event_id, created=NOW - 60)
    assert json_body(deliver(body, sign(body)))["status"] == "applied"
    again = deliver(body, sign(body))
    assert again.status_code == 200 and json_body(again)["status"] == "duplicate"
    events = owner_rows(admin_database_url, "SELECT event_id, outcome FROM stripe_events WHERE event_id = $1",
                        event_id)
    assert events == [{"event_id": event_id, "outcome": f"subscription {sub}: active, team tier"}]


@pytest.mark.parametrize(
    ("name", "make_signature", "fragment"),
    [
        ("tampered", lambda body: sign(body.replace(b'"active"', b'"trialing"')), "does not verify"),
        ("stale", lambda body: sign(body, at=NOW - 301), "does not verify"),
        ("wrong secret", lambda body: sign(body, secret="whsec_someone_else"), "does not verify"),
        ("no v1 scheme", lambda body: sign(body).replace("v1=", "v0="), "does not verify"),
        ("missing", lambda body: None, "Stripe-Signature header is missing"),
    ],
)
def test_deliveries_that_do_not_verify_are_400_json_and_change_nothing(
        stripe_env: dict[str, Any], admin_database_url: str, name: str,
        make_signature: Callable[[bytes], str | None], fragment: str) -> None:
    map_customer(stripe_env, ids(stripe_env)[0])
    event_id = f"evt_{stripe_env['tenant']}_bad"
    body = envelope("customer.subscription.created", created_data(stripe_env), event_id=event_id, created=NOW)
    response = deliver(body, make_signature(body))
    assert response.status_code == 400
    assert response.headers["Content-Type"] == "application/json"
    error = json_body(response)["error"]
    assert error["status"] == 400 and fragment in error["message"]
    assert owner_rows(admin_database_url, "SELECT 1 FROM stripe_events WHERE event_id = $1", event_id) == []
    assert owner_rows(admin_database_url, "SELECT 1 FROM stripe_subscriptions WHERE subscription_id = $1",
                      ids(stripe_env)[1]) == []


def test_a_signature_within_the_tolerance_verifies(stripe_env: dict[str, Any]) -> None:
    map_customer(stripe_env, ids(stripe_env)[0])
    body = envelope("customer.subscription.created", created_data(stripe_env),
                    event_id=f"evt_{stripe_env['tenant']}_tolerance", created=NOW)
    assert deliver(body, sign(body, at=int(time.time()) - 280)).status_code == 200


def test_a_body_that_is_no_event_is_400(stripe_env: dict[str, Any]) -> None:
    body = b'{"id": "evt_x", "type": "customer.subscription.created", "created": 1}'
    response = deliver(body, sign(body))
    assert response.status_code == 400 and "no data object" in json_body(response)["error"]["message"]


def test_out_of_order_deliveries_never_regress_the_subscription(stripe_env: dict[str, Any],
                                                                 admin_database_url: str) -> None:
    customer, sub = ids(stripe_env)
    tenant = stripe_env["tenant"]
    map_customer(stripe_env, customer)
    deleted = envelope("customer.subscription.deleted",
                       created_data(stripe_env, "pay.subscription.deleted.data.json"),
                       event_id=f"evt_{tenant}_deleted", created=NOW - 10)
    created = envelope("customer.subscription.created", created_data(stripe_env),
                       event_id=f"evt_{tenant}_created_late", created=NOW - 100)
    assert json_body(deliver(deleted, sign(deleted)))["status"] == "applied"
    late = deliver(created, sign(created))  # the older event arrives second
    assert json_body(late)["detail"].startswith("stale: customer.subscription.created (active) is older")
    assert subscription(stripe_env, admin_database_url, sub)["status"] == "canceled"
    # a canceled subscription stays canceled, even for a newer event claiming otherwise
    revived = envelope("customer.subscription.updated", created_data(stripe_env, status="active"),
                       event_id=f"evt_{tenant}_revive", created=NOW)
    assert json_body(deliver(revived, sign(revived)))["detail"].startswith("stale:")
    assert subscription(stripe_env, admin_database_url, sub)["status"] == "canceled"


def test_a_later_period_wins_over_a_later_event_of_an_earlier_period(stripe_env: dict[str, Any],
                                                                     admin_database_url: str) -> None:
    customer, sub = ids(stripe_env)
    tenant = stripe_env["tenant"]
    map_customer(stripe_env, customer)
    renewed = envelope("customer.subscription.updated",
                       created_data(stripe_env, status="active", current_period_start=1489000000,
                                    current_period_end=1491600000), event_id=f"evt_{tenant}_renewed", created=NOW - 50)
    past_due = envelope("customer.subscription.updated", created_data(stripe_env, status="past_due"),  # 1486568724
                        event_id=f"evt_{tenant}_past_due", created=NOW - 40)
    deliver(renewed, sign(renewed))
    assert json_body(deliver(past_due, sign(past_due)))["detail"].startswith("stale:")
    row = subscription(stripe_env, admin_database_url, sub)
    assert (row["status"], int(row["period_start"].timestamp())) == ("active", 1489000000)


def test_the_current_period_is_read_from_the_items_on_newer_api_versions(stripe_env: dict[str, Any],
                                                                         admin_database_url: str) -> None:
    customer, sub = ids(stripe_env)
    data = {"object": {**fixture("openapi.subscription.json"), "id": sub, "customer": customer}}
    map_customer(stripe_env, customer)
    body = envelope("customer.subscription.updated", data, event_id=f"evt_{stripe_env['tenant']}_items", created=NOW)
    assert json_body(deliver(body, sign(body)))["status"] == "applied"
    row = subscription(stripe_env, admin_database_url, sub)
    assert int(row["period_start"].timestamp()) == 1896570518 and int(row["period_end"].timestamp()) == 976287773


def test_invoices_record_payment_and_an_older_invoice_does_not_undo_a_newer_one(
        stripe_env: dict[str, Any], admin_database_url: str) -> None:
    customer, sub = ids(stripe_env)
    tenant = stripe_env["tenant"]
    map_customer(stripe_env, customer)
    created = envelope("customer.subscription.created", created_data(stripe_env, metadata={"tier": "enterprise"}),
                       event_id=f"evt_{tenant}_sub", created=NOW - 100)
    assert json_body(deliver(created, sign(created)))["detail"] == f"subscription {sub}: active, enterprise tier"
    failed_invoice = fixture("pay.invoice.payment_failed.data.json")  # subscription under parent.subscription_details
    failed_invoice["object"]["customer"] = customer
    failed_invoice["object"]["parent"]["subscription_details"]["subscription"] = sub
    failed = envelope("invoice.payment_failed", failed_invoice, event_id=f"evt_{tenant}_inv_failed", created=NOW - 50)
    assert json_body(deliver(failed, sign(failed)))["detail"] == f"subscription {sub}: invoice in_1234 payment failed"
    older = json.loads(json.dumps(failed_invoice))
    older["object"].update(id="in_older", created=failed_invoice["object"]["created"] - 86400)
    paid_late = envelope("invoice.paid", older, event_id=f"evt_{tenant}_inv_older", created=NOW - 40)
    assert json_body(deliver(paid_late, sign(paid_late)))["detail"].startswith("stale: invoice in_older")
    assert subscription(stripe_env, admin_database_url, sub)["invoice_status"] == "payment_failed"
    newer = json.loads(json.dumps(failed_invoice))
    newer["object"].update(id="in_newer", created=failed_invoice["object"]["created"] + 86400)
    paid = envelope("invoice.paid", newer, event_id=f"evt_{tenant}_inv_paid", created=NOW - 30)
    assert json_body(deliver(paid, sign(paid)))["status"] == "applied"
    row = subscription(stripe_env, admin_database_url, sub)
    assert (row["invoice_status"], row["status"], row["tier"]) == ("paid", "active", "enterprise")


def test_an_unmapped_customer_is_ignored_and_a_resend_after_mapping_applies(stripe_env: dict[str, Any],
                                                                            admin_database_url: str) -> None:
    body = envelope("customer.subscription.created", created_data(stripe_env),
                    event_id=f"evt_{stripe_env['tenant']}_unmapped", created=NOW)
    first = deliver(body, sign(body))
    assert first.status_code == 200 and json_body(first)["status"] == "ignored"
    assert "not mapped to a tenant" in json_body(first)["detail"]
    map_customer(stripe_env, ids(stripe_env)[0])
    assert json_body(deliver(body, sign(body)))["status"] == "applied"


def test_subscription_metadata_maps_an_unmapped_customer_to_an_existing_tenant(
        stripe_env: dict[str, Any], admin_database_url: str) -> None:
    tenant = stripe_env["tenant"]
    customer, _ = ids(stripe_env)
    body = envelope("customer.subscription.created", created_data(stripe_env, metadata={"tenant_id": tenant}),
                    event_id=f"evt_{tenant}_meta", created=NOW)
    assert json_body(deliver(body, sign(body)))["status"] == "applied"
    assert owner_rows(admin_database_url, "SELECT tenant_id, mapped_by FROM stripe_customers WHERE customer_id = $1",
                      customer) == [{"tenant_id": tenant, "mapped_by": "metadata"}]
    unknown = created_data(stripe_env, customer=f"{customer}x", id=f"sub_{tenant}x",
                           metadata={"tenant_id": "no-such-tenant"})
    body = envelope("customer.subscription.created", unknown, event_id=f"evt_{tenant}_meta2", created=NOW)
    assert json_body(deliver(body, sign(body)))["status"] == "ignored"


def test_metadata_never_moves_a_customer_of_another_tenant(stripe_env: dict[str, Any], admin_database_url: str) -> None:
    other = f"{stripe_env['tenant']}-b"
    with_store(stripe_env["url"], lambda store: store.ensure_tenant(other, other))
    customer, sub = ids(stripe_env)
    map_customer(stripe_env, customer)
    body = envelope("customer.subscription.created", created_data(stripe_env, metadata={"tenant_id": other}),
                    event_id=f"evt_{stripe_env['tenant']}_owned", created=NOW)
    assert json_body(deliver(body, sign(body)))["status"] == "applied"
    assert subscription(stripe_env, admin_database_url, sub)["tenant_id"] == stripe_env["tenant"]


def test_a_meter_error_report_marks_the_refused_usage_events(stripe_env: dict[str, Any],
                                                             admin_database_url: str) -> None:
    tenant = stripe_env["tenant"]
    map_customer(stripe_env, ids(stripe_env)[0])
    identifier = meter_identifier(tenant, "plan_generated", "f" * 64)
    owner_rows(admin_database_url, "INSERT INTO usage_events (tenant_id, identifier, kind, quantity, status) "
                                   "VALUES ($1, $2, 'plan_generated', 1, 'sent') RETURNING id", tenant, identifier)
    data = {"object": fixture("openapi.billing.meter.json"), "developer_message_summary": "1 event refused",
            "reason": {"error_count": 1, "error_types": [{"code": "meter_event_customer_not_found", "error_count": 1,
                       "sample_errors": [{"error_message": "customer cus_x not found",
                                          "request": {"id": "req_1", "idempotency_key": identifier}}]}]},
            "validation_start": NOW - 3600, "validation_end": NOW}
    body = envelope("billing.meter.error_report_triggered", data, event_id=f"evt_{tenant}_meter", created=NOW)
    response = deliver(body, sign(body))
    assert json_body(response)["detail"] == ("meter meter_123: Stripe refused 1 event(s) "
                                             "(meter_event_customer_not_found); 1 sampled event(s) marked rejected")
    rows = owner_rows(admin_database_url, "SELECT status, last_error FROM usage_events WHERE identifier = $1",
                      identifier)
    assert rows == [{"status": "rejected", "last_error": "meter_event_customer_not_found: customer cus_x not found"}]


def test_without_a_webhook_secret_the_endpoint_refuses_as_misconfigured(app_env: dict[str, Any],
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("IRONLAYER_STRIPE_WEBHOOK_SECRET", raising=False)
    resources.reset()
    body = envelope("invoice.paid", {"object": fixture("openapi.invoice.json")},
                    event_id=f"evt_{app_env['tenant']}_nosecret", created=NOW)
    response = deliver(body, sign(body))
    assert response.status_code == 500 and "IRONLAYER_STRIPE_WEBHOOK_SECRET" in json_body(response)["error"]["message"]


def test_an_event_type_that_is_not_handled_is_acknowledged_and_ignored(stripe_env: dict[str, Any]) -> None:
    body = json.dumps(fixture("openapi.event.json")).encode()  # plan.created, as Stripe's OpenAPI spec records it
    response = deliver(body, sign(body))
    assert response.status_code == 200
    assert json_body(response) == {"event": "evt_1Pgc76B7WZ01zgkWwyRHS12y", "status": "ignored",
                                   "detail": "plan.created is not handled"}


def test_the_stripe_webhook_path_loads_no_engine_and_no_exporter() -> None:
    """Cold start of the Stripe webhook: the Stripe SDK, but no engine, SQL parser or OpenTelemetry exporter."""
    script = """
import asyncio, json, sys, os
os.environ.update(IRONLAYER_ENVIRONMENT="test", IRONLAYER_STRIPE_WEBHOOK_SECRET="whsec_x")
import function_app
import azure.functions as func
fn = {f.get_function_name(): f for f in function_app.app.get_functions()}["stripe_webhook"].get_user_function()
req = func.HttpRequest("POST", "/api/stripe/webhook", body=b'{"id": "evt_1"}', headers={"Stripe-Signature": "t=1,v1=00"})
response = asyncio.run(fn(req))
print(json.dumps([response.status_code, sorted(sys.modules)]))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parents[2]).stdout
    status, loaded = json.loads(out.strip().splitlines()[-1])
    assert status == 400 and "stripe" in {m.split(".")[0] for m in loaded}
    assert not {"duckdb", "databricks", "networkx", "sqlglot"} & {m.split(".")[0] for m in loaded}
    assert [m for m in loaded if m.startswith(("azure.monitor", "opentelemetry.sdk", "opentelemetry.instrumentation"))] == []
