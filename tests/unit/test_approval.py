"""Approval-link tokens: round trip, every refusal with its error class and status, and determinism."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import jwt
import pytest

from functions.http.errors import status_of
from shared_core.core.errors import (
    ApprovalError,
    AuthSettingsError,
    CoreError,
    ExpiredTokenError,
    InvalidTokenError,
    ReusedTokenError,
    WrongActionError,
    WrongPlanError,
)
from shared_core.security.approval_tokens import (
    ACTIONS,
    AUDIENCE,
    ISSUER,
    MAX_TTL,
    NBF_LEEWAY,
    ApprovalClaims,
    check_decision,
    issue_approval_token,
    new_token_id,
    reused_token_error,
    verify_approval_token,
)

SECRET = "k" * 32
OTHER_SECRET = "o" * 32
PLAN = "a80a71a0bccb97f80d67611d535463fbf9240a81e588e40052563f0d9d32360c"
OTHER_PLAN = "b" * 64
TENANT = "tenant-1"
JTI = "0123456789abcdef0123456789abcdef"
NOW = datetime(2024, 1, 1, tzinfo=UTC)


def fixed_id() -> str:
    return JTI


def issue(**overrides: Any) -> str:
    args: dict[str, Any] = {
        "tenant_id": TENANT,
        "plan_id": PLAN,
        "action": "decide",
        "subject": "octocat",
        "now": NOW,
        "token_id": fixed_id,
    }
    args.update(overrides)
    secret = args.pop("secret", SECRET)
    return issue_approval_token(secret, **args)


def verify(token: str, **overrides: Any) -> ApprovalClaims:
    args: dict[str, Any] = {"plan_id": PLAN, "now": NOW + timedelta(hours=1)}
    args.update(overrides)
    secret = args.pop("secret", SECRET)
    return verify_approval_token(secret, token, **args)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims_payload(**overrides: Any) -> dict[str, Any]:
    iat = int(NOW.timestamp())
    payload: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "octocat",
        "tenant_id": TENANT,
        "plan_id": PLAN,
        "action": "decide",
        "jti": JTI,
        "iat": iat,
        "nbf": iat,
        "exp": iat + 86400,
    }
    payload.update(overrides)
    return {k: v for k, v in payload.items() if v is not None}


def signed(payload: dict[str, Any], *, alg: str = "HS256", key: str = SECRET) -> str:
    return jwt.encode(payload, key, algorithm=alg)


def unsigned(payload: dict[str, Any]) -> str:
    header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{b64(json.dumps(payload).encode())}."


def forged_hs256(payload: dict[str, Any], key: str = SECRET) -> str:
    """Sign by hand, to put claims PyJWT's encoder would reject (or headers it would not write)."""
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(payload).encode())
    sig = hmac.new(key.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


def tamper(token: str) -> str:
    head, body, sig = token.split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    payload["plan_id"] = OTHER_PLAN
    return f"{head}.{b64(json.dumps(payload).encode())}.{sig}"


def flip_signature(token: str) -> str:
    """Change one character in the middle of the signature (the last one may only hold padding bits)."""
    head, body, sig = token.split(".")
    middle = len(sig) // 2
    return f"{head}.{body}.{sig[:middle]}{'A' if sig[middle] != 'A' else 'B'}{sig[middle + 1 :]}"


def test_round_trip() -> None:
    claims = verify(issue(), tenant_id=TENANT)
    assert claims == ApprovalClaims(
        subject="octocat",
        tenant_id=TENANT,
        plan_id=PLAN,
        action="decide",
        token_id=JTI,
        issued_at=NOW,
        not_before=NOW,
        expires_at=NOW + timedelta(hours=24),
    )


def test_token_carries_exactly_the_documented_claims_and_header() -> None:
    token = issue(ttl=timedelta(hours=2))
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "JWT"}
    payload = jwt.decode(token, options={"verify_signature": False})
    assert payload == claims_payload(exp=int(NOW.timestamp()) + 7200)


def test_same_inputs_same_token() -> None:
    assert issue() == issue()
    assert issue() != issue(token_id=lambda: "f" * 32)
    assert issue() != issue(now=NOW + timedelta(seconds=1))


def test_default_token_ids_are_random_128_bit_hex() -> None:
    ids = {new_token_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    first, second = (jwt.decode(issue(token_id=new_token_id), options={"verify_signature": False}) for _ in range(2))
    assert first["jti"] != second["jti"]


@pytest.mark.parametrize("action", ACTIONS)
def test_every_action_round_trips(action: str) -> None:
    assert verify(issue(action=action)).action == action


def test_bytes_secret_is_the_same_key_as_its_text() -> None:
    assert verify(issue(secret=SECRET.encode())) == verify(issue())


def test_non_utc_now_is_normalized() -> None:
    east = datetime(2024, 1, 1, 10, tzinfo=timezone(timedelta(hours=5)))
    assert issue(now=east) == issue(now=datetime(2024, 1, 1, 5, tzinfo=UTC))


# --- refusals at verification: the HTTP status of each error class, then (token maker, error, message) cases ---

STATUSES: list[tuple[type[ApprovalError], int]] = [
    (ApprovalError, 400),
    (InvalidTokenError, 401),
    (WrongPlanError, 403),
    (WrongActionError, 403),
    (ExpiredTokenError, 410),
    (ReusedTokenError, 410),
]


@pytest.mark.parametrize(("error", "status"), STATUSES)
def test_error_statuses(error: type[ApprovalError], status: int) -> None:
    assert status_of(error("x")) == status
    assert issubclass(error, CoreError)


def case(name: str, maker: Callable[[], str], error: type[ApprovalError], text: str, **overrides: Any) -> Any:
    return pytest.param(maker, overrides, error, text, id=name)


T0 = int(NOW.timestamp())
REFUSALS = [
    case("alg none", lambda: unsigned(claims_payload()), InvalidTokenError, "not signed with HS256"),
    case("HS512", lambda: signed(claims_payload(), alg="HS512", key=SECRET * 2), InvalidTokenError, "not signed with"),
    case("HS384", lambda: signed(claims_payload(), alg="HS384", key=SECRET * 2), InvalidTokenError, "not signed with"),
    case("tampered payload", lambda: tamper(issue()), InvalidTokenError, "signature does not match"),
    case("signature changed", lambda: flip_signature(issue()), InvalidTokenError, "signature does not match"),
    case("wrong secret", lambda: issue(secret=OTHER_SECRET), InvalidTokenError, "signature does not match"),
    case("wrong audience", lambda: signed(claims_payload(aud="ironlayer-api")), InvalidTokenError, "not issued"),
    case("wrong issuer", lambda: signed(claims_payload(iss="someone")), InvalidTokenError, "not issued"),
    case("missing jti", lambda: signed(claims_payload(jti=None)), InvalidTokenError, "'jti'"),
    case("missing plan_id", lambda: signed(claims_payload(plan_id=None)), InvalidTokenError, "'plan_id'"),
    case("missing exp", lambda: signed(claims_payload(exp=None)), InvalidTokenError, "'exp'"),
    case("unknown action", lambda: signed(claims_payload(action="apply")), InvalidTokenError, "action"),
    case("short jti", lambda: signed(claims_payload(jti="abc")), InvalidTokenError, "token ID"),
    case("float exp", lambda: forged_hs256(claims_payload(exp=T0 + 0.5)), InvalidTokenError, "whole seconds"),
    case("bool nbf", lambda: forged_hs256(claims_payload(nbf=True)), InvalidTokenError, "whole seconds"),
    case("tenant not str", lambda: signed(claims_payload(tenant_id=7)), InvalidTokenError, "wrong types"),
    case("lifetime > 7 days", lambda: signed(claims_payload(exp=T0 + 8 * 86400)), InvalidTokenError, "lifetime"),
    case("exp before nbf", lambda: signed(claims_payload(exp=T0 - 1)), InvalidTokenError, "lifetime"),
    case("garbage", lambda: "not-a-token", InvalidTokenError, "not a signed token"),
    case("empty", lambda: "", InvalidTokenError, "empty"),
    case("too long", lambda: "a" * 5000, InvalidTokenError, "too long"),
    case("cut short", lambda: issue()[:-10], InvalidTokenError, "cut short"),
    case("not yet valid", lambda: issue(now=NOW + timedelta(hours=2)), InvalidTokenError, "not valid before"),
    case(
        "expired",
        issue,
        ExpiredTokenError,
        "this approval link expired at 2024-01-02T00:00:00Z; ask for a new link",
        now=NOW + timedelta(hours=25),
    ),
    case("exp boundary", issue, ExpiredTokenError, "expired at", now=NOW + timedelta(hours=24)),
    case("other plan", issue, WrongPlanError, "is for plan a80a71a0bccb", plan_id=OTHER_PLAN),
    case("other tenant", issue, WrongPlanError, "another tenant", tenant_id="tenant-2"),
]


@pytest.mark.parametrize(("maker", "overrides", "error", "text"), REFUSALS)
def test_refusals(maker: Callable[[], str], overrides: dict[str, Any], error: type[ApprovalError], text: str) -> None:
    token = maker()
    with pytest.raises(ApprovalError) as caught:
        verify(token, **overrides)
    assert type(caught.value) is error
    assert status_of(caught.value) == dict(STATUSES)[error]
    assert text in str(caught.value)
    assert "\n" not in str(caught.value)
    assert "ask for a new link" in str(caught.value) or "open the link" in str(caught.value)


def test_signature_checked_before_plan_binding() -> None:
    """A forged token for the right plan is 401, never 403: the binding is only read from genuine tokens."""
    with pytest.raises(InvalidTokenError):
        verify(issue(secret=OTHER_SECRET), plan_id=OTHER_PLAN)


def test_valid_until_the_second_before_exp() -> None:
    assert verify(issue(), now=NOW + timedelta(hours=24) - timedelta(microseconds=1)).plan_id == PLAN


def test_not_before_allows_small_clock_skew_only() -> None:
    token = issue(now=NOW + NBF_LEEWAY)
    assert verify(token, now=NOW).token_id == JTI
    with pytest.raises(InvalidTokenError):
        verify(token, now=NOW - timedelta(seconds=1))


def test_verification_does_not_read_the_clock() -> None:
    """A token from 2001 verifies at a `now` in 2001, whatever the machine's clock says."""
    old = datetime(2001, 5, 1, tzinfo=UTC)
    assert verify(issue(now=old), now=old + timedelta(hours=1)).issued_at == old


def test_tenant_check_is_skipped_only_when_not_given() -> None:
    assert verify(issue(), tenant_id=None).tenant_id == TENANT
    assert verify(issue(), tenant_id=TENANT).tenant_id == TENANT


# --- refusals at issue ---

BAD_ISSUES: list[tuple[str, dict[str, Any], str]] = [
    ("ttl over 7 days", {"ttl": MAX_TTL + timedelta(seconds=1)}, "lifetime"),
    ("ttl zero", {"ttl": timedelta(0)}, "lifetime"),
    ("ttl negative", {"ttl": timedelta(hours=-1)}, "lifetime"),
    ("unknown action", {"action": "apply"}, "unknown"),
    ("plan id not hex", {"plan_id": "plan-1"}, "plan ID"),
    ("empty tenant", {"tenant_id": ""}, "tenant_id"),
    ("subject with newline", {"subject": "a\nb"}, "subject"),
    ("naive now", {"now": datetime(2024, 1, 1)}, "time zone"),
    ("bad token_id", {"token_id": lambda: "XYZ"}, "32 lowercase hex"),
]


@pytest.mark.parametrize(("overrides", "text"), [c[1:] for c in BAD_ISSUES], ids=[c[0] for c in BAD_ISSUES])
def test_issue_refuses(overrides: dict[str, Any], text: str) -> None:
    with pytest.raises(ValueError) as caught:
        issue(**overrides)
    assert text in str(caught.value)


def test_seven_days_exactly_is_allowed() -> None:
    assert verify(issue(ttl=MAX_TTL), now=NOW + MAX_TTL - timedelta(seconds=1)).expires_at == NOW + MAX_TTL


def test_a_short_signing_secret_is_a_settings_error_not_the_callers() -> None:
    with pytest.raises(AuthSettingsError, match="IRONLAYER_APPROVAL_SECRET has 31 bytes; set at least 32") as caught:
        issue(secret="k" * 31)
    assert status_of(caught.value) == 500
    with pytest.raises(AuthSettingsError, match="at least 32"):
        verify_approval_token("k" * 31, issue(), plan_id=PLAN, now=NOW)


def test_verify_refuses_naive_now() -> None:
    with pytest.raises(ValueError, match="time zone"):
        verify_approval_token(SECRET, issue(), plan_id=PLAN, now=datetime(2024, 1, 1))


# --- decisions ---

DECISION_CASES: list[tuple[str, str, type[ApprovalError] | None, int]] = [
    ("decide", "approve", None, 0),
    ("decide", "reject", None, 0),
    ("approve", "approve", None, 0),
    ("reject", "reject", None, 0),
    ("approve", "reject", WrongActionError, 403),
    ("reject", "approve", WrongActionError, 403),
    ("decide", "apply", ApprovalError, 400),
    ("decide", "", ApprovalError, 400),
]


@pytest.mark.parametrize(("action", "decision", "error", "status"), DECISION_CASES)
def test_check_decision(action: str, decision: str, error: type[ApprovalError] | None, status: int) -> None:
    claims = verify(issue(action=action))
    if error is None:
        assert check_decision(claims, decision) == decision
        assert claims.permits(decision)
        return
    with pytest.raises(ApprovalError) as caught:
        check_decision(claims, decision)
    assert type(caught.value) is error
    assert status_of(caught.value) == status
    assert not claims.permits(decision)


def test_reused_token_error() -> None:
    error = reused_token_error(verify(issue()))
    assert isinstance(error, ReusedTokenError)
    assert isinstance(error, ApprovalError)
    assert status_of(error) == 410
    assert "already used" in str(error)
    assert "a80a71a0bccb" in str(error)
