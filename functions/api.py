"""The API: plans, runs, jobs (with cancel), decisions, audit, credentials, settings and health.

Every endpoint declares its role (shared_core.security.roles.POLICY) and passes `functions.security.guard`:
authenticated, authorized, not revoked, rate-limited. The tenant is the one in the caller's token.
JSON bodies and JSON errors everywhere.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from functions.http.responses import error_response, json_response
from functions.security import guard
from shared_core.core.errors import CoreError, PlanError
from shared_core.settings import get_settings

bp = df.Blueprint()
_PLAN_ID = re.compile(r"^[0-9a-f]{64}$")
_INSTANCE = re.compile(r"^(push|schedule)-[0-9a-f]{32}$")
_CREDENTIAL = re.compile(r"^[a-z0-9_.-]{1,100}$")


def _bad(message: str, status: int = 400) -> func.HttpResponse:
    return json_response({"error": {"status": status, "message": message}}, status)


@bp.route(route="plans", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def list_plans(req: func.HttpRequest) -> func.HttpResponse:
    guarded = await guard(req, "list_plans")
    if isinstance(guarded, func.HttpResponse):
        return guarded
    principal, store = guarded
    try:
        plans = await store.list_plans(principal.tenant_id, 100)
    except CoreError as exc:
        return error_response(exc)
    return json_response({"plans": plans})


@bp.route(route="plans/{plan_id}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def get_plan(req: func.HttpRequest) -> func.HttpResponse:
    from functions.resources import get_blob_store, plan_key

    guarded = await guard(req, "get_plan")
    if isinstance(guarded, func.HttpResponse):
        return guarded
    principal, store = guarded
    plan_id = req.route_params.get("plan_id", "")
    if not _PLAN_ID.match(plan_id):
        return _bad(f"plan id {plan_id[:80]!r} is not 64 hex digits")
    try:
        settings = get_settings()
        if await store.get_plan(principal.tenant_id, plan_id) is None:
            return _bad(f"plan {plan_id[:12]} not found", 404)
        data = await asyncio.to_thread(get_blob_store(settings).get, plan_key(plan_id))
        if data is None:
            raise PlanError(f"plan {plan_id[:12]} is recorded but missing from the blob store")
    except CoreError as exc:
        return error_response(exc)
    return func.HttpResponse(data, status_code=200, headers={"Content-Type": "application/json"})


@bp.route(route="runs", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def list_runs(req: func.HttpRequest) -> func.HttpResponse:
    guarded = await guard(req, "list_runs")
    if isinstance(guarded, func.HttpResponse):
        return guarded
    principal, store = guarded
    plan_id = req.params.get("plan_id")
    if plan_id is not None and not _PLAN_ID.match(plan_id):
        return _bad(f"plan_id {plan_id[:80]!r} is not 64 hex digits")
    try:
        runs = await store.list_runs(principal.tenant_id, plan_id, 1000)
    except CoreError as exc:
        return error_response(exc)
    return json_response({"runs": runs})


@bp.route(route="jobs", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def list_jobs(req: func.HttpRequest) -> func.HttpResponse:
    guarded = await guard(req, "list_jobs")
    if isinstance(guarded, func.HttpResponse):
        return guarded
    principal, store = guarded
    try:
        jobs = await store.list_jobs(principal.tenant_id)
    except CoreError as exc:
        return error_response(exc)
    return json_response({"jobs": jobs})


@bp.route(route="jobs/{instance_id}", methods=["DELETE"], auth_level=func.AuthLevel.ANONYMOUS)
@bp.durable_client_input(client_name="client")
async def cancel_job(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    from shared_core.services.jobs import cancel_job as cancel

    guarded = await guard(req, "cancel_job")
    if isinstance(guarded, func.HttpResponse):
        return guarded
    principal, store = guarded
    instance = req.route_params.get("instance_id", "")
    if not _INSTANCE.match(instance):
        return _bad(f"job id {instance[:80]!r} is not a job id")
    try:
        result = await cancel(store, client, principal.tenant_id, instance, actor=principal.subject,
                              role=principal.role, via="the API")
    except CoreError as exc:
        return error_response(exc)
    if result.result == "not_found":
        return _bad(f"job {instance} not found", 404)
    if result.result == "finished":
        return _bad(f"job {instance} already {result.status}; nothing to cancel", 409)
    return json_response({"instance_id": instance, "status": "cancelled", "runs_cancelled": result.runs_cancelled}, 202)


@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def health(req: func.HttpRequest) -> func.HttpResponse:
    from functions.resources import get_blob_store

    guarded = await guard(req, "health")
    if isinstance(guarded, func.HttpResponse):
        return guarded
    _, store = guarded
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
    return json_response({"status": "ok" if healthy else "degraded", "checks": checks}, 200 if healthy else 503)


@bp.route(route="audit/verify", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def audit_verify(req: func.HttpRequest) -> func.HttpResponse:
    from shared_core.cli.security import verify_audit

    guarded = await guard(req, "audit_verify")
    if isinstance(guarded, func.HttpResponse):
        return guarded
    principal, store = guarded
    try:
        report = await verify_audit(store, principal.tenant_id)
    except CoreError as exc:
        return error_response(exc)
    return json_response({"tenant_id": principal.tenant_id, **report.to_dict()})


@bp.route(route="plans/{plan_id}/decision", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@bp.durable_client_input(client_name="client")
async def decide_plan(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """Approve or reject a plan as an authenticated operator (separation of duties applies)."""
    from shared_core.cli.security import record_audit
    from shared_core.security.roles import check_separation

    body = _json_body(req)
    if isinstance(body, func.HttpResponse):
        return body
    decision = body.get("decision")
    if decision not in ("approve", "reject"):
        return _bad("decision must be \"approve\" or \"reject\"")
    guarded = await guard(req, "approve_plan" if decision == "approve" else "reject_plan")
    if isinstance(guarded, func.HttpResponse):
        return guarded
    principal, store = guarded
    plan_id = req.route_params.get("plan_id", "")
    if not _PLAN_ID.match(plan_id):
        return _bad(f"plan id {plan_id[:80]!r} is not 64 hex digits")
    comment = body.get("comment", "")
    if not isinstance(comment, str) or len(comment) > 2000:
        return _bad("comment must be text of at most 2000 characters")
    try:
        job = await store.job_for_plan(principal.tenant_id, plan_id)
        if job is None:
            return _bad(f"plan {plan_id[:12]} not found", 404)
        if job["status"] != "awaiting_approval":
            return _bad(f"plan {plan_id[:12]} is {job['status']}, not awaiting approval", 409)
        if decision == "approve":
            settings = await store.tenant_settings(principal.tenant_id)
            check_separation(principal.subject, job["author"],
                             allow_self_approval=bool(settings.get("allow_self_approval", False)))
        await client.raise_event(job["instance_id"], "approval",
                                 {"decision": decision, "by": principal.subject, "comment": comment})
        await store.upsert_job(principal.tenant_id, job["instance_id"], detail=f"{decision}d by {principal.subject}",
                               status="running" if decision == "approve" else None)
        await record_audit(store, principal.tenant_id, actor=principal.subject, role=principal.role,
                           action=f"plan.{decision}d", target=plan_id, details={"comment": comment, "via": "api"})
    except CoreError as exc:
        return error_response(exc)
    return json_response({"plan_id": plan_id, "decision": decision, "by": principal.subject}, 202)


@bp.route(route="credentials/{name}", methods=["PUT"], auth_level=func.AuthLevel.ANONYMOUS)
async def put_credential(req: func.HttpRequest) -> func.HttpResponse:
    """Store a credential encrypted; the value is never returned or logged."""
    from shared_core.cli.security import record_audit
    from shared_core.security.cipher import CredentialCipher, credential_name, parse_key_list, redact

    guarded = await guard(req, "manage_credentials")
    if isinstance(guarded, func.HttpResponse):
        return guarded
    principal, store = guarded
    name = req.route_params.get("name", "")
    if not _CREDENTIAL.match(name):
        return _bad(f"credential name {name[:80]!r} must be 1-100 of a-z, 0-9, '.', '_' or '-'")
    body = _json_body(req)
    if isinstance(body, func.HttpResponse):
        return body
    value = body.get("value")
    if not isinstance(value, str) or not value or len(value) > 10_000:
        return _bad("value must be a non-empty string of at most 10000 characters")
    try:
        keys = get_settings().credential_keys
        if not keys:
            raise PlanError("IRONLAYER_CREDENTIAL_KEYS is not configured; credentials cannot be stored")
        token = CredentialCipher(parse_key_list(keys)).encrypt(credential_name(principal.tenant_id, name), value)
        await store.set_credential(principal.tenant_id, name, token)
        await record_audit(store, principal.tenant_id, actor=principal.subject, role=principal.role,
                           action="credential.set", target=name, details={"value": redact(value)})
    except CoreError as exc:
        return error_response(exc)
    return json_response({"name": name, "stored": True, "value": redact(value)}, 200)


@bp.route(route="settings", methods=["PUT"], auth_level=func.AuthLevel.ANONYMOUS)
async def put_settings(req: func.HttpRequest) -> func.HttpResponse:
    """Change the tenant's settings (today: `allow_self_approval`)."""
    from shared_core.cli.security import record_audit

    guarded = await guard(req, "manage_settings")
    if isinstance(guarded, func.HttpResponse):
        return guarded
    principal, store = guarded
    body = _json_body(req)
    if isinstance(body, func.HttpResponse):
        return body
    unknown = sorted(set(body) - {"allow_self_approval"})
    if unknown or not isinstance(body.get("allow_self_approval", False), bool):
        return _bad("settings accept only {\"allow_self_approval\": true|false}")
    try:
        current = await store.tenant_settings(principal.tenant_id)
        updated = {**current, **body}
        await store.set_tenant_settings(principal.tenant_id, updated)
        await record_audit(store, principal.tenant_id, actor=principal.subject, role=principal.role,
                           action="settings.changed", target="tenant", details={"before": current, "after": updated})
    except CoreError as exc:
        return error_response(exc)
    return json_response({"settings": updated})


def _json_body(req: func.HttpRequest) -> dict[str, Any] | func.HttpResponse:
    raw = req.get_body()
    if len(raw) > 64 * 1024:
        return _bad("body too large (at most 64 KiB)", 413)
    try:
        body = json.loads(raw or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _bad("body is not valid JSON")
    if not isinstance(body, dict):
        return _bad("body must be a JSON object")
    return body
