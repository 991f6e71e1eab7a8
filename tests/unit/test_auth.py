"""API access tokens: dev, jwt and oidc modes; every refusal, alg confusion, JWKS caching and key rotation."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from functions.http.errors import status_of
from shared_core.core.errors import AuthenticationError, AuthSettingsError, CoreError, JwksUnavailableError
from shared_core.security.approval_tokens import issue_approval_token
from shared_core.security.tokens import (
    MAX_LIFETIME,
    AuthConfig,
    JwksCache,
    Principal,
    authenticate,
)

SECRET = "s" * 32
NOW = datetime(2024, 1, 1, 12, tzinfo=UTC)
T = int(NOW.timestamp())
ISSUER = "https://login.example.com/ironlayer"
AUDIENCE = "ironlayer-api"
JWKS_URL = "https://login.example.com/.well-known/jwks.json"
JWT_CONFIG = AuthConfig(mode="jwt", secret=SECRET, issuer=ISSUER, audience=AUDIENCE)
OIDC_CONFIG = AuthConfig(mode="oidc", issuer=ISSUER, audience=AUDIENCE, jwks_url=JWKS_URL)
JTI = "5f0c1c4a-7d0e-4b8e-9d55-2f3c1a0b9e11"


def claims(**overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice@example.com",
        "tenant_id": "tenant-1",
        "role": "engineer",
        "jti": JTI,
        "iat": T - 60,
        "nbf": T - 60,
        "exp": T - 60 + 3600,
    }
    payload.update(overrides)
    return {name: value for name, value in payload.items() if value is not DROP}


DROP = object()


def never_revoked(jti: str) -> bool:
    return False


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_signed(header: Mapping[str, Any], payload: Mapping[str, Any], key: bytes | None) -> str:
    """A JWT signed by hand with HMAC-SHA256 (or unsigned when `key` is None): PyJWT refuses to make these."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    signature = b"" if key is None else hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def auth_jwt(token: str, *, now: datetime = NOW, is_revoked: Callable[[str], bool] = never_revoked) -> Principal:
    return authenticate(f"Bearer {token}", config=JWT_CONFIG, now=now, is_revoked=is_revoked)


def refused(call: Callable[[], object], *fragments: str, token: str = "") -> AuthenticationError:
    """Run `call`, expect a 401 whose one-line message holds `fragments` and never any part of `token`."""
    with pytest.raises(AuthenticationError) as caught:
        call()
    error = caught.value
    message = str(error)
    assert status_of(error) == 401, message
    assert isinstance(error, CoreError)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    for segment in token.split("."):
        if len(segment) >= 8:
            assert segment not in message, "the message echoes the token"
    return error


# ---------------------------------------------------------------------------------------------- dev mode


def test_dev_mode_needs_no_token_and_acts_as_the_dev_tenants_admin() -> None:
    config = AuthConfig(mode="dev", dev_tenant="local")
    for header in (None, "", "Bearer whatever", "Basic Zm9vOmJhcg=="):
        principal = authenticate(header, config=config, now=NOW, is_revoked=never_revoked)
        assert principal == Principal("dev", "local", "admin", token_id="", expires_at=None, mode="dev")


@pytest.mark.parametrize("environment", ["production", "Production", " production ", "staging", "prod", ""])
def test_dev_mode_is_refused_outside_development(environment: str) -> None:
    config = AuthConfig(mode="dev", dev_tenant="local")
    with pytest.raises(AuthSettingsError, match="refused in environment"):
        config.validate(environment)


@pytest.mark.parametrize("environment", ["development", "test", "Development"])
def test_dev_mode_is_allowed_in_development(environment: str) -> None:
    AuthConfig(mode="dev", dev_tenant="local").validate(environment)


def test_token_modes_are_valid_in_production() -> None:
    JWT_CONFIG.validate("production")
    OIDC_CONFIG.validate("production")


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"mode": "basic"}, "unknown"),
        ({"mode": "dev"}, "dev tenant"),
        ({"mode": "jwt", "secret": "short", "issuer": ISSUER, "audience": AUDIENCE}, "at least 32"),
        ({"mode": "jwt", "secret": SECRET, "audience": AUDIENCE}, "issuer"),
        ({"mode": "jwt", "secret": SECRET, "issuer": ISSUER}, "audience"),
        ({"mode": "jwt", "secret": SECRET, "issuer": ISSUER, "audience": "ironlayer-approval"}, "approval"),
        ({"mode": "oidc", "issuer": ISSUER, "audience": AUDIENCE}, "JWKS URL"),
        ({"mode": "oidc", "issuer": ISSUER, "audience": AUDIENCE, "jwks_url": "http://insecure/jwks"}, "https"),
        ({"mode": "oidc", "issuer": ISSUER, "audience": AUDIENCE, "jwks_url": JWKS_URL, "role_claim": ""}, "role_claim"),
    ],
)
def test_unsafe_or_incomplete_settings_are_refused(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(AuthSettingsError, match=fragment) as caught:
        AuthConfig(**kwargs)
    assert status_of(caught.value) == 500


def test_the_secret_is_not_in_the_config_repr() -> None:
    assert SECRET not in repr(JWT_CONFIG)


# ---------------------------------------------------------------------------------------------- jwt mode


def test_a_valid_token_yields_its_principal() -> None:
    token = jwt.encode(claims(), SECRET, algorithm="HS256")
    principal = auth_jwt(token)
    assert principal == Principal(
        subject="alice@example.com",
        tenant_id="tenant-1",
        role="engineer",
        token_id=JTI,
        expires_at=datetime.fromtimestamp(T - 60 + 3600, UTC),
        mode="jwt",
    )


def test_the_bearer_scheme_is_case_insensitive_and_nbf_is_optional() -> None:
    token = jwt.encode(claims(nbf=DROP), SECRET, algorithm="HS256")
    for scheme in ("Bearer", "bearer", "BEARER"):
        assert authenticate(f"{scheme} {token}", config=JWT_CONFIG, now=NOW, is_revoked=never_revoked).role == "engineer"


@pytest.mark.parametrize(
    ("header", "fragment"),
    [
        (None, "no access token"),
        ("", "no access token"),
        ("   ", "no access token"),
        ("Bearer", "not 'Bearer <token>'"),
        ("Bearer ", "not 'Bearer <token>'"),
        ("Basic YWxpY2U6aHVudGVyMg==", "not 'Bearer <token>'"),
        ("Token abc.def.ghi", "not 'Bearer <token>'"),
        ("Bearer a.b.c d", "not 'Bearer <token>'"),
        ("Bearer not-a-jwt", "not a signed JWT"),
        ("Bearer a.b", "not a signed JWT"),
        ("Bearer a.b.c.d.e", "not a signed JWT"),
        ("Bearer ey$.ey$.sig", "not a signed JWT"),
        ("Bearer aaaa.bbbb.cccc", "not a signed JWT"),  # base64url, but not JSON
        ("Bearer " + "a" * 9000, "too long"),
    ],
)
def test_missing_or_malformed_headers_are_refused(header: str | None, fragment: str) -> None:
    refused(lambda: authenticate(header, config=JWT_CONFIG, now=NOW, is_revoked=never_revoked), fragment)


# Each case: a change to a valid token's claims, and what the refusal must say.
CLAIM_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("expired", {"iat": T - 3600, "nbf": T - 3600, "exp": T}, "expired"),  # exactly at exp: no leeway
    ("expired long ago", {"iat": T - 7200, "nbf": T - 7200, "exp": T - 3600}, "expired"),
    ("not yet valid", {"nbf": T + 61}, "not valid yet"),
    ("issued in the future", {"iat": T + 61, "nbf": T - 60, "exp": T + 600}, "issued in the future"),
    ("lifetime over an hour", {"iat": T - 60, "exp": T - 60 + 3601}, "longer than 60 minutes"),
    ("lifetime of a day", {"iat": T - 60, "exp": T + 86400}, "longer than 60 minutes"),
    ("exp before iat", {"iat": T - 60, "nbf": T - 120, "exp": T - 61}, "inconsistent"),
    ("nbf at exp", {"nbf": T - 60 + 3600}, "inconsistent"),
    ("wrong audience", {"aud": "ironlayer-approval"}, "another audience"),
    ("wrong audience list", {"aud": ["someone-else", "another"]}, "another audience"),
    ("wrong issuer", {"iss": "https://evil.example.com"}, "another issuer"),
    ("missing sub", {"sub": DROP}, "'sub'"),
    ("missing tenant", {"tenant_id": DROP}, "'tenant_id'"),
    ("missing role", {"role": DROP}, "'role'"),
    ("missing jti", {"jti": DROP}, "'jti'"),
    ("missing exp", {"exp": DROP}, "'exp'"),
    ("missing iat", {"iat": DROP}, "'iat'"),
    ("missing iss", {"iss": DROP}, "'iss'"),
    ("missing aud", {"aud": DROP}, "'aud'"),
    ("bad role", {"role": "root"}, "role claim"),
    ("role with another case", {"role": "Admin"}, "role claim"),
    ("role as number", {"role": 3}, "role claim"),
    ("role list in jwt mode names none", {"role": ["root"]}, "role claim"),
    ("empty tenant", {"tenant_id": ""}, "tenant claim"),
    ("tenant as number", {"tenant_id": 7}, "tenant claim"),
    ("tenant with a newline", {"tenant_id": "t1\nadmin"}, "tenant claim"),
    ("overlong subject", {"sub": "x" * 201}, "subject claim"),
    ("empty jti", {"jti": ""}, "token ID claim"),
    ("exp as string", {"exp": str(T + 600)}, "'exp'"),
    ("exp as boolean", {"exp": True}, "'exp'"),
]


@pytest.mark.parametrize(("overrides", "fragment"), [case[1:] for case in CLAIM_CASES], ids=[c[0] for c in CLAIM_CASES])
def test_bad_claims_are_refused(overrides: dict[str, Any], fragment: str) -> None:
    asked: list[str] = []

    def is_revoked(jti: str) -> bool:
        asked.append(jti)
        return False

    token = jwt.encode(claims(**overrides), SECRET, algorithm="HS256")
    refused(lambda: auth_jwt(token, is_revoked=is_revoked), fragment, token=token)
    assert asked == []  # the revocation store is only asked about otherwise valid tokens


@pytest.mark.parametrize(
    ("overrides", "now"),
    [
        ({"iat": T - 60, "exp": T - 60 + 3600}, NOW),  # exactly one hour
        ({"nbf": T + 60}, NOW),  # 60 s of clock skew on nbf
        ({"iat": T + 60, "nbf": T + 60, "exp": T + 600}, NOW),  # and on iat
        ({"iat": T - 3599, "nbf": T - 3599, "exp": T + 1}, NOW),  # one second left
        ({"aud": ["someone-else", AUDIENCE]}, NOW),  # one of several audiences
        ({"exp": T + 1.5, "iat": T - 0.5}, NOW),  # NumericDate may have fractions
    ],
)
def test_tokens_at_the_limits_are_accepted(overrides: dict[str, Any], now: datetime) -> None:
    assert auth_jwt(jwt.encode(claims(**overrides), SECRET, algorithm="HS256"), now=now).tenant_id == "tenant-1"


def test_the_lifetime_limit_is_one_hour() -> None:
    assert timedelta(hours=1) == MAX_LIFETIME


def test_forged_and_tampered_tokens_are_refused() -> None:
    forged = jwt.encode(claims(), "f" * 32, algorithm="HS256")
    refused(lambda: auth_jwt(forged), "signature does not match", token=forged)

    genuine = jwt.encode(claims(), SECRET, algorithm="HS256")
    head, _, signature = genuine.split(".")
    escalated = b64(json.dumps(claims(role="admin")).encode())
    tampered = f"{head}.{escalated}.{signature}"
    refused(lambda: auth_jwt(tampered), "signature does not match", token=tampered)


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "HS384", "HS512", "RS256", "ES256"])
def test_jwt_mode_accepts_hs256_only(alg: str) -> None:
    # `none` with an empty signature, and other algorithms with an HMAC made with the right secret:
    # the algorithm is checked before the signature is looked at.
    token = hand_signed({"alg": alg, "typ": "JWT"}, claims(), None if alg.lower() == "none" else SECRET.encode())
    refused(lambda: auth_jwt(token), "not signed with HS256", token=token)


def test_an_approval_link_token_is_not_an_api_token() -> None:
    link = issue_approval_token(SECRET, tenant_id="tenant-1", plan_id="a" * 64, action="decide", subject="alice",
                                now=NOW, token_id=lambda: "0" * 32)
    refused(lambda: auth_jwt(link), token=link)  # no role claim, and the approval links' audience


def test_revoked_tokens_are_refused_and_the_store_is_asked_about_the_jti() -> None:
    asked: list[str] = []

    def is_revoked(jti: str) -> bool:
        asked.append(jti)
        return jti == JTI

    token = jwt.encode(claims(), SECRET, algorithm="HS256")
    refused(lambda: auth_jwt(token, is_revoked=is_revoked), "revoked", token=token)
    assert asked == [JTI]
    other = jwt.encode(claims(jti="another-id"), SECRET, algorithm="HS256")
    assert auth_jwt(other, is_revoked=is_revoked).token_id == "another-id"


def test_now_must_be_timezone_aware() -> None:
    token = jwt.encode(claims(), SECRET, algorithm="HS256")
    with pytest.raises(ValueError, match="time zone"):
        auth_jwt(token, now=datetime(2024, 1, 1, 12))


def test_verification_does_not_read_the_clock() -> None:
    """A token valid in 2024 is accepted at a 2024 `now` and refused at the real, later time."""
    token = jwt.encode(claims(), SECRET, algorithm="HS256")
    assert auth_jwt(token, now=NOW).subject == "alice@example.com"
    refused(lambda: auth_jwt(token, now=datetime(2030, 1, 1, tzinfo=UTC)), "expired")


# ---------------------------------------------------------------------------------------------- oidc mode

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_KEY_2 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def public_jwk(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, kid: str, **extra: Any) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey):
        jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    else:
        jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {**jwk, "kid": kid, "use": "sig", **extra}


class FakeProvider:
    """The identity provider's JWKS endpoint: serves `keys`, records each fetch, can be made to fail."""

    def __init__(self, *keys: object) -> None:
        self.keys = list(keys)
        self.fetches: list[str] = []
        self.failing = False

    def __call__(self, url: str) -> Mapping[str, Any]:
        self.fetches.append(url)
        if self.failing:
            raise OSError("connection refused")
        return {"keys": list(self.keys)}


def sign(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, kid: str, **overrides: Any) -> str:
    alg = "RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256"
    return jwt.encode(claims(**overrides), key, algorithm=alg, headers={"kid": kid})


def auth_oidc(token: str, cache: JwksCache, *, now: datetime = NOW, config: AuthConfig = OIDC_CONFIG) -> Principal:
    return authenticate(f"Bearer {token}", config=config, now=now, is_revoked=never_revoked, jwks=cache)


@pytest.fixture
def provider() -> FakeProvider:
    return FakeProvider(public_jwk(RSA_KEY, "rsa-1"), public_jwk(EC_KEY, "ec-1"))


@pytest.fixture
def cache(provider: FakeProvider) -> JwksCache:
    return JwksCache(JWKS_URL, provider)


@pytest.mark.parametrize(("key", "kid"), [(RSA_KEY, "rsa-1"), (EC_KEY, "ec-1")], ids=["RS256", "ES256"])
def test_oidc_tokens_signed_by_the_provider_are_accepted(
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, kid: str, cache: JwksCache, provider: FakeProvider
) -> None:
    principal = auth_oidc(sign(key, kid), cache)
    assert (principal.subject, principal.tenant_id, principal.role, principal.mode) == (
        "alice@example.com", "tenant-1", "engineer", "oidc")
    assert provider.fetches == [JWKS_URL]


def test_alg_confusion_hs256_keyed_with_the_public_key_is_refused(cache: JwksCache, provider: FakeProvider) -> None:
    pem = RSA_KEY.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    for secret in (pem, pem.strip(), json.dumps(public_jwk(RSA_KEY, "rsa-1")).encode()):
        token = hand_signed({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}, claims(), secret)
        refused(partial(auth_oidc, token, cache), "not signed with RS256 or ES256", token=token)
    assert provider.fetches == []  # refused on the algorithm alone, before any key is looked up


@pytest.mark.parametrize("alg", ["none", "HS256", "HS512", "PS256", "RS512", "ES384", "EdDSA"])
def test_oidc_accepts_rs256_and_es256_only(alg: str, cache: JwksCache) -> None:
    token = hand_signed({"alg": alg, "kid": "rsa-1"}, claims(), None if alg == "none" else b"k" * 32)
    refused(lambda: auth_oidc(token, cache), "not signed with RS256 or ES256", token=token)


def test_a_key_of_the_wrong_type_for_the_algorithm_is_refused(cache: JwksCache) -> None:
    # An ES256 header naming the RSA key's kid (and the reverse) never reaches the signature check.
    es_on_rsa = jwt.encode(claims(), EC_KEY, algorithm="ES256", headers={"kid": "rsa-1"})
    refused(lambda: auth_oidc(es_on_rsa, cache), "its key is for RS256, not ES256", token=es_on_rsa)
    rs_on_ec = jwt.encode(claims(), RSA_KEY, algorithm="RS256", headers={"kid": "ec-1"})
    refused(lambda: auth_oidc(rs_on_ec, cache), "its key is for ES256, not RS256", token=rs_on_ec)


def test_a_token_signed_by_another_key_under_a_known_kid_is_refused(cache: JwksCache) -> None:
    forged = sign(RSA_KEY_2, "rsa-1")
    refused(lambda: auth_oidc(forged, cache), "signature does not match", token=forged)


def test_a_token_without_kid_is_refused(cache: JwksCache) -> None:
    token = jwt.encode(claims(), RSA_KEY, algorithm="RS256")
    refused(lambda: auth_oidc(token, cache), "no signing key (kid)", token=token)


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"aud": "another-api"}, "another audience"),
        ({"iss": "https://login.evil.example.com/ironlayer"}, "another issuer"),
        ({"iat": T - 3600, "nbf": T - 3600, "exp": T}, "expired"),
        ({"nbf": T + 120}, "not valid yet"),
        ({"exp": T - 60 + 5400}, "longer than 60 minutes"),  # Entra's default 60-90 min tokens need a policy
        ({"jti": DROP}, "'jti'"),
        ({"role": "superuser"}, "role claim"),
    ],
)
def test_oidc_applies_the_same_claim_rules(overrides: dict[str, Any], fragment: str, cache: JwksCache) -> None:
    token = sign(RSA_KEY, "rsa-1", **overrides)
    refused(lambda: auth_oidc(token, cache), fragment, token=token)


def test_oidc_checks_revocation() -> None:
    cache = JwksCache(JWKS_URL, FakeProvider(public_jwk(EC_KEY, "ec-1")))
    token = sign(EC_KEY, "ec-1")
    refused(lambda: authenticate(f"Bearer {token}", config=OIDC_CONFIG, now=NOW, is_revoked=lambda jti: True,
                                 jwks=cache), "revoked", token=token)


def test_key_rotation_an_unknown_kid_refetches_once(provider: FakeProvider, cache: JwksCache) -> None:
    assert auth_oidc(sign(RSA_KEY, "rsa-1"), cache).role == "engineer"
    provider.keys = [public_jwk(RSA_KEY_2, "rsa-2")]  # the provider rotates: rsa-1 withdrawn, rsa-2 published
    later = NOW + timedelta(minutes=5)
    assert auth_oidc(sign(RSA_KEY_2, "rsa-2"), cache, now=later).role == "engineer"
    assert len(provider.fetches) == 2
    # The refetch replaced the whole set: the withdrawn key is no longer trusted, even within the TTL.
    old = sign(RSA_KEY, "rsa-1")
    refused(lambda: auth_oidc(old, cache, now=later + timedelta(minutes=1)), "does not publish", token=old)


def test_unknown_kids_refetch_at_most_once_a_minute(provider: FakeProvider, cache: JwksCache) -> None:
    auth_oidc(sign(RSA_KEY, "rsa-1"), cache)
    assert len(provider.fetches) == 1
    made_up = sign(RSA_KEY, "made-up")
    refused(lambda: auth_oidc(made_up, cache, now=NOW + timedelta(seconds=61)), "does not publish")
    assert len(provider.fetches) == 2
    for seconds in (62, 90, 120):  # within a minute of the last fetch: no fetch
        refused(partial(auth_oidc, made_up, cache, now=NOW + timedelta(seconds=seconds)), "does not publish")
    assert len(provider.fetches) == 2
    refused(lambda: auth_oidc(made_up, cache, now=NOW + timedelta(seconds=121)), "does not publish")
    assert len(provider.fetches) == 3
    assert auth_oidc(sign(EC_KEY, "ec-1"), cache, now=NOW + timedelta(seconds=122)).role == "engineer"  # cached
    assert len(provider.fetches) == 3


def test_the_first_unknown_kid_right_after_a_fetch_waits_a_minute(provider: FakeProvider, cache: JwksCache) -> None:
    refused(lambda: auth_oidc(sign(RSA_KEY, "new"), cache), "does not publish")
    assert len(provider.fetches) == 1  # the initial fetch counts: no second one in the same instant


def test_the_cache_expires_after_its_ttl(provider: FakeProvider) -> None:
    cache = JwksCache(JWKS_URL, provider, ttl=timedelta(minutes=10))
    token = sign(RSA_KEY, "rsa-1")
    auth_oidc(token, cache)
    auth_oidc(token, cache, now=NOW + timedelta(minutes=9, seconds=59))
    assert len(provider.fetches) == 1
    provider.keys = [public_jwk(EC_KEY, "ec-1")]
    refused(lambda: auth_oidc(token, cache, now=NOW + timedelta(minutes=10)), "does not publish")
    assert len(provider.fetches) == 2


def test_an_unreachable_provider_answers_503_and_is_not_hammered(provider: FakeProvider, cache: JwksCache) -> None:
    provider.failing = True
    token = sign(RSA_KEY, "rsa-1")
    for seconds in (0, 30, 59):
        with pytest.raises(JwksUnavailableError) as caught:
            auth_oidc(token, cache, now=NOW + timedelta(seconds=seconds))
        assert status_of(caught.value) == 503
        assert isinstance(caught.value, AuthenticationError)
        assert "connection refused" not in str(caught.value)
    assert len(provider.fetches) == 1
    provider.failing = False
    assert auth_oidc(token, cache, now=NOW + timedelta(seconds=60)).role == "engineer"
    assert len(provider.fetches) == 2


def test_stale_keys_are_not_used_when_the_provider_is_down(provider: FakeProvider) -> None:
    cache = JwksCache(JWKS_URL, provider, ttl=timedelta(minutes=10))
    auth_oidc(sign(RSA_KEY, "rsa-1"), cache)
    token = sign(RSA_KEY, "rsa-1", iat=T + 540, nbf=T + 540, exp=T + 1200)
    auth_oidc(token, cache, now=NOW + timedelta(minutes=10, seconds=-1))
    assert len(provider.fetches) == 1
    provider.failing = True
    with pytest.raises(JwksUnavailableError):
        auth_oidc(token, cache, now=NOW + timedelta(minutes=10))


@pytest.mark.parametrize("document", [{}, {"keys": "none"}, {"keys": None}, []])
def test_a_malformed_jwks_document_answers_503(document: Any) -> None:
    cache = JwksCache(JWKS_URL, lambda url: document)
    with pytest.raises(JwksUnavailableError, match="no 'keys' list"):
        auth_oidc(sign(RSA_KEY, "rsa-1"), cache)


@pytest.mark.filterwarnings("ignore:The RSA key is 1024 bits")
def test_unusable_jwks_entries_are_skipped_never_trusted() -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    private = {**RSAAlgorithm.to_jwk(RSA_KEY, as_dict=True), "kid": "private"}
    p384 = ec.generate_private_key(ec.SECP384R1())
    provider = FakeProvider(
        {"kty": "oct", "kid": "oct", "k": b64(SECRET.encode())},  # symmetric: never a verification key here
        public_jwk(weak, "weak"),  # under 2048 bits
        private,  # private material published by mistake
        public_jwk(RSA_KEY, "enc", use="enc"),  # an encryption key
        public_jwk(RSA_KEY, "ps", alg="PS256"),  # meant for another algorithm
        public_jwk(p384, "p384"),  # another curve
        {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
        "not a key",
        {**public_jwk(RSA_KEY, ""), "kid": ""},
        public_jwk(EC_KEY, "good"),
    )
    cache = JwksCache(JWKS_URL, provider)
    for key, kid in ((weak, "weak"), (RSA_KEY, "private"), (RSA_KEY, "enc"), (RSA_KEY, "ps"), (EC_KEY, "p384"),
                     (RSA_KEY, "broken")):
        token = sign(key, kid)
        refused(partial(auth_oidc, token, cache), "does not publish")
    oct_token = hand_signed({"alg": "HS256", "kid": "oct"}, claims(), SECRET.encode())
    refused(lambda: auth_oidc(oct_token, cache), "not signed with RS256 or ES256")
    assert auth_oidc(sign(EC_KEY, "good"), cache).role == "engineer"


def test_oidc_without_a_jwks_cache_for_the_configured_url_is_a_settings_error() -> None:
    token = sign(RSA_KEY, "rsa-1")
    with pytest.raises(AuthSettingsError):
        authenticate(f"Bearer {token}", config=OIDC_CONFIG, now=NOW, is_revoked=never_revoked)
    with pytest.raises(AuthSettingsError):
        auth_oidc(token, JwksCache("https://elsewhere.example.com/jwks", FakeProvider()))


ENTRA_CONFIG = AuthConfig(mode="oidc", issuer=ISSUER, audience=AUDIENCE, jwks_url=JWKS_URL,
                          tenant_claim="extn.ironlayer_tenant", role_claim="roles")


@pytest.mark.parametrize(
    ("roles", "expected"),
    [
        ("operator", "operator"),
        (["viewer"], "viewer"),
        (["viewer", "engineer", "operator"], "engineer"),  # the highest IronLayer role counts
        (["Directory.Read", "admin"], "admin"),  # other applications' roles are ignored
        (["service"], "service"),
    ],
)
def test_oidc_reads_tenant_and_role_from_configured_claims(roles: Any, expected: str, cache: JwksCache) -> None:
    token = sign(RSA_KEY, "rsa-1", tenant_id=DROP, role=DROP, roles=roles, **{"extn.ironlayer_tenant": "tenant-9"})
    principal = auth_oidc(token, cache, config=ENTRA_CONFIG)
    assert (principal.tenant_id, principal.role) == ("tenant-9", expected)


@pytest.mark.parametrize(
    ("roles", "fragment"),
    [
        (["service", "admin"], "mixes the service role"),
        (["Directory.Read"], "names none of"),
        ([], "names none of"),
        (["admin", 1], "names none of"),
        ({"admin": True}, "names none of"),
    ],
)
def test_oidc_role_lists_that_grant_no_clear_role_are_refused(roles: Any, fragment: str, cache: JwksCache) -> None:
    token = sign(RSA_KEY, "rsa-1", roles=roles, **{"extn.ironlayer_tenant": "tenant-9"})
    refused(lambda: auth_oidc(token, cache, config=ENTRA_CONFIG), fragment, token=token)


def test_oidc_configured_claims_are_required(cache: JwksCache) -> None:
    token = sign(RSA_KEY, "rsa-1", roles=["admin"])  # has tenant_id, but not the configured tenant claim
    refused(lambda: auth_oidc(token, cache, config=ENTRA_CONFIG), "'extn.ironlayer_tenant'", token=token)
