"""`github_webhook`: verify, dedupe and start the plan orchestration for a push (answers within 10 s)."""

from __future__ import annotations

import logging

import azure.durable_functions as df
import azure.functions as func

from functions.http.responses import error_response, json_response
from shared_core.adapters.github.webhooks import Ignored, instance_id, parse_delivery
from shared_core.core.errors import CoreError
from shared_core.settings import get_settings

bp = df.Blueprint()
logger = logging.getLogger(__name__)
_TERMINAL = {"Completed", "Failed", "Terminated", "Canceled"}


@bp.route(route="github/webhook", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@bp.durable_client_input(client_name="client")
async def github_webhook(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    try:
        settings = get_settings()
        delivery = parse_delivery(
            req.get_body(), dict(req.headers), secret=settings.github_webhook_secret, branches=settings.branches,
            max_bytes=settings.max_body_bytes,
        )
    except CoreError as exc:
        return error_response(exc)
    if isinstance(delivery, Ignored):
        status = 200 if delivery.kind == "ping" else 202
        return json_response({"status": delivery.kind, "reason": delivery.reason}, status)
    payload = delivery.payload
    instance = instance_id("push", payload.repository.full_name.lower(), payload.before, payload.after)
    try:
        from functions.resources import get_store

        store = await get_store(settings)
        # The tenant comes from the repository mapping, else from this deployment's own repository.
        tenant = await store.tenant_for_repository(payload.repository.full_name)
        if tenant is None and payload.repository.full_name.lower() == settings.repository.lower():
            tenant = settings.tenant_id
        if tenant is None:
            return json_response({"status": "ignored", "reason": f"repository {payload.repository.full_name} is "
                                  "not connected to this deployment"}, 202)
        if not await store.claim_delivery(tenant, delivery.envelope.delivery_id, "push", instance):
            return json_response({"status": "duplicate", "instance_id": instance,
                                  "reason": "this delivery was already received"}, 202)
        existing = await client.get_status(instance)
        if existing is not None and getattr(existing, "runtime_status", None) is not None:
            return json_response({"status": "duplicate", "instance_id": instance,
                                  "reason": "a run for these commits already exists"}, 202)
        await store.upsert_job(tenant, instance, kind="push", repository=payload.repository.full_name,
                               target=payload.after, status="queued", author=payload.pusher.name or "")
        orchestration_input = {
            "kind": "push",
            "tenant_id": tenant,
            "repository": payload.repository.full_name,
            "base": payload.before,
            "target": payload.after,
            "branch": delivery.branch,
            "author": payload.pusher.name or "",
            "auto_approve": settings.auto_approve,
            "approval_ttl_hours": settings.approval_ttl_hours,
            "step_retries": settings.step_retries,
        }
        try:
            await client.start_new("plan_orchestrator", instance, orchestration_input)
        except Exception:
            await store.release_delivery(tenant, delivery.envelope.delivery_id)  # let GitHub redeliver
            raise
    except CoreError as exc:
        return error_response(exc, correlation=delivery.envelope.delivery_id)
    logger.info("delivery %s started %s", delivery.envelope.delivery_id, instance)
    return json_response({"status": "accepted", "instance_id": instance}, 202)
