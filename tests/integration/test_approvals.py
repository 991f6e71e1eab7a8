"""The approval, identity, audit and credential services on the real state store (PostgreSQL, under RLS).

Deciding a plan is one ordered operation for the API and the link alike: checks (link, job, registered
identity and role, separation of duties by GitHub login, staleness), then in one transaction the link's
single use, job and plan, the orchestration event and the audit entry. The recording `raise_event`
below reads the store from another connection at the moment the event is raised, so the tests see that
nothing of the decision is visible before it commits, and that a failed event leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from cryptography.fernet import Fernet

from shared_core.adapters.blobs import LocalBlobStore
from shared_core.adapters.github.status import LoggedStatusPublisher
from shared_core.adapters.postgres.store import PostgresStateStore
from shared_core.core.errors import (
    AuthorizationError,
    ConflictError,
    CoreError,
    CredentialError,
    InputError,
    InvalidTokenError,
    NotFoundError,
    OrchestrationUnavailableError,
    ReusedTokenError,
    SettingsError,
    StalePlanError,
    StateUnavailableError,
)
from shared_core.core.planning.plan_codec import plan_to_json
from shared_core.core.state import IdentityRow, JobStatus
from shared_core.security.approval_tokens import issue_approval_token, verify_approval_token
from shared_core.security.cipher import CredentialCipher, credential_name
from shared_core.services.apply import start_execution
from shared_core.services.approvals import Approver, Decision, decide_plan, request_approval, set_approval_policy
from shared_core.services.audit import list_audit, verify_audit
from shared_core.services.credentials import credential_cipher, credential_names, rotate_credentials, set_credential
from shared_core.services.identities import list_identities, remove_identity, set_identity
from tests.integration.seeding import deploy_version, seed_awaiting_plan, small_plan

pytestmark = pytest.mark.integration

PLAN = small_plan(("s.orders", "modified", "1" * 64, "2" * 64), ("s.new", "added", None, "3" * 64))
PLAN_ID = PLAN.plan_id
INSTANCE = "push-" + "1" * 32
SECRET = "approval-secret-for-the-service-tests-0123"
NOW = datetime(2024, 3, 1, 12, tzinfo=UTC)
ANN = Approver(provider="api", subject="ann", via="api", token_role="operator")
BOB_AAD = "appservice:aad"


class Events:
    """A recording `raise_event`: at each event, what another connection saw of the decision then.

    `fail` makes the next calls raise like the Durable client does when the host cannot be reached.
    """

    def __init__(self, store: PostgresStateStore, tenant: str, *, fail: int = 0) -> None:
        self.store, self.tenant, self.fail = store, tenant, fail
        self.raised: list[tuple[str, str, dict[str, str]]] = []
        self.seen: list[tuple[list[str], str, bool]] = []  # (audit actions, job status, any link used) then

    async def __call__(self, instance: str, name: str, payload: Mapping[str, str]) -> None:
        # its own connection, as the orchestration's would be (not the deciding store's pool)
        actions = [row["action"] for row in await _owner(
            f"SELECT action FROM audit_log WHERE tenant_id = '{self.tenant}' ORDER BY seq")]
        job = await _owner(f"SELECT status FROM jobs WHERE tenant_id = '{self.tenant}' AND instance_id = '{instance}'")
        used = bool(await _owner(f"SELECT 1 FROM used_tokens WHERE tenant_id = '{self.tenant}'"))
        self.seen.append((actions, job[0]["status"], used))
        if self.fail:
            self.fail -= 1
            raise ConnectionError("Cannot connect to host localhost:7071")
        self.raised.append((instance, name, dict(payload)))


ADMIN_URL: list[str] = []


async def _owner(sql: str) -> list[Any]:
    conn = await asyncpg.connect(ADMIN_URL[0])
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


@pytest.fixture(autouse=True)
def _admin(admin_database_url: str) -> None:
    ADMIN_URL[:] = [admin_database_url]


def scenario(database_url: str, body: Callable[[PostgresStateStore, str], Awaitable[Any]], *,
             job_status: JobStatus | None = "awaiting_approval", author: str = "octocat",
             identities: tuple[tuple[str, str, str, str | None], ...] = (
                 ("api", "ann", "operator", "ann"), (BOB_AAD, "0b4f-bob", "operator", "bob"))) -> Any:
    """Run `body(store, tenant)` for a fresh tenant: PLAN stored with its base, its job in `job_status` (None: no
    job) pushed by `author`, and the `(provider, subject, role, github_login)` identities registered."""
    tenant = f"s{uuid.uuid4().hex[:12]}"

    async def run() -> Any:
        store = PostgresStateStore(database_url)
        try:
            await seed_awaiting_plan(store, tenant, PLAN, INSTANCE, status=job_status, author=author)
            for provider, subject, role, login in identities:
                await store.set_identity(tenant, provider, subject, role=role, github_login=login, name="")
            return await body(store, tenant)
        finally:
            await store.close()

    return asyncio.run(run())


def link(tenant: str, *, now: datetime = NOW) -> Any:
    token = issue_approval_token(SECRET, tenant_id=tenant, plan_id=PLAN_ID, action="decide", subject="reviewers",
                                 now=now)
    return verify_approval_token(SECRET, token, plan_id=PLAN_ID, now=now)


def by_link(tenant: str, provider: str = BOB_AAD, subject: str = "0b4f-bob", **kwargs: Any) -> Approver:
    return Approver(provider=provider, subject=subject, via="approval link", link=link(tenant), **kwargs)


async def decide(store: PostgresStateStore, events: Any, tenant: str, approver: Approver,
                 decision: Decision = "approve", comment: str = "") -> str:
    return await decide_plan(store, events, tenant_id=tenant, plan_id=PLAN_ID, decision=decision,
                             approver=approver, comment=comment, now=NOW)


async def state(store: PostgresStateStore, tenant: str) -> dict[str, Any]:
    """What a decision leaves: audit rows, job status and detail, plan status, used links."""
    job = await store.get_job(tenant, INSTANCE)
    plans = {p["plan_id"]: p["status"] for p in await store.list_plans(tenant)}
    used = await _owner(f"SELECT jti FROM used_tokens WHERE tenant_id = '{tenant}'")
    return {"audit": [(r["actor"], r["role"], r["action"], r["target"]) for r in await list_audit(store, tenant)],
            "job": (job["status"], job["detail"]) if job else None, "plan": plans.get(PLAN_ID),
            "used": len(used)}


@pytest.mark.parametrize("via", ["api", "approval link"])
def test_a_decision_raises_the_event_and_audits_in_one_transaction(database_url: str, via: str) -> None:
    async def body(store: PostgresStateStore, tenant: str) -> Any:
        events = Events(store, tenant)
        approver = ANN if via == "api" else by_link(tenant)
        instance = await decide(store, events, tenant, approver, comment="looks right")
        rows = await list_audit(store, tenant)
        return instance, events, await state(store, tenant), rows, await verify_audit(store, tenant)

    instance, events, after, rows, report = scenario(database_url, body)
    who, key = ("ann", "api/ann") if via == "api" else ("bob", f"{BOB_AAD}/0b4f-bob")
    assert instance == INSTANCE
    assert events.raised == [(INSTANCE, "approval", {"decision": "approve", "by": who, "comment": "looks right"})]
    assert events.seen == [([], "awaiting_approval", False)]  # nothing of the decision is visible before it commits
    assert after == {"audit": [(key, "operator", "plan.approved", PLAN_ID)], "job": ("running", f"approved by {who}"),
                     "plan": "approved", "used": 0 if via == "api" else 1}
    assert f'"via":"{via}"' in rows[0]["details"] and report.ok


def test_a_rejection_leaves_the_job_status_to_the_orchestrator(database_url: str) -> None:
    async def body(store: PostgresStateStore, tenant: str) -> Any:
        events = Events(store, tenant)
        await decide(store, events, tenant, ANN, "reject")
        return events, await state(store, tenant)

    events, after = scenario(database_url, body)
    assert events.raised[0][2]["decision"] == "reject"
    assert after["audit"] == [("api/ann", "operator", "plan.rejected", PLAN_ID)]
    assert (after["job"], after["plan"]) == (("awaiting_approval", "rejected by ann"), "rejected")


NO_LOGIN = (("api", "ann", "operator", None),)
VIEWER = (("api", "ann", "viewer", "ann"),)


@pytest.mark.parametrize(
    ("job_status", "author", "identities", "make", "error", "message"),
    [
        (None, "octocat", None, lambda t: ANN, NotFoundError, "not found; nothing was changed"),
        ("running", "octocat", None, lambda t: ANN, ConflictError, "is running, not awaiting approval"),
        ("awaiting_approval", "octocat", None, lambda t: Approver(provider="api", subject="carol", via="api"),
         AuthorizationError, "api/carol is not registered to decide"),
        ("awaiting_approval", "octocat", VIEWER, lambda t: ANN, AuthorizationError, "role 'viewer' may not call"),
        ("awaiting_approval", "octocat", None, lambda t: Approver(provider="api", subject="ann", via="api",
                                                                 token_role="viewer"),
         AuthorizationError, "role 'viewer' may not call approve_plan"),  # the lower of token and registration
        ("awaiting_approval", "octocat", None, lambda t: Approver(provider="api", subject="ann", via="api",
                                                                 token_role="service"),
         AuthorizationError, "carries no human role"),
        ("awaiting_approval", "Ann", None, lambda t: ANN, AuthorizationError, "is GitHub user 'ann', who pushed"),
        ("awaiting_approval", "BOB", None, by_link, AuthorizationError, "is GitHub user 'bob', who pushed"),
        ("awaiting_approval", "octocat", NO_LOGIN, lambda t: ANN, AuthorizationError, "has no GitHub login mapped"),
        ("awaiting_approval", "octocat", None, lambda t: by_link(t, subject="0b4f-mallory"), AuthorizationError,
         "appservice:aad/0b4f-mallory is not registered"),
        (None, "octocat", None, by_link, NotFoundError, "not found"),
    ],
    ids=["no job", "not awaiting", "unregistered", "viewer", "token role caps", "service token", "api pusher",
         "link pusher",
         "no login mapped", "unregistered principal", "link without job"],
)
def test_refused_decisions_change_nothing(database_url: str, job_status: JobStatus | None, author: str,
                                          identities: tuple[tuple[str, str, str, str | None], ...] | None, make: Callable[[str], Approver], error: type[CoreError],
                                          message: str) -> None:
    async def body(store: PostgresStateStore, tenant: str) -> Any:
        events = Events(store, tenant)
        with pytest.raises(error) as caught:
            await decide(store, events, tenant, make(tenant))
        return caught.value, events, await state(store, tenant)

    extra = {"identities": identities} if identities is not None else {}
    refused, events, after = scenario(database_url, body, job_status=job_status, author=author, **extra)
    assert message in str(refused)
    assert events.seen == [] and after["audit"] == [] and after["used"] == 0  # nothing recorded, the link usable


def test_separation_compares_identities_not_display_strings(database_url: str) -> None:
    """The pusher is `octocat`; an identity whose subject and name read `octocat` but whose GitHub login is `ann`
    is another person, and an App Service principal mapped to `octocat` is the pusher whatever it is called."""
    async def body(store: PostgresStateStore, tenant: str) -> Any:
        await store.set_identity(tenant, "api", "octocat", role="operator", github_login="ann", name="octocat")
        await store.set_identity(tenant, BOB_AAD, "0b4f-octo", role="admin", github_login="octocat", name="Octo Cat")
        events = Events(store, tenant)
        with pytest.raises(AuthorizationError, match="who pushed this change"):
            await decide(store, events, tenant, by_link(tenant, subject="0b4f-octo"))
        await decide(store, events, tenant, Approver(provider="api", subject="octocat", via="api"))
        return events, await state(store, tenant)

    events, after = scenario(database_url, body, author="OctoCat")
    assert [payload["by"] for _, _, payload in events.raised] == ["ann"]
    assert after["audit"] == [("api/octocat", "operator", "plan.approved", PLAN_ID)]


def test_self_approval_is_allowed_once_the_policy_says_so_and_the_change_is_audited(database_url: str) -> None:
    async def body(store: PostgresStateStore, tenant: str) -> Any:
        events = Events(store, tenant)
        settings = await set_approval_policy(store, tenant, {"allow_self_approval": True}, actor="root",
                                             role="admin", now=NOW)
        await decide(store, events, tenant, ANN)
        return settings, [(r["actor"], r["action"], r["details"]) for r in await list_audit(store, tenant)]

    settings, rows = scenario(database_url, body, author="Ann")
    assert settings == {"allow_self_approval": True}
    assert rows[0] == ("root", "settings.changed", '{"after":{"allow_self_approval":true},"before":{}}')
    assert rows[1][:2] == ("api/ann", "plan.approved")


def test_a_link_decides_once_and_a_revoked_link_not_at_all(database_url: str) -> None:
    async def body(store: PostgresStateStore, tenant: str) -> Any:
        events = Events(store, tenant)
        first = by_link(tenant)
        await decide(store, events, tenant, first)
        with pytest.raises(ReusedTokenError, match="already used"):  # the job runs now: reuse is the answer
            await decide(store, events, tenant, first)
        await store.upsert_job(tenant, INSTANCE, status="awaiting_approval")  # as if the plan waited again
        with pytest.raises(ReusedTokenError, match="already used"):
            await decide(store, events, tenant, first, "reject")
        revoked = link(tenant, now=NOW + timedelta(seconds=1))
        await store.revoke_token(tenant, revoked.token_id, NOW + timedelta(days=1))
        with pytest.raises(InvalidTokenError, match="revoked"):
            await decide(store, events, tenant, Approver(provider=BOB_AAD, subject="0b4f-bob", via="approval link",
                                                         link=revoked))
        return events, [r["action"] for r in await list_audit(store, tenant)]

    events, actions = scenario(database_url, body)
    assert len(events.raised) == 1 and actions == ["plan.approved"]


@pytest.mark.parametrize("via", ["api", "approval link"])
def test_a_failed_event_leaves_the_link_usable_and_no_audit_entry_and_a_retry_decides_once(database_url: str,
                                                                                         via: str) -> None:
    async def body(store: PostgresStateStore, tenant: str) -> Any:
        events = Events(store, tenant, fail=1)
        approver = ANN if via == "api" else by_link(tenant)
        with pytest.raises(OrchestrationUnavailableError) as caught:
            await decide(store, events, tenant, approver)
        failed = await state(store, tenant)
        await decide(store, events, tenant, approver)  # the retry, with the same link
        retried = await state(store, tenant)
        with pytest.raises(ReusedTokenError if via == "approval link" else ConflictError):
            await decide(store, events, tenant, approver)
        return caught.value, failed, retried, events, await state(store, tenant)

    error, failed, retried, events, final = scenario(database_url, body)
    assert "could not be told of the decision (ConnectionError)" in str(error)
    assert "nothing was recorded and the link still works" in str(error)
    assert failed == {"audit": [], "job": ("awaiting_approval", None), "plan": "awaiting_approval", "used": 0}
    key = "api/ann" if via == "api" else f"{BOB_AAD}/0b4f-bob"
    assert retried["audit"] == [(key, "operator", "plan.approved", PLAN_ID)] and retried["plan"] == "approved"
    assert len(events.raised) == 1 and len(events.seen) == 2  # one failed attempt, one delivered event
    assert final == retried


def test_concurrent_decisions_record_and_raise_exactly_one(database_url: str) -> None:
    async def body(store: PostgresStateStore, tenant: str) -> Any:
        events = Events(store, tenant)
        approvers = [ANN, by_link(tenant), by_link(tenant), ANN, by_link(tenant)]
        results = await asyncio.gather(*(decide(store, events, tenant, a) for a in approvers),
                                       return_exceptions=True)
        return results, events, await state(store, tenant)

    results, events, after = scenario(database_url, body)
    assert sum(r == INSTANCE for r in results) == 1
    assert all(isinstance(r, ConflictError | ReusedTokenError) for r in results if r != INSTANCE)
    assert len(events.raised) == 1 and len(after["audit"]) == 1


def test_an_approval_of_a_stale_plan_is_refused_and_a_rejection_is_not(database_url: str) -> None:
    async def body(store: PostgresStateStore, tenant: str) -> Any:
        events = Events(store, tenant)
        await deploy_version(store, tenant, "s.orders", "9" * 64)  # a newer plan deployed s.orders meanwhile
        with pytest.raises(StalePlanError) as caught:
            await decide(store, events, tenant, ANN)
        refused = await state(store, tenant)
        await decide(store, events, tenant, ANN, "reject")
        return caught.value, refused, events

    error, refused, events = scenario(database_url, body)
    assert f"stale plan {PLAN_ID[:12]}: s.orders was deployed again by plan eeeeeeeeeeee" in str(error)
    assert "re-plan" in str(error)
    assert refused["audit"] == [] and refused["job"] == ("awaiting_approval", None)
    assert [payload["decision"] for _, _, payload in events.raised] == ["reject"]


def test_an_event_delivered_before_a_failed_commit_does_not_run_the_plan(database_url: str, tmp_path: Any) -> None:
    """The event went out, then PostgreSQL dropped the decision's connection before it committed: nothing is
    recorded, and the orchestration, woken by the event, refuses to execute (fail closed)."""
    blobs = LocalBlobStore(tmp_path / "blobs")
    blobs.put(f"plans/{PLAN_ID}.json", plan_to_json(PLAN).encode())

    class DropsTheConnection(Events):
        async def __call__(self, instance: str, name: str, payload: Mapping[str, str]) -> None:
            await super().__call__(instance, name, payload)
            await _owner("SELECT pg_terminate_backend(l.pid) FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
                         "WHERE l.locktype = 'advisory' AND l.granted AND a.usename = 'ironlayer_app'")

    async def body(store: PostgresStateStore, tenant: str) -> Any:
        events = DropsTheConnection(store, tenant)
        with pytest.raises(StateUnavailableError):
            await decide(store, events, tenant, by_link(tenant))
        started = await start_execution(store, blobs, tenant_id=tenant, plan_id=PLAN_ID, instance=INSTANCE)
        return events, started, await state(store, tenant)

    events, started, after = scenario(database_url, body)
    assert len(events.raised) == 1  # the orchestration was told
    assert after == {"audit": [], "job": ("awaiting_approval", None), "plan": "awaiting_approval", "used": 0}
    assert started.status == "failed" and "was not recorded" in started.detail


def test_request_approval_signs_a_link_and_marks_plan_and_job(database_url: str) -> None:
    publisher = LoggedStatusPublisher()

    async def body(store: PostgresStateStore, tenant: str) -> Any:
        sent = await request_approval(store, publisher, secret=SECRET, approval_url=f"https://x.example/{PLAN_ID}",
                                      tenant_id=tenant, plan_id=PLAN_ID, instance_id=INSTANCE, target="c" * 40,
                                      ttl_hours=2, now=NOW)
        return sent, await store.get_job(tenant, INSTANCE), tenant

    sent, job, tenant = scenario(database_url, body, job_status="queued")
    assert publisher.published == [("c" * 40, "pending", f"IronLayer plan {PLAN_ID[:12]} awaits approval", sent)]
    token = sent.split("?token=", 1)[1]
    claims = verify_approval_token(SECRET, token, plan_id=PLAN_ID, now=NOW + timedelta(hours=1), tenant_id=tenant)
    assert (claims.subject, claims.action, claims.expires_at) == ("reviewers", "decide", NOW + timedelta(hours=2))
    assert (job["status"], job["detail"]) == ("awaiting_approval", "waiting for approval")


def test_identities_are_registered_changed_listed_and_removed_with_an_audit_entry_each(database_url: str) -> None:
    async def body(store: PostgresStateStore, tenant: str) -> Any:
        async def put(provider: str, subject: str, role: str, login: str | None) -> IdentityRow:
            return await set_identity(store, tenant, provider=provider, subject=subject, role=role, github_login=login,
                                      name="Zoe", actor="root", actor_role="admin", now=NOW)

        first = await put("appservice:aad", "0b4f-zoe", "viewer", " Zoe-1 ")
        await put("appservice:aad", "0b4f-zoe", "operator", "zoe-1")
        listed = [(r["provider"], r["subject"], r["role"], r["github_login"]) for r in await list_identities(store,
                                                                                                          tenant)]
        bad = []
        for provider, subject, role, login in (("ldap", "y", "viewer", None), ("api", " padded", "viewer", None),
                                               ("api", "y", "root", None), ("api", "y", "viewer", "-x-"),
                                               ("api", "y", "service", None)):
            with pytest.raises(InputError) as caught:
                await put(provider, subject, role, login)
            bad.append(str(caught.value).split(" ")[0])
        await remove_identity(store, tenant, provider="appservice:aad", subject="0b4f-zoe", actor="root",
                              actor_role="admin", now=NOW)
        with pytest.raises(NotFoundError):
            await remove_identity(store, tenant, provider="appservice:aad", subject="0b4f-zoe", actor="root",
                                  actor_role="admin", now=NOW)
        rows = [(r["action"], r["target"], r["details"]) for r in await list_audit(store, tenant)]
        return first, listed, bad, rows, await store.find_identity(tenant, "appservice:aad", "0b4f-zoe")

    first, listed, bad, rows, gone = scenario(database_url, body, identities=(("api", "ann", "operator", "ann"),))
    assert (first["role"], first["github_login"], first["name"]) == ("viewer", "zoe-1", "Zoe")
    assert listed == [("api", "ann", "operator", "ann"), ("appservice:aad", "0b4f-zoe", "operator", "zoe-1")]
    assert bad == ["provider", "subject", "role", "GitHub", "role"]
    assert [action for action, _, _ in rows] == ["identity.set", "identity.set", "identity.removed"]
    assert rows[1] == ("identity.set", "appservice:aad/0b4f-zoe",
                       '{"github_login":"zoe-1","name":"Zoe","role":"operator"}')
    assert gone is None


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
