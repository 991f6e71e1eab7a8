"""GitHub webhook envelopes: verify `X-Hub-Signature-256` and parse push events into typed values.

The envelope (event name, delivery id, signature) stays apart from the payload; the payload becomes
frozen, validated dataclasses here, so no handler or core module ever reads a raw dict. (Plain
dataclasses rather than pydantic: the webhook answers on a cold start, and pydantic's import and plugin
scan cost more than the whole validation.) Pure: bytes in, values out.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from shared_core.core.errors import PayloadTooLargeError, SettingsError, WebhookError, WebhookSignatureError

ZERO_SHA = "0" * 40

_SHA = re.compile(r"[0-9a-f]{40}")
_REPO = re.compile(r"[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}")
_DELIVERY = re.compile(r"[\x21-\x7e]{1,200}")  # GitHub sends a GUID; any short printable ASCII token is kept
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Repository:
    id: int
    full_name: str


@dataclass(frozen=True)
class Pusher:
    name: str | None = None
    email: str | None = None


@dataclass(frozen=True)
class PushPayload:
    ref: str
    before: str
    after: str
    repository: Repository
    created: bool = False
    deleted: bool = False
    pusher: Pusher = Pusher()
    head_commit_timestamp: str | None = None
    sender_login: str | None = None  # the GitHub account that pushed (the event's `sender`)

    @property
    def pusher_login(self) -> str:
        """The pusher's GitHub login, as separation of duties compares it: `sender.login`, else `pusher.name`
        (a push event's pusher name is the login); '' when the payload names neither."""
        return self.sender_login or self.pusher.name or ""

    @classmethod
    def parse(cls, document: Mapping[str, Any]) -> PushPayload:  # Any: GitHub's parsed JSON, checked here
        """Validate the fields IronLayer uses (others are ignored).

        Raises:
            WebhookError: naming the first invalid field.
        """
        ref = _text(_field(document, "ref", str), "ref", 1000)
        before, after = _field(document, "before", str), _field(document, "after", str)
        for name, value in (("before", before), ("after", after)):
            if not _SHA.fullmatch(value):
                raise WebhookError(f"invalid push payload: {name}: expected a 40-hex-digit commit SHA")
        repo = _field(document, "repository", dict)
        full_name = _field(repo, "full_name", str, "repository.")
        if not _REPO.fullmatch(full_name):
            raise WebhookError("invalid push payload: repository.full_name: expected owner/name")
        pusher: Mapping[str, Any] = document["pusher"] if isinstance(document.get("pusher"), dict) else {}
        head: Mapping[str, Any] = document["head_commit"] if isinstance(document.get("head_commit"), dict) else {}
        sender: Mapping[str, Any] = document["sender"] if isinstance(document.get("sender"), dict) else {}
        return cls(
            ref=ref, before=before, after=after,
            repository=Repository(_field(repo, "id", int, "repository."), full_name),
            created=bool(document.get("created", False)), deleted=bool(document.get("deleted", False)),
            pusher=Pusher(_optional_str(pusher, "name"), _optional_str(pusher, "email")),
            head_commit_timestamp=_optional_str(head, "timestamp"), sender_login=_optional_str(sender, "login"),
        )


def _field(document: Mapping[str, Any], name: str, kind: type, prefix: str = "") -> Any:  # Any: parsed JSON
    if name not in document:
        raise WebhookError(f"invalid push payload: {prefix}{name}: Field required")
    value = document[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise WebhookError(f"invalid push payload: {prefix}{name}: expected {kind.__name__}")
    return value


def _optional_str(document: Mapping[str, Any], name: str) -> str | None:  # Any: parsed JSON
    value = document.get(name)
    return _text(value, name, 320) if isinstance(value, str) else None


def _text(value: str, name: str, limit: int) -> str:
    """`value` when PostgreSQL, JSON and logs can carry it as it is: no control character (NUL included), no
    lone surrogate (JSON can spell one, UTF-8 cannot), at most `limit` characters.

    Raises:
        WebhookError: naming the field.
    """
    if len(value) > limit:
        raise WebhookError(f"invalid push payload: {name}: longer than {limit} characters")
    if _CONTROL.search(value):
        raise WebhookError(f"invalid push payload: {name}: contains a control character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise WebhookError(f"invalid push payload: {name}: contains a lone UTF-16 surrogate") from None
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _load_json(body: bytes) -> Any:
    """The JSON document of a body, or a WebhookError saying why it is not one (never another exception)."""
    try:
        return json.loads(body, parse_constant=_refuse_constant)
    except RecursionError:
        raise WebhookError("body is not valid JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, NaN/Infinity, an integer of > 4300 digits
        reason = "a number has too many digits" if "digits" in str(exc) else str(exc).splitlines()[0][:200]
        raise WebhookError(f"body is not valid JSON: {reason}") from None


@dataclass(frozen=True)
class Envelope:
    event: str
    delivery_id: str


@dataclass(frozen=True)
class PushEvent:
    """A verified push: the envelope and its payload."""

    envelope: Envelope
    payload: PushPayload

    @property
    def branch(self) -> str | None:
        """The branch name, or None for a tag push."""
        prefix = "refs/heads/"
        return self.payload.ref[len(prefix):] if self.payload.ref.startswith(prefix) else None


@dataclass(frozen=True)
class Ignored:
    """A verified delivery that starts nothing, with the reason (answered 202 or 200)."""

    kind: Literal["ping", "ignored"]
    reason: str
    delivery_id: str


def header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive header lookup."""
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return None


def verify_signature(body: bytes, signature: str | None, secret: str) -> None:
    """Check `X-Hub-Signature-256` (`sha256=<hex HMAC of the raw body>`) in constant time.

    >>> import hmac, hashlib
    >>> sig = "sha256=" + hmac.new(b"s3cret", b"{}", hashlib.sha256).hexdigest()
    >>> verify_signature(b"{}", sig, "s3cret")

    Raises:
        WebhookSignatureError: the header is missing, malformed or wrong.
        SettingsError: no secret is configured.
    """
    if not secret:
        raise SettingsError("webhook secret is not configured; set IRONLAYER_GITHUB_WEBHOOK_SECRET")
    if not signature:
        raise WebhookSignatureError("missing X-Hub-Signature-256 header; configure the webhook with a secret")
    scheme, _, digest = signature.partition("=")
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if scheme != "sha256" or not hmac.compare_digest(digest.strip().lower(), expected):
        raise WebhookSignatureError("invalid X-Hub-Signature-256: the body was not signed with the configured secret")


def parse_delivery(
    body: bytes, headers: Mapping[str, str], *, secret: str, max_bytes: int, branches: Collection[str] | None = None,
) -> PushEvent | Ignored:
    """Verify and classify one delivery.

    Args:
        body, headers: the request.
        secret: the webhook secret the body must be signed with.
        max_bytes: the largest body accepted.
        branches: the planned branches, when known before the repository is (else the caller checks them).

    Returns:
        A `PushEvent` to plan, or `Ignored` (ping, tag push, branch deletion, unconfigured branch, other event).

    Raises:
        PayloadTooLargeError: the body exceeds `max_bytes`.
        WebhookSignatureError: a missing or wrong signature.
        WebhookError: malformed JSON, a missing header, an invalid payload.
    """
    if len(body) > max_bytes:
        raise PayloadTooLargeError(f"payload of {len(body)} bytes exceeds the limit of {max_bytes} bytes")
    verify_signature(body, header(headers, "X-Hub-Signature-256"), secret)
    event = header(headers, "X-GitHub-Event") or ""
    delivery = header(headers, "X-GitHub-Delivery") or ""
    if not delivery:
        raise WebhookError("missing X-GitHub-Delivery header")
    if not _DELIVERY.fullmatch(delivery):
        raise WebhookError("X-GitHub-Delivery must be 1-200 printable ASCII characters without spaces")
    document = _load_json(body)
    if not isinstance(document, dict):
        raise WebhookError("body must be a JSON object")
    if event == "ping":
        return Ignored(kind="ping", reason="pong: the webhook is configured", delivery_id=delivery)
    if event != "push":
        return Ignored(kind="ignored", reason=f"event {event[:100]!r} is not handled; only push", delivery_id=delivery)
    payload = PushPayload.parse(document)
    push = PushEvent(envelope=Envelope(event=event, delivery_id=delivery), payload=payload)
    if push.branch is None:
        return Ignored(kind="ignored", reason=f"tag push {payload.ref} is not planned", delivery_id=delivery)
    if payload.deleted or payload.after == ZERO_SHA:
        return Ignored(kind="ignored", reason=f"branch {push.branch} was deleted", delivery_id=delivery)
    if branches is not None and push.branch not in branches:
        return Ignored(
            kind="ignored", reason=f"branch {push.branch} is not configured (IRONLAYER_BRANCHES)",
            delivery_id=delivery,
        )
    return push

