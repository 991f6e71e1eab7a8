"""`StripeMeterClient`: usage leaves for Stripe as Billing Meter events (`POST /v1/billing/meter_events`).

Each event carries its deterministic `identifier`, and the same identifier is the request's `Idempotency-Key`,
so the SDK's own network retries replay one request, and a resend after a crash is refused by Stripe as a
duplicate identifier (answered here as sent: Stripe holds that usage already). Stripe's errors become a
`MeterOutcome`: `retry` for what may pass (connection, rate limit, 5xx, 409), `rejected` for the rest.
Legacy usage records are not used: Stripe retired them for Billing Meters.

Only this module imports `stripe` for metering; the billing function imports it inside its timer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import stripe

__all__ = ["MeterOutcome", "StripeMeterClient"]

#: How Stripe words the refusal of an identifier it has already recorded.
_DUPLICATE_MARKERS = ("already exists with identifier", "duplicate_meter_event")


@dataclass(frozen=True)
class MeterOutcome:
    """What Stripe answered for one meter event (the `MeterResult` port)."""

    outcome: Literal["sent", "retry", "rejected"]
    detail: str = ""


class StripeMeterClient:
    """Sends meter events with the official `stripe` SDK (the `MeterClient` port)."""

    def __init__(self, api_key: str, *, api_base: str = "https://api.stripe.com", max_network_retries: int = 2) -> None:
        self._client = stripe.StripeClient(api_key, base_addresses={"api": api_base},
                                           max_network_retries=max_network_retries)

    def send(self, event_name: str, customer_id: str, value: int, identifier: str, timestamp: datetime) -> MeterOutcome:
        """Create one meter event: `payload` holds the customer and the value as Stripe's meters read them.

        Returns:
            `sent` (created, or known under its identifier already), `retry` (try again later) or `rejected`.
        """
        try:
            self._client.v1.billing.meter_events.create(
                params={"event_name": event_name, "identifier": identifier, "timestamp": int(timestamp.timestamp()),
                        "payload": {"stripe_customer_id": customer_id, "value": str(value)}},
                options={"idempotency_key": identifier},
            )
        except stripe.InvalidRequestError as exc:
            text = _line(exc)
            if any(marker in text for marker in _DUPLICATE_MARKERS) or exc.code == "duplicate_meter_event":
                return MeterOutcome("sent", "Stripe already holds this identifier")
            return MeterOutcome("rejected", text)
        except (stripe.APIConnectionError, stripe.RateLimitError, stripe.APIError, stripe.IdempotencyError) as exc:
            return MeterOutcome("retry", _line(exc))
        except stripe.StripeError as exc:  # authentication, permission: the deployment's key is at fault
            if exc.http_status is not None and exc.http_status >= 500:
                return MeterOutcome("retry", _line(exc))
            return MeterOutcome("retry" if exc.http_status in (401, 403) else "rejected", _line(exc))
        return MeterOutcome("sent")


def _line(exc: stripe.StripeError) -> str:
    status = f"HTTP {exc.http_status}: " if exc.http_status else ""
    message = (exc.user_message or str(exc) or type(exc).__name__).splitlines()[0]
    return f"{type(exc).__name__}: {status}{message}"[:500]
