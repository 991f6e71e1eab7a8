"""Quotas through the real handlers and PostgreSQL: the concurrency limit of a tier (429, the job waits), an unpaid
or ended subscription and a used-up month (402), the message on the job and its commit status, and the
`GET /api/quota` and `GET /api/usage` endpoints."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from functions import resources
from shared_core.adapters.github.status import LoggedStatusPublisher
from shared_core.adapters.postgres.store import PostgresStateStore
from shared_core.cli.demo import build_demo_repo, default_examples_dir
from shared_core.services.messages import QuotaChecked, QuotaRequest
from tests.functions.conftest import json_body, request
from tests.functions.test_flow import run
from tests.pg import owner_rows as owner

pytestmark = pytest.mark.integration
REPOSITORY = "binkkatal/sample_app"


@pytest.fixture()
def env(app_env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The development repository of the app: the demo project, so a job's clients (and statuses) resolve."""
    path = app_env["tmp"] / "repo"
    v1, _ = build_demo_repo(default_examples_dir(), path)
    monkeypatch.setenv("IRONLAYER_LOCAL_REPO", str(path))
    resources.reset()
    return {**app_env, "v1": v1}


def claim(env: dict[str, Any], instance: str) -> None:
    async def go() -> None:
        store = PostgresStateStore(env["url"])
        try:
            await store.ensure_tenant(env["tenant"], env["tenant"])
            await store.claim_job(env["tenant"], instance, kind="push", repository=REPOSITORY, target=env["v1"])
        finally:
            await store.close()

    asyncio.run(go())


def set_job(env: dict[str, Any], instance: str, status: str) -> None:
    async def go() -> None:
        store = PostgresStateStore(env["url"])
        try:
            await store.upsert_job(env["tenant"], instance, status=status)  # type: ignore[arg-type]
        finally:
            await store.close()

    asyncio.run(go())


def check(env: dict[str, Any], instance: str, steps: int = 3, first: bool = True) -> QuotaChecked:
    checked: QuotaChecked = run("check_quota_activity", QuotaRequest(
        tenant_id=env["tenant"], instance_id=instance, repository=REPOSITORY, target=env["v1"],
        plan_id="p" * 64, steps=steps, first=first))
    return checked


def instances() -> tuple[str, str]:
    return f"push-{uuid.uuid4().hex}", f"push-{uuid.uuid4().hex}"


def test_the_concurrency_limit_queues_a_second_plan_until_the_first_ends(env: dict[str, Any],
                                                                          admin_database_url: str) -> None:
    first, second = instances()
    claim(env, first)
    claim(env, second)
    assert check(env, first)["status"] == "ok"  # community: one plan at a time
    waiting = check(env, second)
    assert waiting == {"status": "wait", "http_status": 429, "retry_after_seconds": 60, "message": (
        "queued: the community tier runs 1 plan at once and 1 are running; this plan starts when one finishes")}
    job = owner(admin_database_url, "SELECT status, detail FROM jobs WHERE tenant_id = $1 AND instance_id = $2",
                env["tenant"], second)
    assert job == [{"status": "queued", "detail": waiting["message"]}]
    publisher = asyncio.run(resources.clients_for(env["tenant"], REPOSITORY)).publisher
    assert isinstance(publisher, LoggedStatusPublisher)
    assert publisher.published[-1] == (env["v1"], "pending", waiting["message"], None)
    assert check(env, first, steps=1, first=False)["status"] == "ok"  # its later waves: it holds its slot
    response = run("quota", request("GET", "/api/quota", params={"steps": "1"}))
    assert response.status_code == 429 and response.headers["Retry-After"] == "60"
    assert json_body(response)["error"]["message"].startswith("queued: the community tier runs 1 plan at once")
    set_job(env, first, "succeeded")  # a job that ended holds no slot, whichever way it ended
    assert check(env, second)["status"] == "ok"
    assert run("quota", request("GET", "/api/quota", params={"steps": "1"})).status_code == 429  # second holds it


def test_an_ended_subscription_blocks_with_402_and_the_plan_waits(env: dict[str, Any],
                                                                   admin_database_url: str) -> None:
    tenant = env["tenant"]
    first, _ = instances()
    claim(env, first)
    owner(admin_database_url, "INSERT INTO stripe_subscriptions (tenant_id, subscription_id, customer_id, status, tier, "
                              "created, event_created) VALUES ($1, $2, $3, 'canceled', 'team', now(), now()) "
                              "RETURNING 1", tenant, f"sub_{tenant}", f"cus_{tenant}")
    blocked = check(env, first)
    assert (blocked["status"], blocked["http_status"], blocked["retry_after_seconds"]) == ("blocked", 402, 3600)
    assert blocked["message"] == (f"waiting: the team subscription sub_{tenant} has ended; pay the open invoice or "
                                  "subscribe again, and the waiting plans resume")
    assert owner(admin_database_url, "SELECT count(*) AS n FROM execution_slots WHERE tenant_id = $1",
                 tenant) == [{"n": 0}]  # a blocked plan takes no slot
    response = run("quota", request("GET", "/api/quota"))
    assert response.status_code == 402 and json_body(response)["error"]["message"] == blocked["message"]
    usage = json_body(run("usage", request("GET", "/api/usage")))
    assert (usage["tier"], usage["subscription_status"], "waiting: " + usage["blocked"]) == (
        "team", "canceled", blocked["message"])
    # paid again: a new active subscription decides, and the plan may start
    owner(admin_database_url, "INSERT INTO stripe_subscriptions (tenant_id, subscription_id, customer_id, status, tier, "
                              "created, event_created) VALUES ($1, $2, $3, 'active', 'team', now(), now()) "
                              "RETURNING 1", tenant, f"sub_{tenant}_2", f"cus_{tenant}")
    assert check(env, first)["status"] == "ok"
    assert run("quota", request("GET", "/api/quota")).status_code == 200


def test_a_used_up_month_blocks_with_402_naming_the_numbers(env: dict[str, Any], admin_database_url: str) -> None:
    tenant = env["tenant"]
    claim(env, "push-" + "0" * 32)  # the tenant's row exists
    owner(admin_database_url, "INSERT INTO usage_events (tenant_id, identifier, kind, quantity) "
                              "VALUES ($1, $2, 'step_executed', 998) RETURNING 1", tenant, f"il_test_{tenant}")
    first, _ = instances()
    claim(env, first)
    blocked = check(env, first, steps=3)
    assert (blocked["status"], blocked["http_status"]) == ("blocked", 402)
    assert blocked["message"] == ("waiting: the community tier includes 1000 steps a month, 998 are used and 3 more "
                                  "would exceed it; upgrade the subscription, or the plan resumes next month")
    assert check(env, first, steps=2)["status"] == "ok"
    assert run("quota", request("GET", "/api/quota", params={"steps": "3"})).status_code == 402
    usage = json_body(run("usage", request("GET", "/api/usage")))
    assert (usage["usage"]["steps"], usage["monthly_steps"], usage["concurrency"]) == (998, 1000, 1)


@pytest.mark.parametrize("steps", ["0", "x", "-1", "1000001"])
def test_the_quota_endpoint_refuses_a_bad_step_count(env: dict[str, Any], steps: str) -> None:
    response = run("quota", request("GET", "/api/quota", params={"steps": steps}))
    assert response.status_code == 400 and "must be a whole number" in json_body(response)["error"]["message"]
