"""Stripe webhooks at the edge: verify `Stripe-Signature` with the official SDK, then read the event.

`verify_event` runs `stripe.Webhook.construct_event` (HMAC-SHA256 over `timestamp.payload` with the endpoint's
secret, a timestamp at most `TOLERANCE_SECONDS` old) and reads the body into the models of
`shared_core.core.stripe_events`. Only the billing function imports this module (and so `stripe`).
"""

from __future__ import annotations

import stripe

from shared_core.core.errors import StripeSignatureError, WebhookError
from shared_core.core.stripe_events import StripeEvent, read_event

__all__ = ["TOLERANCE_SECONDS", "verify_event"]

TOLERANCE_SECONDS = 300


def verify_event(body: bytes, signature: str | None, secret: str, *, tolerance: int = TOLERANCE_SECONDS) -> StripeEvent:
    """Verify a webhook delivery and read it.

    Raises:
        StripeSignatureError: no signature, a stale timestamp, or a signature not made with `secret`.
        WebhookError: the body is not a Stripe event (JSON, envelope, or the handled object's fields).
    """
    if not signature:
        raise StripeSignatureError("Stripe-Signature header is missing; configure the webhook endpoint in Stripe")
    try:
        stripe.Webhook.construct_event(body, signature, secret, tolerance=tolerance)
    except stripe.SignatureVerificationError as exc:
        raise StripeSignatureError(f"Stripe-Signature does not verify: {str(exc).splitlines()[0][:200]}; check "
                                   "IRONLAYER_STRIPE_WEBHOOK_SECRET") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise WebhookError(f"the Stripe event is not JSON: {str(exc)[:120]}") from None
    return read_event(body)
