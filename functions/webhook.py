"""`github_webhook`: verify, route to the repository's tenant, dedupe and start the plan orchestration for a
push (answers within 10 s).

The push's repository names its tenant (the repository map) and its settings (the planned branches, and
everything the job will run with); a repository that is not onboarded is refused with 404 and the command
that onboards it. The job and tenancy services (and pydantic with them) are imported only for a push: a ping
or an ignored delivery answers without them.

Every refusal is a JSON error with a 4xx status (a dependency that is down: 503), never a 500: hostile
bodies (deep nesting, NUL bytes, lone surrogates, huge numbers) are refused by the parser, and a failed
start releases its claims for GitHub's redelivery.
"""

from __future__ import annotations

import logging

import azure.durable_functions as df
import azure.functions as func

from functions.http.responses import error_response, json_response
from shared_core.adapters.github.webhooks import Ignored, parse_delivery
from shared_core.core.errors import CoreError
from shared_core.settings import get_settings

bp = df.Blueprint()
logger = logging.getLogger(__name__)


@bp.route(route="github/webhook", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@bp.durable_client_input(client_name="client")
async def github_webhook(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    try:
        settings = get_settings()
        delivery = parse_delivery(  # branches are the repository's: checked once its tenant is known
            req.get_body(), dict(req.headers), secret=settings.github_webhook_secret, max_bytes=settings.max_body_bytes,
        )
    except CoreError as exc:
        return error_response(exc)
    if isinstance(delivery, Ignored):
        status = 200 if delivery.kind == "ping" else 202
        return json_response({"status": delivery.kind, "reason": delivery.reason}, status)
    payload = delivery.payload
    repository, branch = payload.repository.full_name, delivery.branch or ""
    try:
        from functions.resources import deployment, get_store, resolve
        from shared_core.services.jobs import JobPolicy, push_job, start_job
        from shared_core.services.tenancy import tenant_of_repository

        store = await get_store(settings)
        tenant = await tenant_of_repository(store, repository, deployment(settings))
        refusal = (await resolve(tenant, repository, settings)).branch_refusal(branch)
        if refusal is not None:
            return json_response({"status": "ignored", "reason": refusal}, 202)
        job = push_job(
            tenant_id=tenant, repository=repository, base=payload.before, target=payload.after,
            branch=branch, author=payload.pusher_login,
            policy=JobPolicy(settings.auto_approve, settings.approval_ttl_hours, settings.step_retries),
        )
        started = await start_job(store, client, job, delivery_id=delivery.envelope.delivery_id)
    except CoreError as exc:
        return error_response(exc, correlation=delivery.envelope.delivery_id)
    if started.status == "duplicate":
        known = {"instance_id": started.instance_id} if started.instance_id else {}
        return json_response({"status": "duplicate", "reason": started.reason, **known}, 202)
    logger.info("delivery %s started %s", delivery.envelope.delivery_id, started.instance_id)
    return json_response({"status": "accepted", "instance_id": started.instance_id}, 202)
