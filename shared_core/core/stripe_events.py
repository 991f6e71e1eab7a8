"""Stripe webhook payloads as frozen pydantic models: the envelope and, for the types IronLayer handles, the object.

Pure: `read_event` takes the verified body (`shared_core.adapters.stripe.events.verify_event` checks the
signature first) and returns a `StripeEvent`; nothing downstream sees a raw dict. Subscriptions are read in
both API shapes (the current period on the subscription, or on its items since API version 2025-03-31);
invoices name their subscription directly or under `parent.subscription_details`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared_core.core.billing import TierName
from shared_core.core.errors import WebhookError

__all__ = [
    "HANDLED_TYPES",
    "InvoiceObject",
    "MeterErrorReport",
    "StripeEvent",
    "SubscriptionObject",
    "read_event",
]

HANDLED_TYPES = frozenset({
    "customer.subscription.created", "customer.subscription.updated", "customer.subscription.deleted",
    "invoice.paid", "invoice.payment_failed", "billing.meter.error_report_triggered",
})
_TIERS: tuple[TierName, ...] = ("enterprise", "team", "community")


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


def _instant(value: int | None) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if value is not None else None


class _Price(_Model):
    id: str = ""
    lookup_key: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)


class _Item(_Model):
    price: _Price | None = None
    current_period_start: int | None = None
    current_period_end: int | None = None


class _Items(_Model):
    data: list[_Item] = Field(default_factory=list)


class SubscriptionObject(_Model):
    """The parts of a Stripe subscription that decide a tenant's entitlement."""

    id: str
    customer: str
    status: str
    created: int
    current_period_start: int | None = None
    current_period_end: int | None = None
    ended_at: int | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    items: _Items = Field(default_factory=_Items)

    @property
    def period(self) -> tuple[datetime | None, datetime | None]:
        """The current period: the subscription's own, or (newer API versions) its first item's."""
        start, end = self.current_period_start, self.current_period_end
        if start is None and self.items.data:
            start, end = self.items.data[0].current_period_start, self.items.data[0].current_period_end
        return _instant(start), _instant(end)

    @property
    def tier(self) -> TierName:
        """The tier it buys: `metadata.tier` of the subscription, else of its price, else a price lookup key
        naming a tier (`ironlayer_enterprise_monthly`), else `team` (any paid subscription)."""
        for value in (self.metadata.get("tier"), *(i.price.metadata.get("tier") for i in self.items.data if i.price),
                      *(i.price.lookup_key for i in self.items.data if i.price)):
            for tier in _TIERS:
                if value and tier in value.lower():
                    return tier
        return "team"

    @property
    def created_at(self) -> datetime:
        return datetime.fromtimestamp(self.created, UTC)

    @property
    def ended(self) -> datetime | None:
        return _instant(self.ended_at)


class _SubscriptionDetails(_Model):
    subscription: str | None = None


class _Parent(_Model):
    subscription_details: _SubscriptionDetails | None = None


class InvoiceObject(_Model):
    """The parts of a Stripe invoice that say whether a subscription is paid."""

    id: str
    customer: str
    created: int
    subscription: str | None = None
    parent: _Parent | None = None

    @property
    def subscription_id(self) -> str | None:
        """Its subscription: the field of older API versions, or `parent.subscription_details` of newer ones."""
        if self.subscription:
            return self.subscription
        if self.parent and self.parent.subscription_details:
            return self.parent.subscription_details.subscription
        return None

    @property
    def created_at(self) -> datetime:
        return datetime.fromtimestamp(self.created, UTC)


class _SampleRequest(_Model):
    id: str | None = None
    idempotency_key: str | None = None


class _SampleError(_Model):
    error_message: str = ""
    request: _SampleRequest | None = None


class _ErrorType(_Model):
    code: str = ""
    error_count: int = 0
    sample_errors: list[_SampleError] = Field(default_factory=list)


class _Reason(_Model):
    error_count: int = 0
    error_types: list[_ErrorType] = Field(default_factory=list)


class MeterErrorReport(_Model):
    """Stripe's report of meter events it refused after accepting them (`billing.meter.error_report_triggered`)."""

    meter: str = ""
    reason: _Reason = Field(default_factory=_Reason)
    developer_message_summary: str = ""

    @property
    def refused_identifiers(self) -> dict[str, str]:
        """The identifiers (sent as idempotency keys) of the sampled refused events, with Stripe's message."""
        return {s.request.idempotency_key: f"{t.code}: {s.error_message}".strip(": ")
                for t in self.reason.error_types for s in t.sample_errors if s.request and s.request.idempotency_key}


class StripeEvent(_Model):
    """A verified Stripe event: its ID, type, creation time and its object, read for the handled types."""

    id: str
    type: str
    created: int
    subscription: SubscriptionObject | None = None
    invoice: InvoiceObject | None = None
    meter_errors: MeterErrorReport | None = None

    @property
    def created_at(self) -> datetime:
        return datetime.fromtimestamp(self.created, UTC)

    @property
    def kind(self) -> Literal["subscription", "invoice", "meter_errors", "other"]:
        """Which handled object it carries."""
        if self.subscription is not None:
            return "subscription"
        if self.invoice is not None:
            return "invoice"
        return "meter_errors" if self.meter_errors is not None else "other"


def read_event(body: bytes) -> StripeEvent:
    """The event in `body` (verified JSON of a Stripe webhook delivery).

    Raises:
        WebhookError: the body is not a Stripe event, or a handled object lacks a field IronLayer reads.
    """
    what = ""  # which object is being read, for the message
    try:
        raw: Any = json.loads(body)  # Any: parsed JSON, read into the models below
        if not isinstance(raw, dict) or not isinstance(raw.get("data"), dict):
            raise WebhookError("the Stripe event has no data object; it is not an event delivery")
        event_type, found = str(raw.get("type", "")), raw["data"].get("object")
        fields: dict[str, Any] = {"id": raw.get("id"), "type": event_type, "created": raw.get("created")}
        if event_type.startswith("customer.subscription."):
            what = "subscription."
            fields["subscription"] = SubscriptionObject.model_validate(found)
        elif event_type in ("invoice.paid", "invoice.payment_failed"):
            what = "invoice."
            fields["invoice"] = InvoiceObject.model_validate(found)
        elif event_type == "billing.meter.error_report_triggered":
            what = "meter error report."
            report = dict(raw["data"])
            report["meter"] = found.get("id", "") if isinstance(found, dict) else str(found or "")
            fields["meter_errors"] = MeterErrorReport.model_validate(report)
        what = ""
        return StripeEvent.model_validate(fields)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise WebhookError(f"the Stripe event is not JSON: {str(exc)[:120]}") from None
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = what + ".".join(str(part) for part in problem["loc"])
        raise WebhookError(f"the Stripe event's {where or 'envelope'} is invalid: {problem['msg']}") from None
