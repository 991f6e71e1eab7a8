"""Every API request passes here first: authenticate, check the role, check revocation, rate-limit, audit.

`guard(req, endpoint)` returns the caller's `Principal` and the state store, or the error response to
send (401 unauthenticated, 403 wrong role, 429 with Retry-After). The tenant of every API call is the
one in the caller's token, never one the request names. Authentication mode comes from the settings:
`dev` (refused in production), `jwt` (HS256 shared secret) or `oidc` (RS256/ES256 against the JWKS).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.functions as func

from functions.http.responses import error_response
from shared_core.core.errors import CoreError
from shared_core.settings import Settings, get_settings

logger = logging.getLogger(__name__)
_jwks: dict[str, Any] = {}


def auth_config(settings: Settings) -> Any:
    from shared_core.security.tokens import AuthConfig

    config = AuthConfig(
        mode=settings.auth_mode,  # type: ignore[arg-type]  # AuthConfig checks the value itself
        dev_tenant=settings.tenant_id, secret=settings.auth_secret,
        issuer=settings.auth_issuer, audience=settings.auth_audience, jwks_url=settings.oidc_jwks_url,
    )
    config.validate(settings.environment)
    return config


def _jwks_cache(settings: Settings) -> Any:
    if settings.auth_mode != "oidc":
        return None
    cache = _jwks.get(settings.oidc_jwks_url)
    if cache is None:
        from shared_core.security.tokens import JwksCache

        def fetch(url: str) -> dict[str, Any]:
            import httpx

            response = httpx.get(url, timeout=5.0)
            response.raise_for_status()
            document: dict[str, Any] = response.json()
            return document

        cache = _jwks[settings.oidc_jwks_url] = JwksCache(settings.oidc_jwks_url, fetch)
    return cache


async def guard(req: func.HttpRequest, endpoint: str) -> tuple[Any, Any] | func.HttpResponse:
    """Authenticate and authorize one API request; returns (principal, store) or an error response."""
    from functions.resources import get_store
    from shared_core.core.errors import AuthenticationError, RateLimitedError
    from shared_core.security.ratelimit import limit_key, tenant_key
    from shared_core.security.roles import authorize
    from shared_core.security.tokens import authenticate

    settings = get_settings()
    now = datetime.now(UTC)
    try:
        config = auth_config(settings)
        jwks = _jwks_cache(settings)
        principal = await asyncio.to_thread(
            authenticate, req.headers.get("Authorization"), config=config, now=now, is_revoked=lambda _: False,
            jwks=jwks,
        )
        store = await get_store(settings)
        if principal.token_id and await store.is_revoked(principal.tenant_id, principal.token_id):
            raise AuthenticationError("this access token was revoked; sign in again for a new token")
        authorize(principal.role, endpoint)
        for key, limit in ((limit_key(principal.tenant_id, principal.subject, endpoint), settings.rate_limit_user),
                           (tenant_key(principal.tenant_id), settings.rate_limit_tenant)):
            decision = await store.rate_limit(principal.tenant_id, key, _decider(now, limit))
            if not decision.allowed:
                raise RateLimitedError(
                    f"too many requests to {endpoint}; retry after {decision.retry_after_seconds} s",
                    retry_after_seconds=decision.retry_after_seconds,
                )
        if principal.token_id:
            await _audit_login(store, principal)
    except CoreError as exc:
        response = error_response(exc)
        retry = getattr(exc, "retry_after_seconds", None)
        if retry:
            response.headers["Retry-After"] = str(retry)
        if response.status_code == 401:
            response.headers["WWW-Authenticate"] = 'Bearer realm="ironlayer"'
        return response
    return principal, store


def _decider(now: datetime, limit: int) -> Any:
    from shared_core.security.ratelimit import BucketState, RateLimit, decide

    rule = RateLimit(limit=limit, window=timedelta(minutes=1))

    def apply(state: tuple[datetime, int, int] | None) -> Any:
        current = BucketState(*state) if state else None
        decision = decide(current, now=now, limit=rule)
        new = decision.new_state
        return _Stored(decision.allowed, decision.retry_after_seconds,
                       (new.window_start, new.count, new.previous_count))

    return apply


class _Stored:
    def __init__(self, allowed: bool, retry_after_seconds: int, new_state: tuple[datetime, int, int]) -> None:
        self.allowed, self.retry_after_seconds, self.new_state = allowed, retry_after_seconds, new_state


_seen_logins: set[tuple[str, str]] = set()


async def _audit_login(store: Any, principal: Any) -> None:
    """Audit a token's first use by this worker: who signed in, for which tenant, with which role."""
    key = (principal.tenant_id, principal.token_id)
    if key in _seen_logins:
        return
    from shared_core.cli.security import record_audit

    await record_audit(store, principal.tenant_id, actor=principal.subject, role=principal.role, action="login",
                       target=principal.token_id, details={"mode": principal.mode})
    _seen_logins.add(key)
