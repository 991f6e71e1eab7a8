"""Approval-link tokens: short-lived HS256 JWTs that let one person decide one plan of one tenant, once.

A link carries a token bound to `(tenant_id, plan_id, action)`. The design, chosen for review:

- **One link, one decision.** The default action is `decide`: the token lets its holder make exactly one
  decision, approve *or* reject, chosen on the approval page after reading the plan. One token has one
  `jti`, so using it either way burns it; two live tokens per plan (an approve link and a reject link)
  would each need revoking when the other is used, and a GitHub commit status has room for one link only.
  Narrower tokens with action `approve` or `reject` grant only that decision (e.g. a reject-only link sent
  to a wider audience); `check_decision` refuses any decision the token does not grant.
- **GET never decides.** Mail scanners, chat unfurlers and browsers prefetch links, so following a link
  only shows the page; the decision is a POST of the page's form carrying the token (which doubles as
  the CSRF token: it is unguessable and bound to this plan) and the chosen decision.
- **Bound and short-lived.** Issuer `ironlayer`, audience `ironlayer-approval` (an API access token signed
  with the same secret is refused here, and an approval token is refused by the API), lifetime 24 h by
  default and never more than 7 days, not usable before `nbf`, algorithm exactly HS256 (`none` and every
  other algorithm are refused before the signature is looked at), secrets of at least 32 bytes.
- **Single use lives elsewhere.** The `jti` (128 random bits, the only randomness here) is recorded in
  PostgreSQL when the decision is posted; a caller that finds it already recorded raises
  `reused_token_error(claims)`.
- **A link alone decides nothing.** It shows the plan and binds the decision to (tenant, plan, action);
  who decides is a separately authenticated, registered identity with its role and separation of duties
  against the pusher (`shared_core.services.approvals`). The token's `sub` only says whom it was sent to.

The handler must not log query strings (the token rides in `?token=` on GET) and sends the page with
`approval_page.SECURITY_HEADERS` (`Referrer-Policy: no-referrer` keeps the token out of Referer headers).
Pure: time is the explicit `now` argument; PyJWT's own clock checks are switched off and redone here.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from shared_core.core.errors import (
    ApprovalError,
    AuthSettingsError,
    ExpiredTokenError,
    InvalidTokenError,
    ReusedTokenError,
    WrongActionError,
    WrongPlanError,
)
from shared_core.core.project.headers import format_instant

ISSUER = "ironlayer"
AUDIENCE = "ironlayer-approval"
ALGORITHM = "HS256"
DECISIONS = ("approve", "reject")
ACTIONS = ("decide", *DECISIONS)  # `decide` grants either decision; the others grant only themselves
DEFAULT_TTL = timedelta(hours=24)
MAX_TTL = timedelta(days=7)
MIN_SECRET_BYTES = 32
NBF_LEEWAY = timedelta(seconds=60)  # clock skew between the issuing and the verifying instance
MAX_TOKEN_CHARS = 4096
MAX_ID_CHARS = 200

_PLAN_ID = re.compile(r"[0-9a-f]{64}")
_TOKEN_ID = re.compile(r"[0-9a-f]{32}")
_REQUIRED = ("iss", "aud", "sub", "tenant_id", "plan_id", "action", "jti", "iat", "nbf", "exp")
_ASK = "open the newest link from the plan's commit status, or ask for a new link"


def new_token_id() -> str:
    """A fresh random `jti`: 128 bits as 32 lowercase hex characters."""
    return secrets.token_hex(16)


@dataclass(frozen=True)
class ApprovalClaims:
    """The verified content of an approval token."""

    subject: str  # who the link is for: a GitHub login, or a group such as "reviewers"
    tenant_id: str
    plan_id: str
    action: str  # decide | approve | reject
    token_id: str  # jti, recorded on use so the link works once
    issued_at: datetime
    not_before: datetime
    expires_at: datetime

    def permits(self, decision: str) -> bool:
        """Whether this token grants `decision` (`approve` or `reject`).

        >>> claims = ApprovalClaims("octo", "t1", "0" * 64, "reject", "0" * 32, *[datetime(2024, 1, 1, tzinfo=UTC)] * 3)
        >>> claims.permits("reject"), claims.permits("approve")
        (True, False)
        """
        return decision in DECISIONS and self.action in ("decide", decision)


def issue_approval_token(
    secret: str | bytes,
    *,
    tenant_id: str,
    plan_id: str,
    action: str,
    subject: str,
    now: datetime,
    ttl: timedelta = DEFAULT_TTL,
    token_id: Callable[[], str] = new_token_id,
) -> str:
    """Sign an approval token for one plan of one tenant, valid from `now` for `ttl`.

    Args:
        secret: the HS256 signing secret, at least 32 bytes.
        tenant_id: the tenant that owns the plan.
        plan_id: the plan's 64-hex-digit ID.
        action: `decide` (approve or reject), `approve` or `reject`.
        subject: who the link is for (a GitHub login, or a group such as `reviewers`).
        now: the issuing time (timezone-aware); `iat` and `nbf` are `now` in whole seconds.
        ttl: the lifetime, more than 0 and at most 7 days.
        token_id: makes the `jti`; random by default, fixed in tests.

    Returns:
        The compact JWT.

    Raises:
        AuthSettingsError: the secret is shorter than 32 bytes (a deployment setting).
        ValueError: a lifetime out of range, a naive `now`, or a malformed argument (the caller's bug).

    >>> token = issue_approval_token("s" * 32, tenant_id="t1", plan_id="a" * 64, action="decide", subject="octo",
    ...                              now=datetime(2024, 1, 1, tzinfo=UTC), token_id=lambda: "0" * 32)
    >>> verify_approval_token("s" * 32, token, plan_id="a" * 64, now=datetime(2024, 1, 1, 12, tzinfo=UTC)).expires_at
    datetime.datetime(2024, 1, 2, 0, 0, tzinfo=datetime.timezone.utc)
    """
    key = _key(secret)
    if not timedelta(0) < ttl <= MAX_TTL:
        raise ValueError(f"approval link lifetime {ttl} is out of range; give more than 0 and at most {MAX_TTL}")
    if action not in ACTIONS:
        raise ValueError(f"approval action {action!r} is unknown; use one of {', '.join(ACTIONS)}")
    if not _PLAN_ID.fullmatch(plan_id):
        raise ValueError(f"plan_id {plan_id[:80]!r} is not a plan ID (64 lowercase hex digits)")
    for name, value in (("tenant_id", tenant_id), ("subject", subject)):
        if not _is_id(value):
            raise ValueError(f"{name} {value[:80]!r} must be 1-{MAX_ID_CHARS} printable characters")
    jti = token_id()
    if not _TOKEN_ID.fullmatch(jti):
        raise ValueError(f"token_id() returned {jti[:80]!r}; it must return 32 lowercase hex digits")
    issued = int(_utc(now).timestamp())
    payload: dict[str, Any] = {  # Any: the JSON claims PyJWT signs
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": subject,
        "tenant_id": tenant_id,
        "plan_id": plan_id,
        "action": action,
        "jti": jti,
        "iat": issued,
        "nbf": issued,
        "exp": issued + int(ttl.total_seconds()),
    }
    return jwt.encode(payload, key, algorithm=ALGORITHM)


def verify_approval_token(
    secret: str | bytes, token: str, *, plan_id: str, now: datetime, tenant_id: str | None = None
) -> ApprovalClaims:
    """Check an approval token's signature, claims and lifetime at `now`, and that it is for `plan_id`.

    Args:
        secret: the HS256 secret the token was signed with.
        token: the compact JWT from the link or the form.
        plan_id: the plan the request is about (from the URL).
        now: the verification time (timezone-aware).
        tenant_id: when known, the tenant the request is about; `None` skips that check (the handler then
            binds the tenant from the returned claims before it reads anything).

    Returns:
        The verified claims. Whether the `jti` was used before is the caller's check.

    Raises:
        InvalidTokenError: malformed, forged, not HS256, wrong issuer or audience, or not yet valid.
        ExpiredTokenError: `now` is at or after `exp`.
        WrongPlanError: a genuine token for another plan or tenant.
        AuthSettingsError: the secret is shorter than 32 bytes (a deployment setting).
        ValueError: `now` is naive.
    """
    key = _key(secret)
    instant = _utc(now)
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
        raise _invalid("it is empty or too long")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise _invalid("it is not a signed token (the link may be cut short)") from None
    if header.get("alg") != ALGORITHM:
        raise _invalid(f"it is not signed with {ALGORITHM}")
    try:
        payload = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            issuer=ISSUER,
            # Time is checked below against `now`: PyJWT would read the system clock.
            options={"verify_exp": False, "verify_nbf": False, "verify_iat": False, "require": list(_REQUIRED)},
        )
    except jwt.InvalidSignatureError:
        raise _invalid("its signature does not match (it was altered or signed with another key)") from None
    except (jwt.InvalidAudienceError, jwt.InvalidIssuerError):
        raise _invalid("it was not issued as an IronLayer approval link") from None
    except jwt.MissingRequiredClaimError as exc:
        raise _invalid(f"it lacks the {exc.claim!r} claim") from None
    except jwt.PyJWTError:
        raise _invalid("it cannot be decoded") from None
    claims = _claims(payload)

    if instant < claims.not_before - NBF_LEEWAY:
        raise _invalid(f"it is not valid before {format_instant(claims.not_before)}")
    if instant >= claims.expires_at:
        raise ExpiredTokenError(
            f"this approval link expired at {format_instant(claims.expires_at)}; ask for a new link"
        )
    if claims.plan_id != plan_id:
        raise WrongPlanError(
            f"this approval link is for plan {claims.plan_id[:12]}, not the plan in this address; "
            "open the link exactly as it was sent"
        )
    if tenant_id is not None and claims.tenant_id != tenant_id:
        raise WrongPlanError("this approval link was issued for another tenant; open the link your team was sent")
    return claims


def check_decision(claims: ApprovalClaims, decision: str) -> str:
    """Check that a posted decision is `approve` or `reject` and that the token grants it; returns it.

    >>> claims = ApprovalClaims("octo", "t1", "0" * 64, "decide", "0" * 32, *[datetime(2024, 1, 1, tzinfo=UTC)] * 3)
    >>> check_decision(claims, "reject")
    'reject'

    Raises:
        ApprovalError: the decision is neither `approve` nor `reject`.
        WrongActionError: the token grants only the other decision.
    """
    if decision not in DECISIONS:
        raise ApprovalError(f"decision {decision[:40]!r} is unknown; choose approve or reject on the approval page")
    if not claims.permits(decision):
        raise WrongActionError(
            f"this approval link only allows you to {claims.action} plan {claims.plan_id[:12]}, not {decision} it; "
            "ask for a link that allows it"
        )
    return decision


def reused_token_error(claims: ApprovalClaims) -> ReusedTokenError:
    """The error a caller raises when the token's `jti` is already recorded as used."""
    return ReusedTokenError(
        f"this approval link for plan {claims.plan_id[:12]} was already used; a link decides once, "
        "see the plan's commit status for the outcome"
    )


def _claims(payload: Mapping[str, Any]) -> ApprovalClaims:  # Any: decoded JWT claims (JSON), checked here
    """Type-check the decoded payload and build the claims; anything unexpected is an invalid token."""
    strings = {name: payload[name] for name in ("sub", "tenant_id", "plan_id", "action", "jti")}
    times = {name: payload[name] for name in ("iat", "nbf", "exp")}
    if not all(isinstance(value, str) for value in strings.values()):
        raise _invalid("its claims have the wrong types")
    if not all(isinstance(value, int) and not isinstance(value, bool) for value in times.values()):
        raise _invalid("its times are not whole seconds")
    if not (_is_id(strings["sub"]) and _is_id(strings["tenant_id"]) and _PLAN_ID.fullmatch(strings["plan_id"])):
        raise _invalid("its subject, tenant or plan is malformed")
    if strings["action"] not in ACTIONS or not _TOKEN_ID.fullmatch(strings["jti"]):
        raise _invalid("its action or token ID is malformed")
    iat, nbf, exp = times["iat"], times["nbf"], times["exp"]
    if not iat <= nbf < exp or exp - iat > MAX_TTL.total_seconds():
        raise _invalid(f"its lifetime is not within 0 to {MAX_TTL.days} days")
    try:
        issued, not_before, expires = (datetime.fromtimestamp(t, UTC) for t in (iat, nbf, exp))
    except (OverflowError, OSError, ValueError):
        raise _invalid("its times are out of range") from None
    return ApprovalClaims(
        subject=strings["sub"],
        tenant_id=strings["tenant_id"],
        plan_id=strings["plan_id"],
        action=strings["action"],
        token_id=strings["jti"],
        issued_at=issued,
        not_before=not_before,
        expires_at=expires,
    )


def _invalid(reason: str) -> InvalidTokenError:
    return InvalidTokenError(f"this approval link is not valid: {reason}; {_ASK}")


def _key(secret: str | bytes) -> bytes:
    key = secret.encode() if isinstance(secret, str) else bytes(secret)
    if len(key) < MIN_SECRET_BYTES:
        raise AuthSettingsError(
            f"IRONLAYER_APPROVAL_SECRET has {len(key)} bytes; set at least {MIN_SECRET_BYTES} random bytes"
        )
    return key


def _utc(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now={now.isoformat()} has no time zone; pass an aware UTC datetime")
    return now.astimezone(UTC)


def _is_id(value: str) -> bool:
    return 0 < len(value) <= MAX_ID_CHARS and value.isprintable()
