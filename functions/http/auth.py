"""Who calls the API, and may they: authenticate, check revocation and role, rate-limit, audit the sign-in.

`admit(req, endpoint)` returns the caller's `Principal` and the state store, or raises the `CoreError`
that refuses the request (`AuthenticationError`, `AuthorizationError`, `RateLimitedError`, ...). The
tenant of every API call is the one in the caller's token, never one the request names. The mode comes
from the settings: `dev` (refused in production), `jwt` (HS256 shared secret) or `oidc` (RS256/ES256
against the provider's JWKS). The request guard (`functions.http.guard`) calls it for every endpoint.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import azure.functions as func

from shared_core.core.errors import AuthenticationError, AuthorizationError
from shared_core.settings import Settings, get_settings

if TYPE_CHECKING:
    from collections.abc import Callable

    from shared_core.ports import StateStore
    from shared_core.security.tokens import AuthConfig, JwksCache, Principal

_jwks: dict[str, JwksCache] = {}
_seen_logins: set[tuple[str, str]] = set()
_known_tenants: set[str] = set()  # tenants whose row this worker has seen (a tenant row is never deleted)
RATE_WINDOW = timedelta(minutes=1)


def auth_config(settings: Settings) -> AuthConfig:
    """The authentication settings, checked for shape and for the environment (dev mode only in development).

    Raises:
        AuthSettingsError: the settings are incomplete or unsafe.
    """
    from shared_core.security.tokens import AuthConfig

    config = AuthConfig(
        mode=settings.auth_mode,  # type: ignore[arg-type]  # AuthConfig checks the value itself
        dev_tenant=settings.tenant_id, secret=settings.auth_secret,
        issuer=settings.auth_issuer, audience=settings.auth_audience, jwks_url=settings.oidc_jwks_url,
    )
    config.validate(settings.environment)
    return config


def _jwks_cache(settings: Settings) -> JwksCache | None:
    """The identity provider's keys, cached per worker (oidc mode only)."""
    if settings.auth_mode != "oidc":
        return None
    cache = _jwks.get(settings.oidc_jwks_url)
    if cache is None:
        from shared_core.security.tokens import JwksCache

        def fetch(url: str) -> dict[str, Any]:  # Any: the JWKS document's parsed JSON
            import httpx

            response = httpx.get(url, timeout=5.0)
            response.raise_for_status()
            document: dict[str, Any] = response.json()
            return document

        cache = _jwks[settings.oidc_jwks_url] = JwksCache(settings.oidc_jwks_url, fetch)
    return cache


async def admit(req: func.HttpRequest, endpoint: str) -> tuple[Principal, StateStore]:
    """Authenticate and authorize one API request to `endpoint` (its name in the role policy).

    Returns:
        The caller's principal and the state store.

    Raises:
        AuthSettingsError: the authentication settings are unsafe (the server's fault).
        AuthenticationError: no valid access token, or a revoked one.
        AuthorizationError: the caller's role may not call `endpoint`, or its tenant is not provisioned here.
        RateLimitedError: the caller or its tenant sent too many requests.
    """
    from functions.resources import get_store
    from shared_core.security.ratelimit import ensure_allowed, limit_key, tenant_key
    from shared_core.security.roles import authorize
    from shared_core.security.tokens import authenticate

    settings = get_settings()
    now = datetime.now(UTC)
    config = auth_config(settings)
    jwks = _jwks_cache(settings)
    principal = await asyncio.to_thread(
        authenticate, req.headers.get("Authorization"), config=config, now=now, is_revoked=lambda _: False,
        jwks=jwks,
    )
    store: StateStore = await get_store(settings)
    if principal.tenant_id not in _known_tenants:
        if not await store.tenant_exists(principal.tenant_id):
            raise AuthorizationError("the access token's tenant is not provisioned on this deployment; ask its "
                                     "administrator to onboard the tenant")
        _known_tenants.add(principal.tenant_id)
    if principal.token_id and await store.is_revoked(principal.tenant_id, principal.token_id):
        raise AuthenticationError("this access token was revoked; sign in again for a new token")
    authorize(principal.role, endpoint)
    for key, limit in ((limit_key(principal.tenant_id, principal.subject, endpoint), settings.rate_limit_user),
                       (tenant_key(principal.tenant_id), settings.rate_limit_tenant)):
        decision = await store.rate_limit(principal.tenant_id, key, _decider(now, limit))
        ensure_allowed(decision, f"requests to {endpoint}")
    if principal.token_id:
        await _audit_login(store, principal)
    return principal, store


@dataclass(frozen=True)
class _Stored:
    """A rate-limit decision in the shape the store keeps: the bucket as a `(start, count, previous)` row."""

    allowed: bool
    retry_after_seconds: int
    new_state: tuple[datetime, int, int]


def _decider(now: datetime, limit: int) -> Callable[[tuple[datetime, int, int] | None], _Stored]:
    """The decision the store applies atomically to one stored bucket."""
    from shared_core.security.ratelimit import BucketState, RateLimit, decide

    rule = RateLimit(limit=limit, window=RATE_WINDOW)

    def apply(state: tuple[datetime, int, int] | None) -> _Stored:
        decision = decide(BucketState(*state) if state else None, now=now, limit=rule)
        new = (decision.new_state.window_start, decision.new_state.count, decision.new_state.previous_count)
        return _Stored(decision.allowed, decision.retry_after_seconds, new)

    return apply


async def _audit_login(store: StateStore, principal: Principal) -> None:
    """Audit a token's first use by this worker: who signed in, for which tenant, with which role."""
    key = (principal.tenant_id, principal.token_id)
    if key in _seen_logins:
        return
    from shared_core.services.audit import record_audit

    await record_audit(store, principal.tenant_id, actor=principal.subject, role=principal.role, action="login",
                       target=principal.token_id, details={"mode": principal.mode})
    _seen_logins.add(key)
