"""Approvals: ask for one (a signed link on the commit status), decide one, and set the tenant's approval policy.

A plan waits for a decision made either through the API (`POST /api/plans/{id}/decision`) or through the
link in the commit status. The link only shows the plan and binds the decision to (tenant, plan, action);
either way the decider is an authenticated identity (an API token, or an App Service Authentication
principal) that the tenant registered (`services.identities`). `decide_plan` runs the one ordered operation:

1. checks: the link is not revoked; the plan's job is awaiting approval (a link that was already used says
   so); the identity is registered and its role (the lower of the registered one and an API token's) may
   make the decision; for an approval, separation of duties (the identity's GitHub login is not the
   pusher's, unless the tenant's `allow_self_approval` policy says so) and a plan that is not stale (its
   watermarks and its base of deployed model versions have not moved);
2. in one store transaction, under a lock on the plan's decision (`DecisionStore.record_decision`): the
   re-checks, the link used once, job and plan moved, the `approval` event raised on the orchestration,
   then the audit entry. If raising the event fails, everything rolls back: the link still works, no
   audit entry claims the decision, and the caller answers 503 (`OrchestrationUnavailableError`).

If the event went out but the commit then failed, the orchestration finds the plan still awaiting approval
when it starts executing and fails closed (`services.apply.start_execution`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal
from urllib.parse import quote

from shared_core.core.errors import (
    AuthorizationError,
    ConflictError,
    InvalidTokenError,
    NotFoundError,
    OrchestrationUnavailableError,
)
from shared_core.core.planning.plan_codec import load_plan
from shared_core.ports import ApprovalStore, DecisionRecord, JSONValue, RaiseEvent, SecurityStore, StatusPublisher
from shared_core.security.approval_tokens import ApprovalClaims, issue_approval_token, reused_token_error
from shared_core.security.roles import authorize, check_separation, lower_role
from shared_core.services.audit import audit_entry, record_audit
from shared_core.services.bases import check_not_stale

Decision = Literal["approve", "reject"]
#: The past tense of each decision, as the audit entry and the job's detail say it.
DECIDED: Mapping[Decision, str] = {"approve": "approved", "reject": "rejected"}
#: The orchestration event a decision raises; the orchestrator waits for it.
APPROVAL_EVENT = "approval"
#: Who an approval link is issued to: whoever reviews the commit status, identified when they decide.
LINK_SUBJECT = "reviewers"
#: The tenant settings `set_approval_policy` accepts.
POLICY_SETTINGS = ("allow_self_approval",)


@dataclass(frozen=True)
class Approver:
    """Who decides (an authenticated identity, by provider and stable subject), through which edge, with what.

    `token_role` is an API token's own role: the decision gets the lower of it and the registered role.
    `link` is the approval link used (checked for revocation, used once); None through the API.
    """

    provider: str  # `api` or `appservice:<idp>`
    subject: str
    via: Literal["api", "approval link"]
    token_role: str | None = None
    link: ApprovalClaims | None = None

    @property
    def key(self) -> str:
        """The identity as messages and the audit log name it: `provider/subject`."""
        return f"{self.provider}/{self.subject}"


async def request_approval(store: ApprovalStore, publisher: StatusPublisher, *, secret: str, approval_url: str,
                           tenant_id: str, plan_id: str, instance_id: str, target: str, ttl_hours: int,
                           now: datetime | None = None) -> str:
    """Sign a `decide` link for the plan, mark plan and job as awaiting approval, and set the pending status.

    Args:
        store: the state store (plan status, job).
        publisher: sets the commit status that carries the link.
        secret: the approval links' signing secret (IRONLAYER_APPROVAL_SECRET).
        approval_url: the approval page of this plan; the token is appended as `?token=`.
        tenant_id, plan_id, instance_id: the plan and its orchestration.
        target: the pushed commit that gets the status.
        ttl_hours: how long the link stays valid.
        now: when the link's validity starts (the current time when not given).

    Returns:
        The link.

    Raises:
        AuthSettingsError: the signing secret is shorter than 32 bytes.
        SourceError: the commit status could not be set.
    """
    token = issue_approval_token(secret, tenant_id=tenant_id, plan_id=plan_id, action="decide", subject=LINK_SUBJECT,
                                 now=now or datetime.now(UTC), ttl=timedelta(hours=ttl_hours))
    link = f"{approval_url}?token={quote(token)}"
    await store.set_plan_status(tenant_id, plan_id, "awaiting_approval")
    await store.upsert_job(tenant_id, instance_id, status="awaiting_approval", detail="waiting for approval")
    await asyncio.to_thread(publisher.publish, target, "pending", f"IronLayer plan {plan_id[:12]} awaits approval",
                            link)
    return link


async def decide_plan(store: ApprovalStore, raise_event: RaiseEvent, *, tenant_id: str, plan_id: str,
                      decision: Decision, approver: Approver, comment: str, now: datetime | None = None) -> str:
    """Approve or reject a plan that awaits approval, in the one order of the module docstring.

    Args:
        store: the state store.
        raise_event: raises the decision on the plan's orchestration (the Durable client's).
        tenant_id: the tenant the approver acts for (the link's, or the API token's).
        plan_id: the plan decided.
        decision: `approve` or `reject`.
        approver: who decides (`Approver`).
        comment: the approver's comment (already bounded by the edge).
        now: the audit entry's time (the current time when not given).

    Returns:
        The orchestration instance the event was raised on.

    Raises:
        InvalidTokenError: the link was revoked.
        ReusedTokenError: the link was used before.
        NotFoundError: the plan has no job in this tenant.
        ConflictError: the plan's job is not awaiting approval (or was decided meanwhile).
        AuthorizationError: the identity is not registered, its role may not decide, or it pushed the change.
        StalePlanError: an approval of a plan whose watermarks or deployed base moved; re-plan.
        OrchestrationUnavailableError: the event could not be raised; nothing was recorded, retry.
    """
    link = approver.link
    if link is not None and await store.is_revoked(tenant_id, link.token_id):
        raise InvalidTokenError("this approval link was revoked; ask for a new link")
    job = await store.job_for_plan(tenant_id, plan_id)
    if job is None or job["status"] != "awaiting_approval":
        if link is not None and await store.token_used(tenant_id, link.token_id):
            raise reused_token_error(link)
        if job is None:
            raise NotFoundError(f"plan {plan_id[:12]} not found; nothing was changed")
        raise ConflictError(f"plan {plan_id[:12]} is {job['status']}, not awaiting approval; nothing was changed")
    identity = await store.find_identity(tenant_id, approver.provider, approver.subject)
    if identity is None:
        raise AuthorizationError(
            f"{approver.key[:160]} is not registered to decide for tenant {tenant_id}; an admin registers it with "
            f"its role and GitHub login (`ironlayer identities set {approver.provider} SUBJECT --role operator "
            "--github-login LOGIN`)"
        )
    role = lower_role(identity["role"], approver.token_role)
    if not role:
        raise AuthorizationError(f"{approver.key[:160]} carries no human role (a service token?); a person decides")
    authorize(role, f"{decision}_plan")
    if decision == "approve":
        policy = await store.tenant_settings(tenant_id)
        check_separation(approver.key, identity["github_login"], job["author"],
                         allow_self_approval=bool(policy.get("allow_self_approval", False)))
        text = await store.get_plan(tenant_id, plan_id)
        if text is None:
            raise NotFoundError(f"plan {plan_id[:12]} is not stored for this tenant; nothing was changed")
        stored = await asyncio.to_thread(load_plan, text, f"stored plan {plan_id[:12]}")  # CPU: off the event loop
        await check_not_stale(store, tenant_id, stored)
    instance: str = job["instance_id"]
    who = identity["github_login"] or identity["name"] or approver.subject
    payload = {"decision": decision, "by": who, "comment": comment}

    async def deliver() -> None:
        try:
            await raise_event(instance, APPROVAL_EVENT, payload)
        except Exception as exc:  # the Durable client's own errors (HTTP, connection, ...): ours from here on
            raise OrchestrationUnavailableError(
                f"the orchestration of plan {plan_id[:12]} could not be told of the decision ({type(exc).__name__}); "
                "nothing was recorded and the link still works; try again in a minute"
            ) from exc

    approved = decision == "approve"
    record = DecisionRecord(
        plan_id=plan_id, instance_id=instance, token_id=link.token_id if link else None, token_action=decision,
        token_subject=approver.key, job_status="running" if approved else None,
        job_detail=f"{DECIDED[decision]} by {who}", plan_status="approved" if approved else "rejected",
    )
    entry = audit_entry(tenant_id, actor=approver.key, role=role, action=f"plan.{DECIDED[decision]}",
                        target=plan_id, details={"comment": comment, "via": approver.via, "by": who}, now=now)
    entry(None, None)  # a malformed entry (say, a huge comment) fails here, before any event goes out
    outcome = await store.record_decision(tenant_id, record, entry, deliver)
    if outcome == "token_used" and link is not None:
        raise reused_token_error(link)
    if outcome != "recorded":
        raise ConflictError(f"plan {plan_id[:12]} was decided meanwhile; nothing was changed")
    return instance


async def set_approval_policy(store: SecurityStore, tenant_id: str, changes: Mapping[str, bool], *, actor: str,
                              role: str, now: datetime | None = None) -> dict[str, JSONValue]:
    """Change the tenant's approval policy (today: `allow_self_approval`) and audit before and after.

    Args:
        changes: the settings to change, each one of `POLICY_SETTINGS` (checked by the edge).

    Returns:
        The tenant's settings after the change.
    """
    current = await store.tenant_settings(tenant_id)
    updated: dict[str, JSONValue] = {**current, **changes}
    await store.set_tenant_settings(tenant_id, updated)
    await record_audit(store, tenant_id, actor=actor, role=role, action="settings.changed", target="tenant",
                       details={"before": current, "after": updated}, now=now)
    return updated
