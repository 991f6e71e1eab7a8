"""API access tokens: turn an `Authorization` header into a verified `Principal`, or refuse with 401.

Three modes, chosen by settings (`AuthConfig.mode`):

- **dev**: no token; every request is the `admin` of `dev_tenant`. `AuthConfig.validate` refuses it in any
  environment other than development or test, so a production deployment cannot start in this mode.
- **jwt**: `Authorization: Bearer <JWT>` signed with HS256 and a shared secret of at least 32 bytes.
- **oidc**: the JWT is signed by an identity provider with RS256 or ES256; its key is picked by the token's
  `kid` from a `JwksCache`, which holds the provider's published keys (fetched through an injected callable,
  cached for a TTL, refetched once when an unknown `kid` appears, i.e. after a key rotation).

The rules are the same in both token modes, and every check is explicit, chosen for review:

- **Algorithm first.** The header's `alg` must be exactly HS256 (jwt) or RS256/ES256 (oidc) before the
  signature is looked at: `none` is refused, and so is an HS256 token in oidc mode (the classic confusion
  attack, an HMAC keyed with the provider's public key). In oidc mode the verifying key is a public-key
  object whose type must match `alg` (RSA for RS256, P-256 for ES256), never bytes.
- **Issuer and audience** must equal the configured ones; the API's audience may not be the approval
  links' (`ironlayer-approval`), so neither kind of token is accepted where the other is expected.
- **Claims** `sub`, `jti`, `iat`, `exp` and the tenant and role claims (names configurable for oidc,
  default `tenant_id` and `role`) are required; the role must be an IronLayer role (an oidc role claim may
  be a list, as Entra ID's `roles` is: the highest IronLayer role in it counts, and `service` cannot be
  mixed with human roles).
- **Time** is the explicit `now` (PyJWT's own clock checks are off): refused at or after `exp`; before
  `nbf` or `iat` by more than 60 s of clock skew; and when `exp - iat` exceeds one hour, so a leaked token
  is useful for an hour at most.
- **Revocation** last: `is_revoked(jti)` (a state-store lookup) is asked only about otherwise valid tokens.

Messages are one line and never echo the token or any claim value. Pure apart from the cache's memory:
no clock, no environment, and no network except through `JwksCache`'s injected `fetch`.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, get_args

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from shared_core.core.errors import AuthenticationError, AuthSettingsError, JwksUnavailableError
from shared_core.security.approval_tokens import AUDIENCE as APPROVAL_AUDIENCE
from shared_core.security.roles import ADMIN, HUMAN_ROLES, ROLES, SERVICE

AuthMode = Literal["dev", "jwt", "oidc"]
AUTH_MODES: tuple[str, ...] = get_args(AuthMode)
#: Environments where `dev` mode (no authentication at all) may run.
DEV_ENVIRONMENTS = ("development", "test")
JWT_ALGORITHM = "HS256"
OIDC_ALGORITHMS = ("RS256", "ES256")
MIN_SECRET_BYTES = 32
MIN_RSA_BITS = 2048
MAX_LIFETIME = timedelta(hours=1)
CLOCK_SKEW = timedelta(seconds=60)  # allowed on `nbf` (and `iat`), never on `exp`
MAX_TOKEN_CHARS = 8192
MAX_CLAIM_CHARS = 200
DEFAULT_JWKS_TTL = timedelta(hours=1)
MIN_REFETCH_INTERVAL = timedelta(minutes=1)

_BEARER = re.compile(r"(?i:bearer) +(\S+)")
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_CLAIM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_:/.-]{0,99}")
_AGAIN = "sign in again for a new token"
_SEND = "send 'Authorization: Bearer <token>'"
_FROM_PROVIDER = "present a token from the identity provider"
_LIFETIME = f"{int(MAX_LIFETIME.total_seconds()) // 60} minutes"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the verified subject, its tenant and role, and where that came from."""

    subject: str
    tenant_id: str
    role: str
    token_id: str  # the token's jti; "" in dev mode
    expires_at: datetime | None  # the token's exp; None in dev mode
    mode: AuthMode


@dataclass(frozen=True)
class AuthConfig:
    """How API requests are authenticated; checked for shape on construction, for safety by `validate`.

    Raises (on construction):
        AuthSettingsError: an unknown mode, a short secret, a missing issuer/audience/JWKS URL, the approval
            links' audience, or a malformed claim name.
    """

    mode: AuthMode
    dev_tenant: str = ""  # dev: the tenant every request acts for
    secret: str | bytes = field(default=b"", repr=False)  # jwt: the HS256 secret, >= 32 bytes
    issuer: str = ""  # jwt, oidc: the required `iss`
    audience: str = ""  # jwt, oidc: the required `aud`
    jwks_url: str = ""  # oidc: where the provider publishes its keys
    tenant_claim: str = "tenant_id"  # oidc: the claim that names the IronLayer tenant
    role_claim: str = "role"  # oidc: the claim that carries the IronLayer role

    def __post_init__(self) -> None:
        if self.mode not in AUTH_MODES:
            raise AuthSettingsError(f"auth mode {str(self.mode)[:40]!r} is unknown; use one of {', '.join(AUTH_MODES)}")
        if self.mode == "dev":
            if not _is_id(self.dev_tenant):
                raise AuthSettingsError("dev auth mode needs a dev tenant (1-200 printable characters)")
            return
        for name in ("issuer", "audience"):
            if not _is_id(getattr(self, name)):
                raise AuthSettingsError(f"{self.mode} auth mode needs the token {name} (1-200 printable characters)")
        if self.audience == APPROVAL_AUDIENCE:
            raise AuthSettingsError(
                f"the API audience may not be {APPROVAL_AUDIENCE!r}, the approval links' audience; choose another"
            )
        if self.mode == "jwt" and len(self.secret_bytes) < MIN_SECRET_BYTES:
            raise AuthSettingsError(
                f"the API token secret has {len(self.secret_bytes)} bytes; use at least {MIN_SECRET_BYTES} random bytes"
            )
        if self.mode == "oidc":
            if not self.jwks_url.startswith("https://"):
                raise AuthSettingsError("oidc auth mode needs the provider's JWKS URL, starting with https://")
            for name in ("tenant_claim", "role_claim"):
                if not _CLAIM_NAME.fullmatch(getattr(self, name)):
                    raise AuthSettingsError(f"oidc {name} must be a claim name such as 'tenant_id'")

    @property
    def secret_bytes(self) -> bytes:
        """The HS256 secret as bytes."""
        return self.secret.encode() if isinstance(self.secret, str) else bytes(self.secret)

    def validate(self, environment: str) -> None:
        """Refuse settings that are unsafe in `environment`; call once at start-up.

        Raises:
            AuthSettingsError: dev mode (no authentication) outside development and test.

        >>> AuthConfig(mode="dev", dev_tenant="t1").validate("development")
        >>> try:
        ...     AuthConfig(mode="dev", dev_tenant="t1").validate("production")
        ... except AuthSettingsError as exc:
        ...     print(str(exc).split(";")[0])
        auth mode 'dev' turns authentication off and is refused in environment 'production'
        """
        if self.mode == "dev" and environment.strip().lower() not in DEV_ENVIRONMENTS:
            raise AuthSettingsError(
                f"auth mode 'dev' turns authentication off and is refused in environment {environment[:40]!r}; "
                "set the auth mode to jwt or oidc"
            )


@dataclass(frozen=True)
class Jwk:
    """One usable signing key from a JWKS: its id, the algorithm it verifies, and the public key."""

    kid: str
    algorithm: str  # RS256 or ES256
    key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey = field(repr=False)


class JwksCache:
    """The identity provider's signing keys, fetched through `fetch(url)` and kept for `ttl`.

    `key_for(kid, now)` fetches when the cache is empty or older than `ttl`, and once more when `kid` is
    unknown (the provider rotated its keys); every fetch, successful or not, waits at least
    `min_refetch_interval` after the previous one, so tokens with made-up `kid`s cannot flood the provider.
    A fetch replaces the whole key set: a key the provider withdrew is no longer trusted. Stale keys are
    never used: if the cache expired and the provider cannot be reached, requests fail with 503 until it can.

    `fetch` returns the JWKS document (`{"keys": [...]}`) and may raise anything on failure; the adapter
    behind it owns timeouts. Keys other than RSA (>= 2048 bits) and EC P-256, or marked for a use other
    than `sig`, or without a `kid`, are skipped. Safe to share between threads.
    """

    def __init__(
        self,
        url: str,
        fetch: Callable[[str], Mapping[str, Any]],  # Any: the JWKS document's parsed JSON
        *,
        ttl: timedelta = DEFAULT_JWKS_TTL,
        min_refetch_interval: timedelta = MIN_REFETCH_INTERVAL,
    ) -> None:
        self.url = url
        self._fetch = fetch
        self._ttl = ttl
        self._min_interval = min_refetch_interval
        self._keys: dict[str, Jwk] = {}
        self._fetched_at: datetime | None = None  # last successful fetch
        self._attempted_at: datetime | None = None  # last fetch, successful or not
        self._lock = threading.Lock()

    def key_for(self, kid: str, now: datetime) -> Jwk:
        """The key with id `kid`, refreshing the cache as the class docstring describes.

        Raises:
            AuthenticationError: the provider does not publish a usable key with that id.
            JwksUnavailableError: the keys are needed, but cannot be fetched or are malformed.
        """
        instant = _utc(now)
        with self._lock:
            if self._fetched_at is None or instant - self._fetched_at >= self._ttl:
                self._refresh(instant)
            key = self._keys.get(kid)
            if key is None and self._may_fetch(instant):
                self._refresh(instant)
                key = self._keys.get(kid)
        if key is None:
            raise _refused("it is signed with a key the identity provider does not publish", "ask for a new token")
        return key

    def _may_fetch(self, instant: datetime) -> bool:
        return self._attempted_at is None or instant - self._attempted_at >= self._min_interval

    def _refresh(self, instant: datetime) -> None:
        if not self._may_fetch(instant):
            raise JwksUnavailableError(
                "the identity provider's signing keys could not be fetched a moment ago; retry in a minute"
            )
        self._attempted_at = instant
        try:
            document = self._fetch(self.url)
        except Exception as exc:  # the injected fetch's own errors (httpx, OSError...): ours from here on
            raise JwksUnavailableError(
                f"the identity provider's signing keys cannot be fetched ({type(exc).__name__}); retry in a minute"
            ) from exc
        self._keys = _parse_jwks(document)
        self._fetched_at = instant


def authenticate(
    authorization_header: str | None,
    *,
    config: AuthConfig,
    now: datetime,
    is_revoked: Callable[[str], bool],
    jwks: JwksCache | None = None,
) -> Principal:
    """Verify the request's access token at `now` and return who is calling.

    Args:
        authorization_header: the `Authorization` header's value, or None when absent (ignored in dev mode).
        config: the authentication settings.
        now: the verification time (timezone-aware).
        is_revoked: answers whether a `jti` was revoked; asked only once everything else checked out.
        jwks: the provider's keys; required in oidc mode.

    Returns:
        The verified principal.

    Raises:
        AuthenticationError: missing, malformed, forged, wrong algorithm, expired, not yet valid, too
            long-lived, wrong issuer or audience, missing claims, unknown role, or revoked.
        JwksUnavailableError: oidc keys cannot be fetched.
        AuthSettingsError: oidc mode without a `JwksCache` for the configured URL.

    >>> authenticate(None, config=AuthConfig(mode="dev", dev_tenant="t1"), now=datetime(2024, 1, 1, tzinfo=UTC),
    ...              is_revoked=lambda jti: False).role
    'admin'
    """
    instant = _utc(now)
    if config.mode == "dev":
        return Principal(
            subject="dev", tenant_id=config.dev_tenant, role=ADMIN, token_id="", expires_at=None, mode="dev"
        )
    token = _bearer_token(authorization_header)
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise _refused("it is not a signed JWT", _AGAIN) from None
    alg = header.get("alg")
    if config.mode == "jwt":
        if alg != JWT_ALGORITHM:
            raise _refused(f"it is not signed with {JWT_ALGORITHM}", "present a token issued for this API")
        key: bytes | rsa.RSAPublicKey | ec.EllipticCurvePublicKey = config.secret_bytes
    else:
        if alg not in OIDC_ALGORITHMS:
            raise _refused(f"it is not signed with {' or '.join(OIDC_ALGORITHMS)}", _FROM_PROVIDER)
        if jwks is None or jwks.url != config.jwks_url:
            raise AuthSettingsError("oidc auth mode needs a JwksCache for the configured JWKS URL")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise _refused("its header names no signing key (kid)", _FROM_PROVIDER)
        jwk = jwks.key_for(kid, instant)
        if jwk.algorithm != alg:
            raise _refused(f"its key is for {jwk.algorithm}, not {alg}", _FROM_PROVIDER)
        key = jwk.key
    payload = _decode(token, key, str(alg), config)
    return _principal(payload, config, instant, is_revoked)


def _bearer_token(authorization_header: str | None) -> str:
    if authorization_header is None or not authorization_header.strip():
        raise AuthenticationError(f"not authenticated: the request has no access token; {_SEND}")
    if len(authorization_header) > MAX_TOKEN_CHARS + 16:
        raise _refused("the Authorization header is too long", _AGAIN)
    match = _BEARER.fullmatch(authorization_header.strip())
    if match is None:
        raise _refused("the Authorization header is not 'Bearer <token>'", _SEND)
    token = match.group(1)
    if not _COMPACT_JWS.fullmatch(token):
        raise _refused("it is not a signed JWT", _AGAIN)
    return token


def _decode(
    token: str, key: bytes | rsa.RSAPublicKey | ec.EllipticCurvePublicKey, alg: str, config: AuthConfig
) -> dict[str, Any]:  # Any: the token's claims as PyJWT decodes them (JSON), checked by `_principal`
    required = ["iss", "aud", "sub", "jti", "iat", "exp", config.tenant_claim, config.role_claim]
    try:
        return jwt.decode(
            token,
            key,
            algorithms=[alg],
            audience=config.audience,
            issuer=config.issuer,
            # Time is checked against `now` in _principal: PyJWT would read the system clock.
            options={"verify_exp": False, "verify_nbf": False, "verify_iat": False, "require": required},
        )
    except jwt.InvalidSignatureError:
        raise _refused("its signature does not match (it was altered or signed with another key)", _AGAIN) from None
    except jwt.InvalidAudienceError:
        raise _refused("it was issued for another audience", "present a token issued for this API") from None
    except jwt.InvalidIssuerError:
        raise _refused("it was issued by another issuer", "present a token issued for this API") from None
    except jwt.MissingRequiredClaimError as exc:
        claim = exc.claim if exc.claim in required else "a required"
        raise _refused(f"it lacks the {claim!r} claim", _AGAIN) from None
    except jwt.PyJWTError:
        raise _refused("it cannot be decoded", _AGAIN) from None


def _principal(
    payload: Mapping[str, Any], config: AuthConfig, instant: datetime, is_revoked: Callable[[str], bool]
) -> Principal:  # Any: decoded JWT claims (JSON), each checked here
    names = {"subject": "sub", "tenant": config.tenant_claim, "token ID": "jti"}
    strings = {label: payload[claim] for label, claim in names.items()}
    for label, value in strings.items():
        if not isinstance(value, str) or not _is_id(value):
            raise _refused(f"its {label} claim is not 1-{MAX_CLAIM_CHARS} printable characters", _AGAIN)
    role = _role(payload[config.role_claim])
    iat, exp = _time(payload, "iat"), _time(payload, "exp")
    nbf = _time(payload, "nbf") if "nbf" in payload else iat
    if exp <= iat or nbf >= exp:
        raise _refused("its times are inconsistent (exp must follow iat and nbf)", _AGAIN)
    if exp - iat > MAX_LIFETIME:
        raise _refused(f"it lives longer than {_LIFETIME} (exp - iat)", "ask the issuer for shorter-lived tokens")
    if instant >= exp:
        raise _refused("it has expired", _AGAIN)
    if instant < nbf - CLOCK_SKEW:
        raise _refused("it is not valid yet (nbf)", "check the issuer's clock")
    if instant < iat - CLOCK_SKEW:
        raise _refused("it was issued in the future (iat)", "check the issuer's clock")
    if is_revoked(strings["token ID"]):
        raise _refused("it was revoked", _AGAIN)
    return Principal(
        subject=strings["subject"],
        tenant_id=strings["tenant"],
        role=role,
        token_id=strings["token ID"],
        expires_at=exp,
        mode=config.mode,
    )


def _role(value: object) -> str:
    """The IronLayer role a role claim grants: a role name, or a list whose highest IronLayer role counts."""
    if isinstance(value, str):
        if value in ROLES:
            return value
        raise _refused(f"its role claim is not one of {', '.join(ROLES)}", "ask an admin for a role")
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        known = {item for item in value if item in ROLES}
        if SERVICE in known and len(known) > 1:
            raise _refused("its role claim mixes the service role with human roles", "ask an admin to fix the roles")
        human = [role for role in HUMAN_ROLES if role in known]
        if human:
            return human[-1]
        if known:
            return SERVICE
    raise _refused(f"its role claim names none of {', '.join(ROLES)}", "ask an admin for a role")


def _time(payload: Mapping[str, Any], claim: str) -> datetime:  # Any: decoded JWT claims (JSON)
    value = payload[claim]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _refused(f"its {claim!r} claim is not a time in seconds", _AGAIN)
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        raise _refused(f"its {claim!r} claim is out of range", _AGAIN) from None


def _parse_jwks(document: Mapping[str, Any]) -> dict[str, Jwk]:  # Any: the JWKS document's parsed JSON
    keys = document.get("keys") if isinstance(document, Mapping) else None
    if not isinstance(keys, list):
        raise JwksUnavailableError("the identity provider's JWKS document has no 'keys' list; check the JWKS URL")
    parsed: dict[str, Jwk] = {}
    for entry in keys:
        jwk = _parse_jwk(entry)
        if jwk is not None and jwk.kid not in parsed:
            parsed[jwk.kid] = jwk
    return parsed


def _parse_jwk(entry: object) -> Jwk | None:
    """One JWKS entry as a usable verification key, or None when it is not one (skipped, never trusted)."""
    if not isinstance(entry, Mapping):
        return None
    kid, kty, use, alg = (entry.get(name) for name in ("kid", "kty", "use", "alg"))
    if not isinstance(kid, str) or not kid or use not in (None, "sig") or "d" in entry:
        return None  # no id; an encryption key; or private material, which a JWKS must never publish
    try:
        if kty == "RSA" and alg in (None, "RS256"):
            rsa_key = RSAAlgorithm.from_jwk(dict(entry))
            if isinstance(rsa_key, rsa.RSAPublicKey) and rsa_key.key_size >= MIN_RSA_BITS:
                return Jwk(kid, "RS256", rsa_key)
        elif kty == "EC" and alg in (None, "ES256") and entry.get("crv") == "P-256":
            ec_key = ECAlgorithm.from_jwk(dict(entry))
            if isinstance(ec_key, ec.EllipticCurvePublicKey) and isinstance(ec_key.curve, ec.SECP256R1):
                return Jwk(kid, "ES256", ec_key)
    except (jwt.PyJWTError, ValueError, TypeError, KeyError):
        return None
    return None


def _refused(reason: str, then: str) -> AuthenticationError:
    return AuthenticationError(f"the access token is not valid: {reason}; {then}")


def _utc(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError(f"now={now.isoformat()} has no time zone; pass an aware UTC datetime")
    return now.astimezone(UTC)


def _is_id(value: str) -> bool:
    return 0 < len(value) <= MAX_CLAIM_CHARS and value.isprintable()
