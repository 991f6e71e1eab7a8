"""The billing function: Stripe's webhook, the timer that sends metered usage to Stripe, and the quota check the
orchestrator makes before a plan executes and before each wave (`await_quota` waits on durable timers).

- `POST /api/stripe/webhook` verifies `Stripe-Signature` (`IRONLAYER_STRIPE_WEBHOOK_SECRET`, 300 s tolerance;
  400 JSON when it fails), dedupes on the event ID and applies subscription and invoice events to the
  customer's tenant (`shared_core.services.billing.handle_stripe_event`).
- `send_usage_timer` sends the usage outbox as Stripe Billing Meter events every five minutes.
- `check_quota_activity` decides whether a job's next wave may start (and takes its execution slot); when it
  may not, the job's commit status and its row in `GET /api/jobs` say why, and the orchestrator waits.

(`GET /api/usage` and `GET /api/quota` are the API's, in `functions/api.py`: Entra ID guards them, while this
blueprint's only route verifies its own signature.)

`stripe` is imported only here, inside the handlers that need it; no other function's cold start pays for it.
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from functions.history import scrubbed
from functions.http.responses import error_response, json_response
from shared_core.core.errors import CoreError, PayloadTooLargeError, SettingsError
from shared_core.services.messages import ActivityFailure, JobIds, QuotaChecked, QuotaRequest
from shared_core.settings import get_settings

bp = df.Blueprint()
logger = logging.getLogger(__name__)
MAX_STRIPE_BODY_BYTES = 512 * 1024
#: How long a plan waits for its quota before the job ends (failed, with the reason; the plan is kept).
QUOTA_WAIT_LIMIT = timedelta(days=7)
#: The longest pause between two checks while a plan waits for a concurrency slot.
MAX_SLOT_RECHECK = timedelta(minutes=15)


def await_quota(context: df.DurableOrchestrationContext, ids: JobIds, *, steps: int,
                first: bool) -> Generator[Any, Any, str | None]:  # Any: Durable tasks and their results
    """Ask `check_quota_activity` until the job may start `steps` more steps; between asks, wait on a durable timer.

    A plan waiting for a concurrency slot asks again after 1, 2, 4, ... minutes (at most `MAX_SLOT_RECHECK`);
    one blocked by its subscription or its month's steps asks every hour. The orchestration's custom status says
    why it waits. Used with `yield from`.

    Returns:
        None when the job may go on; the reason when it gave up (waited `QUOTA_WAIT_LIMIT`, or the check itself
        kept failing): the orchestrator then finalizes the job as failed, and the stored plan stays resumable.
    """
    from functions.durable import attempt

    deadline = context.current_utc_datetime + QUOTA_WAIT_LIMIT
    request = QuotaRequest(**ids, steps=steps, first=first)
    waited = 0
    while True:
        checked: QuotaChecked | ActivityFailure = yield from attempt(context, "check_quota_activity", request)
        if checked["status"] == "failed":  # its retries ran out: the state store kept failing
            return f"the quota could not be checked: {checked['detail']}"
        if checked["status"] == "ok":
            if waited:
                context.set_custom_status({"status": "running", "plan_id": ids["plan_id"]})
            return None
        pause = timedelta(seconds=checked["retry_after_seconds"])
        if checked["status"] == "wait":
            pause = min(pause * 2 ** waited, MAX_SLOT_RECHECK)
        wake = context.current_utc_datetime + pause
        if wake > deadline:
            return f"{checked['message']} (gave up after waiting {QUOTA_WAIT_LIMIT.days} days)"
        context.set_custom_status({"status": "waiting_for_quota", "plan_id": ids["plan_id"],
                                   "http_status": checked["http_status"], "reason": checked["message"]})
        yield context.create_timer(wake)
        waited += 1


@bp.route(route="stripe/webhook", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
async def stripe_webhook(req: func.HttpRequest) -> func.HttpResponse:
    """Verify and apply one Stripe event; 200 with what it did (applied, duplicate or ignored)."""
    try:
        settings = get_settings()
        if not settings.stripe_webhook_secret:
            raise SettingsError("IRONLAYER_STRIPE_WEBHOOK_SECRET is not set; copy the endpoint's signing secret "
                                "(whsec_...) from the Stripe dashboard")
        body = req.get_body()
        if len(body) > MAX_STRIPE_BODY_BYTES:
            raise PayloadTooLargeError(f"body too large (at most {MAX_STRIPE_BODY_BYTES // 1024} KiB)")
        from functions.resources import get_store
        from shared_core.adapters.stripe.events import verify_event
        from shared_core.services.billing import handle_stripe_event

        event = verify_event(body, req.headers.get("Stripe-Signature"), settings.stripe_webhook_secret)
        outcome = await handle_stripe_event(await get_store(settings), event, operator_tenant=settings.tenant_id)
    except CoreError as exc:
        return error_response(exc, correlation="stripe webhook")
    logger.info("Stripe event %s (%s): %s: %s", event.id, event.type, outcome.status, outcome.detail)
    return json_response({"event": event.id, "status": outcome.status, "detail": outcome.detail})


@bp.timer_trigger(schedule="0 */5 * * * *", arg_name="timer", run_on_startup=False)
async def send_usage_timer(timer: func.TimerRequest) -> None:
    """Send the due usage events of every billed tenant to Stripe (nothing without IRONLAYER_STRIPE_API_KEY)."""
    settings = get_settings()
    if not settings.stripe_api_key:
        logger.info("usage not sent: IRONLAYER_STRIPE_API_KEY is not set")
        return
    from functions.resources import get_store
    from shared_core.adapters.stripe.meters import StripeMeterClient
    from shared_core.services.billing import send_usage

    client = StripeMeterClient(settings.stripe_api_key, api_base=settings.stripe_api_base)
    report = await send_usage(await get_store(settings), client, {
        "plan_generated": settings.stripe_meter_plans, "step_executed": settings.stripe_meter_steps,
        "compute_seconds": settings.stripe_meter_compute,
    }, now=datetime.now(UTC))
    logger.info("usage sent to Stripe: %d sent, %d to retry, %d expired, %d rejected", report.sent, report.retried,
                report.expired, report.rejected)
    for error in report.errors[:5]:
        logger.warning("Stripe meter event not sent: %s", error)


@bp.activity_trigger(input_name="request")
@scrubbed
async def check_quota_activity(request: QuotaRequest) -> QuotaChecked:
    """Whether the job may start `steps` more steps now (taking its execution slot); when not, say so on the
    job and on its commit status, and tell the orchestrator when to ask again."""
    from functions.resources import clients_for, get_store
    from shared_core.services.billing import check_quota

    settings = get_settings()
    store = await get_store(settings)
    tenant, instance = request["tenant_id"], request["instance_id"]
    decision = await check_quota(store, tenant, instance, steps=request["steps"], now=datetime.now(UTC))
    if decision.status != "ok":
        await store.upsert_job(tenant, instance, detail=decision.message)
        try:
            clients = await clients_for(tenant, request["repository"], settings)
            clients.publisher.publish(request["target"], "pending", decision.message[:140])
        except CoreError as exc:  # the status is a courtesy: the job row says it too
            logger.warning("quota status of %s not published: %s", instance, exc)
    return QuotaChecked(status=decision.status, message=decision.message, http_status=decision.http_status,
                        retry_after_seconds=decision.retry_after_seconds)
