"""The API: plans, runs, jobs (with cancel), decisions, audit, credentials, settings, identities and health.

Every endpoint declares its role (shared_core.security.roles.POLICY) through `functions.http.guard.guarded`:
authenticated, authorized, not revoked, rate-limited, its errors answered as JSON with the status that
`functions.http.errors` gives them. The tenant is the one in the caller's token. A handler parses the
request, reads the store or calls a service (`shared_core.services`), and returns the body.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

import azure.durable_functions as df
import azure.functions as func

from functions.http.bodies import json_object as _json_body
from functions.http.guard import Body, Reply, guarded
from shared_core.core.errors import (
    BlobMissingError,
    ConflictError,
    CoreError,
    InputError,
    NotFoundError,
)
from shared_core.settings import get_settings

if TYPE_CHECKING:
    from shared_core.ports import StateStore
    from shared_core.security.tokens import Principal

bp = df.Blueprint()
_PLAN_ID = re.compile(r"^[0-9a-f]{64}$")
_INSTANCE = re.compile(r"^(push|schedule)-[0-9a-f]{32}$")
_CREDENTIAL = re.compile(r"^[a-z0-9_.-]{1,100}$")
MAX_COMMENT_CHARS = 2000
MAX_CREDENTIAL_CHARS = 10_000


@bp.route(route="plans", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@guarded("list_plans")
async def list_plans(req: func.HttpRequest, principal: Principal, store: StateStore) -> Body:
    return {"plans": await store.list_plans(principal.tenant_id, 100)}


@bp.route(route="plans/{plan_id}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@guarded("get_plan")
async def get_plan(req: func.HttpRequest, principal: Principal, store: StateStore) -> Body:
    """The plan's exact stored bytes."""
    from functions.resources import clients_for_plan
    from shared_core.services.plans import plan_key

    plan_id = _plan_id(req.route_params.get("plan_id", ""))
    if await store.get_plan(principal.tenant_id, plan_id) is None:
        raise NotFoundError(f"plan {plan_id[:12]} not found")
    blobs = (await clients_for_plan(principal.tenant_id, plan_id)).blobs  # the tenant's prefix of the container
    data = await asyncio.to_thread(blobs.get, plan_key(plan_id))
    if data is None:
        raise BlobMissingError(f"plan {plan_id[:12]} is recorded but missing from the blob store; re-plan the commit")
    return func.HttpResponse(data, status_code=200, headers={"Content-Type": "application/json"})


@bp.route(route="runs", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@guarded("list_runs")
async def list_runs(req: func.HttpRequest, principal: Principal, store: StateStore) -> Body:
    plan_id = req.params.get("plan_id")
    if plan_id is not None:
        _plan_id(plan_id, label="plan_id")
    return {"runs": await store.list_runs(principal.tenant_id, plan_id, 1000)}


@bp.route(route="jobs", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@guarded("list_jobs")
async def list_jobs(req: func.HttpRequest, principal: Principal, store: StateStore) -> Body:
    return {"jobs": await store.list_jobs(principal.tenant_id)}


@bp.route(route="jobs/{instance_id}", methods=["DELETE"], auth_level=func.AuthLevel.ANONYMOUS)
@bp.durable_client_input(client_name="client")
@guarded("cancel_job")
async def cancel_job(req: func.HttpRequest, principal: Principal, store: StateStore,
                     client: df.DurableOrchestrationClient) -> Body:
    """Stop a job that has not finished: terminate its orchestration, cancel its runs and plan, audit it."""
    from shared_core.services.jobs import cancel_job as cancel

    instance = req.route_params.get("instance_id", "")
    if not _INSTANCE.match(instance):
        raise InputError(f"job id {instance[:80]!r} is not a job id")
    result = await cancel(store, client, principal.tenant_id, instance, actor=principal.subject,
                          role=principal.role, via="the API")
    if result.result == "not_found":
        raise NotFoundError(f"job {instance} not found")
    if result.result == "finished":
        raise ConflictError(f"job {instance} already {result.status}; nothing to cancel")
    return Reply({"instance_id": instance, "status": "cancelled", "runs_cancelled": result.runs_cancelled}, 202)


@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@guarded("health")
async def health(req: func.HttpRequest, principal: Principal, store: StateStore) -> Body:
    """Whether the state store and the blob store answer (503 with the failing checks when one does not)."""
    from functions.resources import get_blob_store

    checks: dict[str, str] = {}
    settings = get_settings()
    try:
        await store.health()
        checks["postgres"] = "ok"
    except CoreError as exc:
        checks["postgres"] = str(exc)
    try:
        await asyncio.to_thread(get_blob_store(settings).health)
        checks["blob"] = "ok"
    except CoreError as exc:
        checks["blob"] = str(exc)
    healthy = all(v == "ok" for v in checks.values())
    return Reply({"status": "ok" if healthy else "degraded", "checks": checks}, 200 if healthy else 503)


@bp.route(route="audit/verify", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@guarded("audit_verify")
async def audit_verify(req: func.HttpRequest, principal: Principal, store: StateStore) -> Body:
    """Verify the tenant's audit chain against its recorded head."""
    from shared_core.services.audit import verify_audit

    report = await verify_audit(store, principal.tenant_id)
    return {"tenant_id": principal.tenant_id, **report.to_dict()}


def _decision_endpoint(req: func.HttpRequest) -> str:
    """The policy name of a decision request: `approve_plan` or `reject_plan` (checked before admission)."""
    decision = _json_body(req).get("decision")
    if decision not in ("approve", "reject"):
        raise InputError("decision must be \"approve\" or \"reject\"")
    return f"{decision}_plan"


@bp.route(route="plans/{plan_id}/decision", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@bp.durable_client_input(client_name="client")
@guarded("approve_plan", "reject_plan", pick=_decision_endpoint)
async def decide_plan(req: func.HttpRequest, principal: Principal, store: StateStore,
                      client: df.DurableOrchestrationClient) -> Body:
    """Approve or reject a plan as a registered identity of operator role or higher (separation of duties applies)."""
    from shared_core.security.identities import API
    from shared_core.services import approvals

    body = _json_body(req)
    decision: Literal["approve", "reject"] = "approve" if body["decision"] == "approve" else "reject"
    plan_id = _plan_id(req.route_params.get("plan_id", ""))
    comment = body.get("comment", "")
    if not isinstance(comment, str) or len(comment) > MAX_COMMENT_CHARS:
        raise InputError(f"comment must be text of at most {MAX_COMMENT_CHARS} characters")
    approver = approvals.Approver(provider=API, subject=principal.subject, via="api", token_role=principal.role)
    await approvals.decide_plan(store, client.raise_event, tenant_id=principal.tenant_id, plan_id=plan_id,
                                decision=decision, approver=approver, comment=comment)
    return Reply({"plan_id": plan_id, "decision": decision, "by": principal.subject}, 202)


@bp.route(route="credentials/{name}", methods=["PUT"], auth_level=func.AuthLevel.ANONYMOUS)
@guarded("manage_credentials")
async def put_credential(req: func.HttpRequest, principal: Principal, store: StateStore) -> Body:
    """Store a credential encrypted; the value is never returned or logged."""
    from shared_core.services.credentials import credential_cipher, set_credential

    name = req.route_params.get("name", "")
    if not _CREDENTIAL.match(name):
        raise InputError(f"credential name {name[:80]!r} must be 1-100 of a-z, 0-9, '.', '_' or '-'")
    value = _json_body(req).get("value")
    if not isinstance(value, str) or not value or len(value) > MAX_CREDENTIAL_CHARS:
        raise InputError(f"value must be a non-empty string of at most {MAX_CREDENTIAL_CHARS} characters")
    cipher = credential_cipher(get_settings().credential_keys)
    shown = await set_credential(store, principal.tenant_id, name, value, cipher=cipher, actor=principal.subject,
                                 role=principal.role)
    return {"name": name, "stored": True, "value": shown}


@bp.route(route="settings", methods=["PUT"], auth_level=func.AuthLevel.ANONYMOUS)
@guarded("manage_settings")
async def put_settings(req: func.HttpRequest, principal: Principal, store: StateStore) -> Body:
    """Change the tenant's settings (today: `allow_self_approval`)."""
    from shared_core.services.approvals import POLICY_SETTINGS, set_approval_policy

    body = _json_body(req)
    if set(body) - set(POLICY_SETTINGS) or not all(isinstance(value, bool) for value in body.values()):
        raise InputError("settings accept only {\"allow_self_approval\": true|false}")
    updated = await set_approval_policy(store, principal.tenant_id, body, actor=principal.subject,
                                        role=principal.role)
    return {"settings": updated}


@bp.route(route="identities", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@guarded("manage_identities")
async def list_identities(req: func.HttpRequest, principal: Principal, store: StateStore) -> Body:
    """The identities registered to decide for the tenant."""
    from shared_core.services.identities import list_identities as listed

    return {"identities": await listed(store, principal.tenant_id)}


@bp.route(route="identities", methods=["PUT"], auth_level=func.AuthLevel.ANONYMOUS)
@guarded("manage_identities")
async def put_identity(req: func.HttpRequest, principal: Principal, store: StateStore) -> Body:
    """Register an identity (or change it): `{"provider", "subject", "role", "github_login", "name"}`."""
    from shared_core.services.identities import set_identity

    body = _json_body(req)
    fields = {key: body.get(key) for key in ("provider", "subject", "role")}
    if not all(isinstance(value, str) for value in fields.values()):
        raise InputError("provider, subject and role are required strings")
    login, name = body.get("github_login"), body.get("name", "")
    if (login is not None and not isinstance(login, str)) or not isinstance(name, str):
        raise InputError("github_login must be a string or null, and name a string")
    stored = await set_identity(store, principal.tenant_id, provider=str(fields["provider"]),
                                subject=str(fields["subject"]), role=str(fields["role"]), github_login=login,
                                name=name, actor=principal.subject, actor_role=principal.role)
    return {"identity": stored}


@bp.route(route="identities", methods=["DELETE"], auth_level=func.AuthLevel.ANONYMOUS)
@guarded("manage_identities")
async def delete_identity(req: func.HttpRequest, principal: Principal, store: StateStore) -> Body:
    """Forget an identity: `{"provider", "subject"}`; it may no longer decide."""
    from shared_core.services.identities import remove_identity

    body = _json_body(req)
    provider, subject = body.get("provider"), body.get("subject")
    if not isinstance(provider, str) or not isinstance(subject, str):
        raise InputError("provider and subject are required strings")
    await remove_identity(store, principal.tenant_id, provider=provider, subject=subject, actor=principal.subject,
                          actor_role=principal.role)
    return {"removed": {"provider": provider, "subject": subject}}


@bp.route(route="usage", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@guarded("usage")
async def usage(req: func.HttpRequest, principal: Principal, store: StateStore) -> Body:
    """This month's usage of the caller's tenant against its tier and subscription."""
    from shared_core.services.billing import usage_report

    report = await usage_report(store, principal.tenant_id, now=datetime.now(UTC))
    tier = report.entitlement.tier
    return {"tenant_id": principal.tenant_id, "tier": tier.name, "subscription_status": report.entitlement.status,
            "blocked": report.entitlement.blocked, "monthly_steps": tier.monthly_steps,
            "concurrency": tier.concurrency, "customer": report.customer, "usage": report.usage}


@bp.route(route="quota", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@guarded("quota")
async def quota(req: func.HttpRequest, principal: Principal, store: StateStore) -> Body:
    """200 when a plan of `?steps=N` (default 1) could start now; else 402 or 429 (with Retry-After) and why."""
    from shared_core.core.errors import InputError
    from shared_core.services.billing import quota_preview, require_quota

    raw = req.params.get("steps", "1")
    if not raw.isdigit() or not 1 <= int(raw) <= 1_000_000:
        raise InputError(f"steps={raw[:20]!r} must be a whole number from 1 to 1000000")
    decision = await quota_preview(store, principal.tenant_id, steps=int(raw), now=datetime.now(UTC))
    require_quota(decision)
    return {"status": "ok", "steps": int(raw)}


def _plan_id(value: str, *, label: str = "plan id") -> str:
    """`value` if it is a plan ID (64 lowercase hex digits); else InputError naming it."""
    if not _PLAN_ID.match(value):
        raise InputError(f"{label} {value[:80]!r} is not 64 hex digits")
    return value
