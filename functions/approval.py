"""Approval: the activity that asks (signed link + pending commit status) and the page that answers.

`GET /api/plans/{plan_id}/approval?token=...` shows the plan to whoever holds the link: its steps, the SQL
of each added model and the diff of each modified one, and the models whose tests or contract change.
The page's form POSTs the token and the decision, and the POST decides only for an authenticated
identity: the principal App Service Authentication passes in `X-MS-CLIENT-PRINCIPAL` (trusted only when
IRONLAYER_APP_SERVICE_AUTH says the platform sets it), or an API token (`Authorization: Bearer`, the API's
own authentication). The link alone is refused with 401. The token is verified here (signature, expiry,
plan, tenant, action); the decision itself is `shared_core.services.approvals.decide_plan`, the same
ordered operation as the API's (revocation, job state, registered identity and role, separation of duties,
staleness; then link, job, event and audit in one transaction). Users never see Durable's management URLs
(they carry the system key).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal
from urllib.parse import parse_qs

import azure.durable_functions as df
import azure.functions as func

from functions.history import scrubbed
from functions.http.responses import html_response
from shared_core.core.errors import (
    ApprovalError,
    AuthenticationError,
    AuthorizationError,
    ConflictError,
    CoreError,
    NotFoundError,
    OrchestrationUnavailableError,
    PayloadTooLargeError,
    StalePlanError,
)
from shared_core.services.messages import ActivityFailure, ApprovalRequest, ApprovalRequested
from shared_core.settings import Settings, get_settings

if TYPE_CHECKING:
    from shared_core.security.approval_tokens import ApprovalClaims
    from shared_core.services.approvals import Approver

bp = df.Blueprint()
logger = logging.getLogger(__name__)
MAX_FORM_BYTES = 64 * 1024
MAX_COMMENT_CHARS = 2000

# Page titles: an approval link's errors by status; the plan's state and the request by kind.
_LINK_TITLES = {401: "This approval link is not valid", 403: "This link is not for this plan",
                410: "This approval link can no longer be used"}
_TITLES: tuple[tuple[type[CoreError], str], ...] = (
    (NotFoundError, "Plan not found"), (ConflictError, "This plan is not waiting for approval"),
    (PayloadTooLargeError, "Request too large"), (AuthenticationError, "Sign in to decide"),
    (AuthorizationError, "You may not decide this plan"), (StalePlanError, "This plan is stale: re-plan"),
    (OrchestrationUnavailableError, "Nothing was decided: try again"))


@bp.activity_trigger(input_name="request")
@scrubbed
async def request_approval_activity(request: ApprovalRequest) -> ApprovalRequested | ActivityFailure:
    """Sign a `decide` link for the plan and set the pending commit status that carries it (on the status
    target of the job's repository).

    Returns:
        `{"status": "requested", "link_expires_in_hours"}`, or `{"status": "failed", "detail"}` when the request
        cannot be made (the commit status refused for good, a secret too short); a transient failure raises.
    """
    from functions.resources import clients_for, get_store
    from shared_core.core.errors import is_transient
    from shared_core.services.approvals import request_approval
    from shared_core.services.failures import failure_text

    settings = get_settings()
    plan_id = request["plan_id"]
    try:
        # An activity, not the orchestrator, so the service may read the clock: the link is valid from now.
        publisher = (await clients_for(request["tenant_id"], request["repository"], settings)).publisher
        await request_approval(
            await get_store(settings), publisher, secret=settings.approval_secret,
            approval_url=f"{settings.public_base_url}/api/plans/{plan_id}/approval", tenant_id=request["tenant_id"],
            plan_id=plan_id, instance_id=request["instance_id"], target=request["target"],
            ttl_hours=request["ttl_hours"],
        )
    except CoreError as exc:  # e.g. GitHub refuses the pending status: no reviewer would ever see the link
        if is_transient(exc):
            raise
        return ActivityFailure(status="failed", detail=failure_text(exc))
    return ApprovalRequested(status="requested", link_expires_in_hours=request["ttl_hours"])


@bp.route(route="plans/{plan_id}/approval", methods=["GET", "POST"], auth_level=func.AuthLevel.ANONYMOUS)
@bp.durable_client_input(client_name="client")
async def plan_approval(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    from functions.http.approval_page import SECURITY_HEADERS, render_result_page
    from functions.http.errors import status_of

    plan_id = req.route_params.get("plan_id", "")
    try:
        if req.method == "GET":
            return await _show(req, plan_id)
        return await _decide(req, plan_id, client)
    except CoreError as exc:
        status = status_of(exc)
        return html_response(render_result_page(_title(exc, status), str(exc), status=status), status,
                             SECURITY_HEADERS)


def _title(exc: CoreError, status: int) -> str:
    """The result page's title for an error: the link's problem, the plan's state, or a general refusal."""
    if isinstance(exc, ApprovalError):
        return _LINK_TITLES.get(status, "Approval refused")
    return next((title for kind, title in _TITLES if isinstance(exc, kind)),
                "The approval could not be processed")


def _token(req: func.HttpRequest, form: dict[str, list[str]] | None = None) -> str:
    token = (form or {}).get("token", [""])[0] or req.params.get("token", "")
    return token.strip()


async def _show(req: func.HttpRequest, plan_id: str) -> func.HttpResponse:
    from functions.http.approval_page import (
        SECURITY_HEADERS,
        format_sql_for_review,
        render_approval_page,
        render_result_page,
    )
    from functions.resources import clients_for_plan, get_store
    from shared_core.core.errors import InvalidTokenError
    from shared_core.security.approval_tokens import verify_approval_token
    from shared_core.services.plans import read_review, read_stored_plan

    settings = get_settings()
    # any tenant's link: its signed claims name the tenant, and everything below is read bound to it
    claims = verify_approval_token(settings.approval_secret, _token(req), plan_id=plan_id, now=datetime.now(UTC))
    if await (await get_store(settings)).is_revoked(claims.tenant_id, claims.token_id):
        raise InvalidTokenError("this approval link was revoked; ask for a new link")
    blobs = (await clients_for_plan(claims.tenant_id, plan_id, settings)).blobs  # the tenant's prefix only
    plan = await read_stored_plan(blobs, plan_id)
    if plan is None:
        return html_response(render_result_page("Plan not found", f"plan {plan_id[:12]} is not stored here",
                                                status=404), 404, SECURITY_HEADERS)
    review = await read_review(blobs, plan_id)

    def render() -> str:  # formatting every model's SQL is parser work: off the event loop
        sql = {name: (format_sql_for_review(old) if old is not None else None, format_sql_for_review(new))
               for name, (old, new) in review["sql"].items()}
        return render_approval_page(plan, token=_token(req), action_url=f"/api/plans/{plan_id}/approval",
                                    sql_diffs=sql, checks=review["checks"])

    return html_response(await asyncio.to_thread(render), 200, SECURITY_HEADERS)


async def _decide(req: func.HttpRequest, plan_id: str, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    from functions.http.approval_page import SECURITY_HEADERS, render_result_page
    from functions.resources import get_store
    from shared_core.security.approval_tokens import check_decision, verify_approval_token
    from shared_core.services.approvals import DECIDED, decide_plan

    settings = get_settings()
    body = req.get_body()
    if len(body) > MAX_FORM_BYTES:
        raise PayloadTooLargeError("the form is too large")
    form = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    claims = verify_approval_token(settings.approval_secret, _token(req, form), plan_id=plan_id,
                                   now=datetime.now(UTC))  # the tenant is the signed one, as on the page
    granted = check_decision(claims, form.get("decision", [""])[0])
    decision: Literal["approve", "reject"] = "approve" if granted == "approve" else "reject"
    approver = await _approver(req, claims, decision, settings)
    await decide_plan(await get_store(settings), client.raise_event, tenant_id=claims.tenant_id, plan_id=plan_id,
                      decision=decision, approver=approver, comment=form.get("comment", [""])[0][:MAX_COMMENT_CHARS])
    verb = DECIDED[decision]
    logger.info("plan %s %s by %s", plan_id[:12], verb, approver.key)
    return html_response(render_result_page(f"Plan {verb}", f"plan {plan_id[:12]} was {verb}; the commit status "
                                            "on GitHub will follow", status=200), 200, SECURITY_HEADERS)


async def _approver(req: func.HttpRequest, claims: ApprovalClaims, decision: str, settings: Settings) -> Approver:
    """Who posts the decision: the App Service Authentication principal (only when the setting says the platform
    sets its headers), else the API token's subject; the link itself names no one.

    Raises:
        AuthenticationError: the request carries no identity, or a bad one.
        AuthorizationError: the API token's role may not decide, or it is another tenant's.
    """
    from functions.http.auth import admit
    from shared_core.security.identities import API, app_service_principal
    from shared_core.services.approvals import Approver

    headers = {name.lower(): value for name, value in req.headers.items()}
    if settings.app_service_auth:
        principal = app_service_principal(headers)
        if principal is not None:
            return Approver(provider=principal.provider, subject=principal.subject, via="approval link", link=claims)
    if headers.get("authorization", "").strip():
        caller, _ = await admit(req, f"{decision}_plan")
        if caller.tenant_id != claims.tenant_id:
            raise AuthorizationError("your access token is for another tenant than this plan's; nothing was changed")
        return Approver(provider=API, subject=caller.subject, via="approval link", token_role=caller.role,
                        link=claims)
    raise AuthenticationError(
        "deciding needs a signed-in identity: this link only shows the plan; sign in (App Service Authentication) "
        "or send an API token as 'Authorization: Bearer <token>'; nothing was changed"
    )
