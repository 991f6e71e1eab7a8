"""The approval, audit and credential services on the real state store (PostgreSQL, under row-level security).

Deciding a plan is one ordered operation for the API and the link alike: checks, then the link's single
use, the audit entry, the orchestration event, the job. The recording `raise_event` below reads the
store at the moment the event is raised, so the tests see what was written before it and what after.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.fernet import Fernet

from shared_core.adapters.github.status import LoggedStatusPublisher
from shared_core.adapters.postgres.store import PostgresStateStore
from shared_core.core.errors import (
    AuthorizationError,
    ConflictError,
    CoreError,
    CredentialError,
    InvalidTokenError,
    NotFoundError,
    ReusedTokenError,
    SettingsError,
)
from shared_core.core.state import JobStatus
from shared_core.security.approval_tokens import issue_approval_token, verify_approval_token
from shared_core.security.cipher import CredentialCipher, credential_name
from shared_core.services.approvals import (
    Approver,
    Decision,
    decide_plan,
    link_approver,
    request_approval,
    set_approval_policy,
)
from shared_core.services.audit import list_audit, verify_audit
from shared_core.services.credentials import credential_cipher, credential_names, rotate_credentials, set_credential

pytestmark = pytest.mark.integration

PLAN = "a" * 64
INSTANCE = "push-" + "1" * 32
SECRET = "approval-secret-for-the-service-tests-0123"
NOW = datetime(2024, 3, 1, 12, tzinfo=UTC)
API = Approver(subject="ann", role="operator", via="api")


class Events:
    """A recording `raise_event`: at each event, what the audit log and the job looked like."""

    def __init__(self, store: PostgresStateStore, tenant: str) -> None:
        self.store, self.tenant = store, tenant
        self.raised: list[tuple[str, str, dict[str, str]]] = []
        self.seen: list[tuple[list[str], str]] = []  # (audit actions, job status) when the event was raised

    async def __call__(self, instance: str, name: str, payload: Mapping[str, str]) -> None:
        actions = [row["action"] for row in await list_audit(self.store, self.tenant)]
        job = await self.store.get_job(self.tenant, instance)
        assert job is not None
        self.raised.append((instance, name, dict(payload)))
        self.seen.append((actions, job["status"]))


def scenario(database_url: str, body: Callable[[PostgresStateStore, str], Awaitable[Any]], *,
             job_status: JobStatus | None = "awaiting_approval", author: str = "octocat") -> Any:
    """Run `body(store, tenant)` for a fresh tenant whose plan PLAN has a job in `job_status` (None: no job)."""
    tenant = f"s{uuid.uuid4().hex[:12]}"

    async def run() -> Any:
        store = PostgresStateStore(database_url)
        try:
            await store.ensure_tenant(tenant, tenant)
            if job_status is not None:
                await store.upsert_job(tenant, INSTANCE, kind="push", repository="o/r", target="b" * 40,
                                       plan_id=PLAN, status=job_status, author=author)
            return await body(store, tenant)
        finally:
            await store.close()

    return asyncio.run(run())


def link(tenant: str, *, now: datetime = NOW) -> Any:
    token = issue_approval_token(SECRET, tenant_id=tenant, plan_id=PLAN, action="decide", subject="bob", now=now)
    return verify_approval_token(SECRET, token, plan_id=PLAN, now=now)


@pytest.mark.parametrize("via", ["api", "approval link"])
def test_a_decision_audits_then_raises_the_event_then_updates_the_job(database_url: str, via: str) -> None:
    async def body(store: PostgresStateStore, tenant: str) -> Any:
        events = Events(store, tenant)
        approver = API if via == "api" else link_approver(link(tenant))
        instance = await decide_plan(store, events, tenant_id=tenant, plan_id=PLAN, decision="approve",
                                     approver=approver, comment="looks right", now=NOW)
        job = await store.get_job(tenant, INSTANCE)
        rows = await list_audit(store, tenant)
        return instance, events, job, rows, await verify_audit(store, tenant)

    instance, events, job, rows, report = scenario(database_url, body)
    subject = "ann" if via == "api" else "bob"
    assert instance == INSTANCE
    assert events.raised == [(INSTANCE, "approval", {"decision": "approve", "by": subject, "comment": "looks right"})]
    assert events.seen == [(["plan.approved"], "awaiting_approval")]  # audited before the event; job after it
    assert (job["status"], job["detail"]) == ("running", f"approved by {subject}")
    assert [(r["actor"], r["role"], r["action"], r["target"]) for r in rows] == [(subject, "operator", "plan.approved",
                                                                                  PLAN)]
    assert '"via":"' + via + '"' in rows[0]["details"] and report.ok


def test_a_rejection_leaves_the_job_status_to_the_orchestrator(database_url: str) -> None:
    async def body(store: PostgresStateStore, tenant: str) -> Any:
        events = Events(store, tenant)
        await decide_plan(store, events, tenant_id=tenant, plan_id=PLAN, decision="reject", approver=API,
                          comment="", now=NOW)
        return events, await store.get_job(tenant, INSTANCE)

    events, job = scenario(database_url, body)
    assert events.raised[0][2]["decision"] == "reject" and events.seen[0][0] == ["plan.rejected"]
    assert (job["status"], job["detail"]) == ("awaiting_approval", "rejected by ann")


@pytest.mark.parametrize(
    ("job_status", "author", "make", "error", "message"),
    [
        (None, "octocat", lambda t: API, NotFoundError, "plan aaaaaaaaaaaa not found; nothing was changed"),
        ("running", "octocat", lambda t: API, ConflictError, "is running, not awaiting approval"),
        ("awaiting_approval", "ann", lambda t: API, AuthorizationError, "'ann' pushed this change"),
        ("awaiting_approval", "BOB", lambda t: link_approver(link(t)), AuthorizationError, "'bob' pushed this change"),
        (None, "octocat", lambda t: link_approver(link(t)), NotFoundError, "not found"),
    ],
    ids=["no job", "not awaiting", "api author", "link author", "link without job"],
)
def test_refused_decisions_change_nothing(database_url: str, job_status: JobStatus | None, author: str,
                                          make: Callable[[str], Approver], error: type[CoreError],
                                          message: str) -> None:
    async def body(store: PostgresStateStore, tenant: str) -> Any:
        events = Events(store, tenant)
        approver = make(tenant)
        with pytest.raises(error) as caught:
            await decide_plan(store, events, tenant_id=tenant, plan_id=PLAN, decision="approve", approver=approver,
                              comment="", now=NOW)
        used = await store.token_used(tenant, approver.link.token_id) if approver.link else False
        return caught.value, events, await list_audit(store, tenant), used

    refused, events, rows, used = scenario(database_url, body, job_status=job_status, author=author)
    assert message in str(refused)
    assert events.raised == [] and rows == [] and not used  # nothing recorded, the link still usable


def test_self_approval_is_allowed_once_the_policy_says_so_and_the_change_is_audited(database_url: str) -> None:
    async def body(store: PostgresStateStore, tenant: str) -> Any:
        events = Events(store, tenant)
        settings = await set_approval_policy(store, tenant, {"allow_self_approval": True}, actor="root",
                                             role="admin", now=NOW)
        await decide_plan(store, events, tenant_id=tenant, plan_id=PLAN, decision="approve", approver=API,
                          comment="", now=NOW)
        return settings, [(r["actor"], r["action"], r["details"]) for r in await list_audit(store, tenant)]

    settings, rows = scenario(database_url, body, author="Ann")
    assert settings == {"allow_self_approval": True}
    assert rows[0] == ("root", "settings.changed", '{"after":{"allow_self_approval":true},"before":{}}')
    assert rows[1][:2] == ("ann", "plan.approved")


def test_a_link_decides_once_and_a_revoked_link_not_at_all(database_url: str) -> None:
    async def body(store: PostgresStateStore, tenant: str) -> Any:
        events = Events(store, tenant)

        async def decide(claims: Any, decision: Decision = "approve") -> None:
            await decide_plan(store, events, tenant_id=tenant, plan_id=PLAN, decision=decision,
                              approver=link_approver(claims), comment="", now=NOW)

        first = link(tenant)
        await decide(first)
        with pytest.raises(ReusedTokenError, match="already used"):  # the job runs now: reuse is the answer
            await decide(first)
        await store.upsert_job(tenant, INSTANCE, status="awaiting_approval")  # as if the plan waited again
        with pytest.raises(ReusedTokenError, match="already used"):
            await decide(first, "reject")
        revoked = link(tenant, now=NOW + timedelta(seconds=1))
        await store.revoke_token(tenant, revoked.token_id, NOW + timedelta(days=1))
        with pytest.raises(InvalidTokenError, match="revoked"):
            await decide(revoked)
        return events, [r["action"] for r in await list_audit(store, tenant)]

    events, actions = scenario(database_url, body)
    assert len(events.raised) == 1 and actions == ["plan.approved"]


def test_request_approval_signs_a_link_and_marks_plan_and_job(database_url: str) -> None:
    publisher = LoggedStatusPublisher()

    async def body(store: PostgresStateStore, tenant: str) -> Any:
        sent = await request_approval(store, publisher, secret=SECRET, approval_url=f"https://x.example/{PLAN}",
                                      tenant_id=tenant, plan_id=PLAN, instance_id=INSTANCE, target="c" * 40,
                                      ttl_hours=2, now=NOW)
        return sent, await store.get_job(tenant, INSTANCE), tenant

    sent, job, tenant = scenario(database_url, body, job_status="queued")
    assert publisher.published == [("c" * 40, "pending", f"IronLayer plan {PLAN[:12]} awaits approval", sent)]
    token = sent.split("?token=", 1)[1]
    claims = verify_approval_token(SECRET, token, plan_id=PLAN, now=NOW + timedelta(hours=1), tenant_id=tenant)
    assert (claims.subject, claims.action, claims.expires_at) == ("reviewers", "decide", NOW + timedelta(hours=2))
    assert (job["status"], job["detail"]) == ("awaiting_approval", "waiting for approval")


def test_credentials_are_set_listed_rotated_and_audited_with_the_value_redacted(database_url: str) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()

    async def body(store: PostgresStateStore, tenant: str) -> Any:
        shown = await set_credential(store, tenant, "github_token", "ghp_0123456789abcdefXYZW",
                                     cipher=credential_cipher(old), actor="root", role="admin", now=NOW)
        await set_credential(store, tenant, "databricks_token", "dapi1", cipher=credential_cipher(old),
                             actor="root", role="admin", now=NOW)
        names = await credential_names(store, tenant)
        first = await rotate_credentials(store, tenant, cipher=credential_cipher(f"{new},{old}"), actor="root",
                                         role="admin", now=NOW)
        again = await rotate_credentials(store, tenant, cipher=credential_cipher(f"{new},{old}"), actor="root",
                                         role="admin", now=NOW)
        stored = dict(await store.list_credentials(tenant))
        rows = [(r["action"], r["target"], r["details"]) for r in await list_audit(store, tenant)]
        return shown, names, (first, again), stored, rows, tenant

    shown, names, counts, stored, rows, tenant = scenario(database_url, body, job_status=None)
    assert shown == "****XYZW" and names == ["databricks_token", "github_token"] and counts == (2, 0)
    box = CredentialCipher([new])  # the old key retired: everything still reads
    assert box.decrypt(credential_name(tenant, "github_token"), stored["github_token"]) == "ghp_0123456789abcdefXYZW"
    with pytest.raises(CredentialError):
        CredentialCipher([old]).decrypt(credential_name(tenant, "dapi"), stored["databricks_token"])
    assert rows == [("credential.set", "github_token", '{"value":"****XYZW"}'),
                    ("credential.set", "databricks_token", '{"value":"****"}'),
                    ("credential.rotated", "*", '{"rotated":2}'), ("credential.rotated", "*", '{"rotated":0}')]
    assert "ghp_0123" not in repr(rows)


@pytest.mark.parametrize("keys", ["", " ,\n"])
def test_no_credential_key_is_a_settings_error(keys: str) -> None:
    with pytest.raises(SettingsError, match="IRONLAYER_CREDENTIAL_KEYS is not set"):
        credential_cipher(keys)
