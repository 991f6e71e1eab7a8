"""Stripe test support: signed webhook envelopes around the recorded payloads, and a recording stand-in for
Stripe's API on 127.0.0.1 that the real `stripe` SDK is pointed at.

Signatures are computed here from the definition (`t=<unix time>,v1=<hex HMAC-SHA256 over "<t>.<payload>">`),
not with the SDK that verifies them. The recording server answers each request from a script of
`(status, body, headers)` and keeps every request's method, path, headers and form-decoded body.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

FIXTURES = Path(__file__).parents[1] / "fixtures" / "stripe"  # copied from shared/fixtures (MIT, see README)
WEBHOOK_SECRET = "whsec_test_0123456789abcdefghijklmnop"


def fixture(name: str) -> Any:  # Any: parsed JSON
    return json.loads((FIXTURES / name).read_text("utf-8"))


def subscription_data(name: str = "pay.subscription.created.data.json", **changes: Any) -> dict[str, Any]:
    """A recorded subscription event's `data` with its object changed by `changes` (None removes a key)."""
    data: dict[str, Any] = copy.deepcopy(fixture(name))
    for key, value in changes.items():
        if value is None:
            data["object"].pop(key, None)
        else:
            data["object"][key] = value
    return data


def envelope(event_type: str, data: dict[str, Any], *, event_id: str, created: int) -> bytes:
    """A Stripe event delivery around `data` (`{"object": ...}` and what else the type carries)."""
    return json.dumps({"id": event_id, "object": "event", "api_version": "2025-04-30.basil", "created": created,
                       "data": data, "livemode": False, "pending_webhooks": 1,
                       "request": {"id": None, "idempotency_key": None}, "type": event_type}).encode()


def sign(body: bytes, *, secret: str = WEBHOOK_SECRET, at: int | None = None) -> str:
    """The `Stripe-Signature` header of `body` signed at `at` (default now)."""
    timestamp = int(time.time()) if at is None else at
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


@dataclass
class Recorded:
    """One request the stand-in received."""

    method: str
    path: str
    headers: dict[str, str]
    form: list[tuple[str, str]]


@dataclass
class StripeStandIn:
    """A local HTTP server that records requests and answers from `script` (then 200 with a meter event)."""

    script: list[tuple[int, dict[str, Any], dict[str, str]]] = field(default_factory=list)
    requests: list[Recorded] = field(default_factory=list)
    url: str = ""


def _handler(stand_in: StripeStandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length).decode()
            form = parse_qsl(body, keep_blank_values=True)
            stand_in.requests.append(Recorded("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, form))
            status, answer, headers = (stand_in.script.pop(0) if stand_in.script else
                                       (200, _meter_event(dict(form)), {}))
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Request-Id", f"req_{len(stand_in.requests)}")
            for key, value in headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            return

    return Handler


def _meter_event(form: dict[str, str]) -> dict[str, Any]:
    return {"object": "billing.meter_event", "created": int(time.time()), "event_name": form.get("event_name"),
            "identifier": form.get("identifier"), "livemode": False,
            "payload": {"stripe_customer_id": form.get("payload[stripe_customer_id]"),
                        "value": form.get("payload[value]")},
            "timestamp": int(form.get("timestamp", "0"))}


def serve_stripe() -> Callable[[], Iterator[StripeStandIn]]:
    """A generator function for a pytest fixture: a stand-in on 127.0.0.1, stopped afterwards."""

    def run() -> Iterator[StripeStandIn]:
        stand_in = StripeStandIn()
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(stand_in))
        stand_in.url = f"http://127.0.0.1:{server.server_address[1]}"
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield stand_in
        finally:
            server.shutdown()
            server.server_close()
            thread.join(5)

    return run
