"""Deciding a plan through the real handlers: the approval link's POST and the API's decision endpoint.

The link shows the plan to whoever holds it but decides nothing alone: the POST needs an App Service
Authentication principal (trusted only with IRONLAYER_APP_SERVICE_AUTH) or an API token, of an identity the
tenant registered. The Durable client is the one fake (a `Mock(spec=...)` whose `raise_event` records what
another connection sees at that moment, or fails like an unreachable host); the store is real PostgreSQL.
"""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime
from html import unescape
from typing import Any
from unittest.mock import AsyncMock, Mock
from urllib.parse import urlencode

import asyncpg
import azure.durable_functions as df
import azure.functions as func
import pytest

from functions import resources
from shared_core.core.state import JobStatus
from shared_core.security.approval_tokens import issue_approval_token
from shared_core.services.plans import ReviewDoc, store_plan
from tests.functions.conftest import APPROVAL_SECRET, handler, json_body, request
from tests.functions.test_security import call, jwt_env, token  # noqa: F401  (`jwt_env` is a fixture)
from tests.integration.seeding import deploy_version, seed_awaiting_plan, small_plan

pytestmark = pytest.mark.integration

PLAN = small_plan(("s.orders", "modified", "1" * 64, "2" * 64))
PLAN_ID = PLAN.plan_id
INSTANCE = "push-" + "d" * 32
REPOSITORY = "binkkatal/sample_app"  # the deployment's own repository: its development defaults apply
BOB = "0b4f0000-0000-4000-8000-00000000b0b0"
OCTO = "0b4f0000-0000-4000-8000-0000000000c7"


def seed(tenant: str, *, status: JobStatus | None = "awaiting_approval", author: str = "octocat") -> None:
    """The tenant's plan with its base and its job; registered: api/ann (operator, ann), Bob's and the pusher's
    App Service principals (operator; bob, octocat)."""

    async def make() -> None:
        store = await resources.get_store()
        review = ReviewDoc(checks={"s.orders": {"tests": ["not_null(id)@BLOCK", "unique(id)@BLOCK"]}},
                           sql={"s.orders": ("SELECT 1 AS id", "SELECT 2 AS id")})
        blobs = (await resources.clients_for(tenant, REPOSITORY)).blobs  # the tenant's prefix of the container
        await store_plan(store, blobs, tenant, PLAN, review=review)
        await seed_awaiting_plan(store, tenant, PLAN, INSTANCE, status=status, author=author, repository=REPOSITORY)
        await store.set_identity(tenant, "api", "ann", role="operator", github_login="ann", name="Ann")
        await store.set_identity(tenant, "appservice:aad", BOB, role="operator", github_login="bob", name="Bob")
        await store.set_identity(tenant, "appservice:aad", OCTO, role="operator", github_login="octocat", name="O")

    asyncio.run(make())
    resources.reset()


def principal(oid: str, name: str = "Bob") -> dict[str, str]:
    """The headers App Service Authentication sets for a signed-in Entra ID user."""
    document = {"auth_typ": "aad", "name_typ": "name", "role_typ": "roles",
                "claims": [{"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier", "val": oid},
                           {"typ": "name", "val": name}]}
    return {"X-MS-CLIENT-PRINCIPAL": base64.b64encode(json.dumps(document).encode()).decode(),
            "X-MS-CLIENT-PRINCIPAL-ID": oid, "X-MS-CLIENT-PRINCIPAL-NAME": name, "X-MS-CLIENT-PRINCIPAL-IDP": "aad"}


class Recorder:
    """A Durable client whose `raise_event` notes what another connection saw, and fails its first `fail` calls."""

    def __init__(self, admin_url: str, tenant: str, fail: int = 0) -> None:
        self.admin_url, self.tenant, self.fail = admin_url, tenant, fail
        self.delivered: list[tuple[str, str, Any]] = []
        self.seen: list[tuple[int, str]] = []  # (audit rows, job status) when the event was raised
        self.client = Mock(spec=df.DurableOrchestrationClient)
        self.client.raise_event = AsyncMock(side_effect=self.raise_event)

    async def raise_event(self, instance: str, name: str, payload: Any) -> None:
        conn = await asyncpg.connect(self.admin_url)
        try:
            audit = await conn.fetchval("SELECT count(*) FROM audit_log WHERE tenant_id = $1 AND action LIKE 'plan.%'",
                                        self.tenant)
            status = await conn.fetchval("SELECT status FROM jobs WHERE tenant_id = $1", self.tenant)
        finally:
            await conn.close()
        self.seen.append((audit, status))
        if self.fail:
            self.fail -= 1
            raise OSError("Cannot connect to host 127.0.0.1:7071")
        self.delivered.append((instance, name, payload))


def decided(admin_url: str, tenant: str) -> dict[str, Any]:
    """What the store holds of the decision: audit entries, job status, links used."""

    async def read() -> dict[str, Any]:
        conn = await asyncpg.connect(admin_url)
        try:
            audit = [(r["actor"], r["role"], r["action"]) for r in await conn.fetch(
                "SELECT actor, role, action FROM audit_log WHERE tenant_id = $1 AND action LIKE 'plan.%' ORDER BY seq",
                tenant)]
            status = await conn.fetchval("SELECT status FROM jobs WHERE tenant_id = $1", tenant)
            used = await conn.fetchval("SELECT count(*) FROM used_tokens WHERE tenant_id = $1", tenant)
        finally:
            await conn.close()
        return {"audit": audit, "job": status, "used": used}

    return asyncio.run(read())


def link_token(tenant: str) -> str:
    return issue_approval_token(APPROVAL_SECRET, tenant_id=tenant, plan_id=PLAN_ID, action="decide",
                                subject="reviewers", now=datetime.now(UTC))


def post(link: str, client: Mock, *, decision: str = "approve",
         headers: dict[str, str] | None = None) -> func.HttpResponse:
    body = urlencode({"token": link, "decision": decision}).encode()
    req = request("POST", f"/api/plans/{PLAN_ID}/approval", body=body, route_params={"plan_id": PLAN_ID},
                  headers={"Content-Type": "application/x-www-form-urlencoded", **(headers or {})})
    response: func.HttpResponse = asyncio.run(handler("plan_approval")(req, client=client))
    return response


def title(response: func.HttpResponse) -> str:
    html = response.get_body().decode()
    return html.split("<title>", 1)[1].split(" · IronLayer</title>", 1)[0]


@pytest.fixture()
def easy_auth(app_env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv("IRONLAYER_APP_SERVICE_AUTH", "true")
    resources.reset()
    return app_env


def test_the_link_alone_shows_the_plan_but_cannot_decide(app_env: dict[str, Any], admin_database_url: str) -> None:
    seed(app_env["tenant"])
    recorder = Recorder(admin_database_url, app_env["tenant"])
    link = link_token(app_env["tenant"])
    page = asyncio.run(handler("plan_approval")(
        request("GET", f"/api/plans/{PLAN_ID}/approval", params={"token": link}, route_params={"plan_id": PLAN_ID}),
        client=recorder.client))
    html = page.get_body().decode()
    assert page.status_code == 200 and "Deciding needs you to be signed in" in html
    assert "Tests and contracts (1)" in html and "unique(id)@BLOCK" in html
    alone = post(link, recorder.client)
    assert (alone.status_code, title(alone)) == (401, "Sign in to decide")
    assert "this link only shows the plan" in alone.get_body().decode()
    forged = post(link, recorder.client, headers=principal(BOB))  # the setting is off: anyone could send these
    assert (forged.status_code, title(forged)) == (401, "Sign in to decide")
    assert recorder.seen == [] and decided(admin_database_url, app_env["tenant"]) == {
        "audit": [], "job": "awaiting_approval", "used": 0}


def test_an_app_service_principal_decides_once_through_the_link(easy_auth: dict[str, Any],
                                                                 admin_database_url: str) -> None:
    tenant = easy_auth["tenant"]
    seed(tenant)
    recorder = Recorder(admin_database_url, tenant)
    link = link_token(tenant)
    approved = post(link, recorder.client, headers=principal(BOB))
    assert (approved.status_code, title(approved)) == (200, "Plan approved")
    assert recorder.delivered == [(INSTANCE, "approval", {"decision": "approve", "by": "bob", "comment": ""})]
    assert recorder.seen == [(0, "awaiting_approval")]  # the event goes out before anything is visible
    assert decided(admin_database_url, tenant) == {
        "audit": [(f"appservice:aad/{BOB}", "operator", "plan.approved")], "job": "running", "used": 1}
    again = post(link, recorder.client, headers=principal(BOB))
    assert again.status_code == 410 and len(recorder.delivered) == 1


@pytest.mark.parametrize(
    ("headers", "status", "page_title", "text"),
    [
        (principal(OCTO, name="Someone Else"), 403, "You may not decide this plan", "is GitHub user 'octocat'"),
        (principal("0b4f0000-0000-4000-8000-0000000000ff"), 403, "You may not decide this plan", "is not registered"),
        ({"X-MS-CLIENT-PRINCIPAL": "not base64 json!"}, 401, "Sign in to decide", "cannot be read"),
    ],
    ids=["the pusher, by its identity", "unregistered", "malformed principal"],
)
def test_the_pusher_and_strangers_cannot_approve(easy_auth: dict[str, Any], admin_database_url: str,
                                                 headers: dict[str, str], status: int, page_title: str,
                                                 text: str) -> None:
    seed(easy_auth["tenant"], author="OctoCat")
    recorder = Recorder(admin_database_url, easy_auth["tenant"])
    refused = post(link_token(easy_auth["tenant"]), recorder.client, headers=headers)
    assert (refused.status_code, title(refused)) == (status, page_title)
    assert text in unescape(refused.get_body().decode()) and recorder.seen == []
    assert decided(admin_database_url, easy_auth["tenant"])["used"] == 0


def test_an_api_token_decides_through_the_link_for_its_own_tenant_only(jwt_env: dict[str, Any],  # noqa: F811
                                                                       admin_database_url: str) -> None:
    tenant = jwt_env["tenant"]
    seed(tenant)
    recorder = Recorder(admin_database_url, tenant)
    link = link_token(tenant)

    async def other_tenant() -> None:
        await (await resources.get_store()).ensure_tenant(f"{tenant}-2", "another tenant")

    asyncio.run(other_tenant())
    resources.reset()
    other = post(link, recorder.client, headers={"Authorization": f"Bearer {token(f'{tenant}-2', 'admin')}"})
    assert (other.status_code, title(other)) == (403, "You may not decide this plan")
    viewer = post(link, recorder.client, headers={"Authorization": f"Bearer {token(tenant, 'viewer')}"})
    assert viewer.status_code == 403 and "needs operator or higher" in viewer.get_body().decode()
    approved = post(link, recorder.client, headers={"Authorization": f"Bearer {token(tenant, 'admin')}"})
    assert approved.status_code == 200  # registered as operator: the lower role decides, operators may approve
    assert decided(admin_database_url, tenant)["audit"] == [("api/ann", "operator", "plan.approved")]


def test_a_failed_event_answers_503_leaves_the_link_usable_and_a_retry_decides_once(
        easy_auth: dict[str, Any], admin_database_url: str) -> None:
    tenant = easy_auth["tenant"]
    seed(tenant)
    recorder = Recorder(admin_database_url, tenant, fail=1)
    link = link_token(tenant)
    failed = post(link, recorder.client, headers=principal(BOB))
    assert (failed.status_code, title(failed)) == (503, "Nothing was decided: try again")
    html = failed.get_body().decode()
    assert "the link still works" in html and "Nothing was approved or rejected." in html
    assert decided(admin_database_url, tenant) == {"audit": [], "job": "awaiting_approval", "used": 0}
    retried = post(link, recorder.client, headers=principal(BOB))
    assert retried.status_code == 200
    assert post(link, recorder.client, headers=principal(BOB)).status_code == 410
    assert len(recorder.delivered) == 1 and decided(admin_database_url, tenant) == {
        "audit": [(f"appservice:aad/{BOB}", "operator", "plan.approved")], "job": "running", "used": 1}


def test_a_failed_event_through_the_api_answers_503_json_and_a_retry_decides_once(
        jwt_env: dict[str, Any], admin_database_url: str) -> None:  # noqa: F811
    tenant = jwt_env["tenant"]
    seed(tenant)
    recorder = Recorder(admin_database_url, tenant, fail=1)
    body = json.dumps({"decision": "approve", "comment": "ok"}).encode()

    def decide() -> Any:
        return call("decide_plan", token(tenant, "operator"), method="POST", body=body,
                    route_params={"plan_id": PLAN_ID}, client=recorder.client)

    failed = decide()
    assert failed.status_code == 503 and failed.headers["Content-Type"] == "application/json"
    assert "nothing was recorded" in json_body(failed)["error"]["message"]
    assert decided(admin_database_url, tenant) == {"audit": [], "job": "awaiting_approval", "used": 0}
    retried = decide()
    assert retried.status_code == 202 and json_body(retried) == {"plan_id": PLAN_ID, "decision": "approve",
                                                                 "by": "ann"}
    assert recorder.seen == [(0, "awaiting_approval"), (0, "awaiting_approval")]
    again = decide()
    assert again.status_code == 409 and len(recorder.delivered) == 1
    assert decided(admin_database_url, tenant)["audit"] == [("api/ann", "operator", "plan.approved")]


def test_the_api_refuses_the_pusher_and_strangers_but_lets_the_pusher_reject(jwt_env: dict[str, Any],  # noqa: F811
                                                                              admin_database_url: str) -> None:
    tenant = jwt_env["tenant"]
    seed(tenant, author="Ann")
    recorder = Recorder(admin_database_url, tenant)

    def decide(decision: str, subject: str = "ann", raw: bytes | None = None) -> Any:
        body = raw if raw is not None else json.dumps({"decision": decision}).encode()
        return call("decide_plan", token(tenant, "operator", subject=subject), method="POST", body=body,
                    route_params={"plan_id": PLAN_ID}, client=recorder.client)

    mine = decide("approve")
    assert mine.status_code == 403 and "is GitHub user 'ann', who pushed" in json_body(mine)["error"]["message"]
    stranger = decide("approve", subject="zed")
    assert stranger.status_code == 403 and "api/zed is not registered" in json_body(stranger)["error"]["message"]
    assert decide("reject").status_code == 202  # a pusher may reject its own plan
    assert decide("maybe").status_code == 400
    assert decide("", raw=b" " * (64 * 1024 + 1)).status_code == 413
    assert [payload["decision"] for _, _, payload in recorder.delivered] == ["reject"]


def test_a_stale_plan_is_refused_with_re_plan_as_the_answer(easy_auth: dict[str, Any],
                                                             admin_database_url: str) -> None:
    tenant = easy_auth["tenant"]
    seed(tenant)

    async def newer_plan_ran() -> None:
        await deploy_version(await resources.get_store(), tenant, "s.orders", "9" * 64)

    asyncio.run(newer_plan_ran())
    resources.reset()
    recorder = Recorder(admin_database_url, tenant)
    stale = post(link_token(tenant), recorder.client, headers=principal(BOB))
    assert (stale.status_code, title(stale)) == (409, "This plan is stale: re-plan")
    assert "re-plan and approve the new plan" in stale.get_body().decode() and recorder.seen == []


@pytest.mark.parametrize(
    ("job_status", "status", "page_title", "text"),
    [
        (None, 404, "Plan not found", "not found; nothing was changed"),
        ("running", 409, "This plan is not waiting for approval", "is running, not awaiting approval"),
    ],
)
def test_the_link_answers_the_plans_state_with_its_page(easy_auth: dict[str, Any], admin_database_url: str,
                                                        job_status: JobStatus | None, status: int, page_title: str,
                                                        text: str) -> None:
    seed(easy_auth["tenant"], status=job_status)
    recorder = Recorder(admin_database_url, easy_auth["tenant"])
    page = post(link_token(easy_auth["tenant"]), recorder.client, headers=principal(BOB))
    assert (page.status_code, title(page)) == (status, page_title) and text in page.get_body().decode()
    assert recorder.seen == []


def test_admins_register_change_list_and_remove_identities(jwt_env: dict[str, Any]) -> None:  # noqa: F811
    tenant = jwt_env["tenant"]
    admin = token(tenant, "admin", subject="root")

    def send(name: str, method: str, body: dict[str, Any] | None = None) -> Any:
        return call(name, admin, method=method, body=json.dumps(body or {}).encode())

    put = send("put_identity", "PUT", {"provider": "appservice:aad", "subject": BOB, "role": "operator",
                                       "github_login": "Bob", "name": "Bob"})
    assert put.status_code == 200 and json_body(put)["identity"]["github_login"] == "bob"
    assert send("put_identity", "PUT", {"provider": "api", "subject": "x", "role": "root"}).status_code == 400
    assert send("put_identity", "PUT", {"provider": "api", "subject": "x", "role": "viewer",
                                        "github_login": 7}).status_code == 400
    listed = json_body(send("list_identities", "GET"))["identities"]
    assert [(i["provider"], i["subject"], i["role"]) for i in listed] == [("appservice:aad", BOB, "operator")]
    assert send("delete_identity", "DELETE", {"provider": "appservice:aad", "subject": BOB}).status_code == 200
    assert send("delete_identity", "DELETE", {"provider": "appservice:aad", "subject": BOB}).status_code == 404
    assert json_body(send("list_identities", "GET"))["identities"] == []
    operator = call("put_identity", token(tenant, "operator"), method="PUT",
                    body=b'{"provider": "api", "subject": "me", "role": "admin"}')
    assert operator.status_code == 403  # no one grants themselves a role
