"""Approval: the activity that asks (signed link + pending commit status) and the page that answers.

`GET /api/plans/{plan_id}/approval?token=...` shows the plan, its steps and the SQL diff of each
modified model; the page's form POSTs the token and the decision, which is verified (signature, expiry,
plan, tenant, action), recorded once (the token's jti), and raised as the `approval` event on the
plan's orchestration. Users never see Durable's management URLs (they carry the system key).
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, quote

import azure.durable_functions as df
import azure.functions as func

from functions.http.responses import html_response
from shared_core.core.errors import CoreError
from shared_core.settings import get_settings

bp = df.Blueprint()
logger = logging.getLogger(__name__)


@bp.activity_trigger(input_name="request")
async def request_approval_activity(request: dict[str, Any]) -> dict[str, Any]:
    """Sign a `decide` link for the plan and set the pending commit status that carries it."""
    from datetime import UTC, datetime

    from functions.resources import get_status_publisher, get_store
    from shared_core.security.approval_tokens import issue_approval_token

    settings = get_settings()
    now = datetime.now(UTC)  # an activity, not the orchestrator: the link's validity starts when it is made
    token = issue_approval_token(
        settings.approval_secret, tenant_id=request["tenant_id"], plan_id=request["plan_id"], action="decide",
        subject="reviewers", now=now, ttl=timedelta(hours=request["ttl_hours"]),
    )
    link = f"{settings.public_base_url}/api/plans/{request['plan_id']}/approval?token={quote(token)}"
    store = await get_store(settings)
    await store.set_plan_status(request["tenant_id"], request["plan_id"], "awaiting_approval")
    await store.upsert_job(request["tenant_id"], request["instance_id"], status="awaiting_approval",
                           detail="waiting for approval")
    publisher = get_status_publisher(settings)
    await asyncio.to_thread(publisher.publish, request["target"], "pending",
                            f"IronLayer plan {request['plan_id'][:12]} awaits approval", link)
    return {"link_expires_in_hours": request["ttl_hours"]}


@bp.route(route="plans/{plan_id}/approval", methods=["GET", "POST"], auth_level=func.AuthLevel.ANONYMOUS)
@bp.durable_client_input(client_name="client")
async def plan_approval(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    from functions.http.approval_page import SECURITY_HEADERS, render_result_page
    from shared_core.core.errors import ApprovalError

    plan_id = req.route_params.get("plan_id", "")
    try:
        if req.method == "GET":
            return await _show(req, plan_id)
        return await _decide(req, plan_id, client)
    except ApprovalError as exc:
        title = {401: "This approval link is not valid", 403: "This link is not for this plan",
                 410: "This approval link can no longer be used"}.get(exc.status, "Approval refused")
        return html_response(render_result_page(title, str(exc), status=exc.status), exc.status, SECURITY_HEADERS)
    except CoreError as exc:
        from functions.http.responses import status_of

        status = status_of(exc)
        return html_response(render_result_page("The approval could not be processed", str(exc), status=status),
                             status, SECURITY_HEADERS)


def _token(req: func.HttpRequest, form: dict[str, list[str]] | None = None) -> str:
    token = (form or {}).get("token", [""])[0] or req.params.get("token", "")
    return token.strip()


async def _show(req: func.HttpRequest, plan_id: str) -> func.HttpResponse:
    from datetime import UTC, datetime

    from functions.http.approval_page import (
        SECURITY_HEADERS,
        format_sql_for_review,
        render_approval_page,
        render_result_page,
    )
    from functions.resources import get_blob_store, get_store, read_stored_plan
    from shared_core.core.errors import InvalidTokenError
    from shared_core.security.approval_tokens import verify_approval_token

    settings = get_settings()
    claims = verify_approval_token(settings.approval_secret, _token(req), plan_id=plan_id, now=datetime.now(UTC),
                                   tenant_id=settings.tenant_id)
    if await (await get_store(settings)).is_revoked(claims.tenant_id, claims.token_id):
        raise InvalidTokenError("this approval link was revoked; ask for a new link")
    plan = await read_stored_plan(plan_id, settings)
    if plan is None:
        return html_response(render_result_page("Plan not found", f"plan {plan_id[:12]} is not stored here",
                                                status=404), 404, SECURITY_HEADERS)
    diffs_raw = await asyncio.to_thread(get_blob_store(settings).get, f"plans/{plan_id}.sql-diff.json")
    diffs = {name: (format_sql_for_review(pair[0]), format_sql_for_review(pair[1]))
             for name, pair in json.loads(diffs_raw or b"{}").items()}
    page = render_approval_page(plan, token=_token(req), action_url=f"/api/plans/{plan_id}/approval",
                                sql_diffs=diffs)
    return html_response(page, 200, SECURITY_HEADERS)


async def _decide(req: func.HttpRequest, plan_id: str, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    from datetime import UTC, datetime

    from functions.http.approval_page import SECURITY_HEADERS, render_result_page
    from functions.resources import get_store
    from shared_core.cli.security import record_audit
    from shared_core.core.errors import InvalidTokenError
    from shared_core.security.approval_tokens import check_decision, reused_token_error, verify_approval_token
    from shared_core.security.roles import check_separation

    settings = get_settings()
    body = req.get_body()
    if len(body) > 64 * 1024:
        return html_response(render_result_page("Request too large", "the form is too large", status=413), 413,
                             SECURITY_HEADERS)
    form = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    claims = verify_approval_token(settings.approval_secret, _token(req, form), plan_id=plan_id,
                                   now=datetime.now(UTC), tenant_id=settings.tenant_id)
    decision = check_decision(claims, form.get("decision", [""])[0])
    store = await get_store(settings)
    if await store.is_revoked(claims.tenant_id, claims.token_id):
        raise InvalidTokenError("this approval link was revoked; ask for a new link")
    job = await store.job_for_plan(claims.tenant_id, plan_id)
    if job is None or job["status"] != "awaiting_approval":
        if await store.token_used(claims.tenant_id, claims.token_id):
            raise reused_token_error(claims)
        state = job["status"] if job else "unknown"
        return html_response(render_result_page(
            "This plan is not waiting for approval", f"plan {plan_id[:12]} is {state}; nothing was changed",
            status=409), 409, SECURITY_HEADERS)
    if decision == "approve":
        tenant_settings = await store.tenant_settings(claims.tenant_id)
        check_separation(claims.subject, job["author"],
                         allow_self_approval=bool(tenant_settings.get("allow_self_approval", False)))
    if not await store.use_token(claims.tenant_id, claims.token_id, plan_id, decision, claims.subject):
        raise reused_token_error(claims)
    comment = form.get("comment", [""])[0][:2000]
    await record_audit(store, claims.tenant_id, actor=claims.subject, role="operator", action=f"plan.{decision}d",
                       target=plan_id, details={"comment": comment, "via": "approval link"})
    await client.raise_event(job["instance_id"], "approval",
                             {"decision": decision, "by": claims.subject, "comment": comment})
    await store.upsert_job(claims.tenant_id, job["instance_id"], status="running" if decision == "approve" else None,
                           detail=f"{decision}d by {claims.subject}")
    logger.info("plan %s %sd by %s", plan_id[:12], decision, claims.subject)
    verb = "approved" if decision == "approve" else "rejected"
    return html_response(render_result_page(f"Plan {verb}", f"plan {plan_id[:12]} was {verb}; the commit status "
                                            "on GitHub will follow", status=200), 200, SECURITY_HEADERS)
