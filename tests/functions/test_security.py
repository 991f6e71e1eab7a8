"""Security through the real handlers: the role-by-endpoint matrix, bad tokens, rate limits, the audit
chain against tampering, key rotation, and fuzzed requests that must never produce a 5xx."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from unittest.mock import Mock

import asyncpg
import jwt
import pytest
from cryptography.fernet import Fernet
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from functions import resources
from shared_core.cli.main import main
from tests.functions.conftest import handler, json_body, request
from tests.plans import stub_plan

pytestmark = pytest.mark.integration

SECRET = "api-token-secret-for-the-tests-0123456789"
ISSUER, AUDIENCE = "https://login.example.com", "ironlayer-api"
KEY = Fernet.generate_key().decode()


@pytest.fixture()
def jwt_env(app_env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    for key, value in {"IRONLAYER_AUTH_MODE": "jwt", "IRONLAYER_AUTH_SECRET": SECRET, "IRONLAYER_AUTH_ISSUER": ISSUER,
                       "IRONLAYER_AUTH_AUDIENCE": AUDIENCE, "IRONLAYER_CREDENTIAL_KEYS": KEY}.items():
        monkeypatch.setenv(key, value)
    resources.reset()
    return app_env


def token(tenant: str, role: str, *, subject: str = "ann", jti: str | None = None, lifetime: int = 600,
          secret: str = SECRET, audience: str = AUDIENCE, issued: datetime | None = None, **extra: Any) -> str:
    now = issued or datetime.now(UTC)
    claims = {"iss": ISSUER, "aud": audience, "sub": subject, "tenant_id": tenant, "role": role,
              "jti": jti or uuid.uuid4().hex, "iat": int(now.timestamp()), "exp": int(now.timestamp()) + lifetime,
              **extra}
    return jwt.encode(claims, secret, algorithm="HS256")


def call(name: str, bearer: str | None, *, method: str = "GET", body: bytes = b"",
         route_params: dict[str, str] | None = None, client: Mock | None = None) -> Any:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    req = request(method, f"/api/{name}", body=body, headers=headers, route_params=route_params or {})
    code = handler(name)
    if name in ("cancel_job", "decide_plan"):
        return asyncio.run(code(req, client=client or Mock()))
    return asyncio.run(code(req))


# endpoint -> (handler, method, route params, body)
ENDPOINTS: dict[str, tuple[str, str, dict[str, str], bytes]] = {
    "list_plans": ("list_plans", "GET", {}, b""),
    "get_plan": ("get_plan", "GET", {"plan_id": "e" * 64}, b""),
    "list_runs": ("list_runs", "GET", {}, b""),
    "list_jobs": ("list_jobs", "GET", {}, b""),
    "health": ("health", "GET", {}, b""),
    "audit_verify": ("audit_verify", "GET", {}, b""),
    "telemetry": ("telemetry_summary", "GET", {}, b""),
    "usage": ("usage", "GET", {}, b""),
    "quota": ("quota", "GET", {}, b""),
    "cancel_job": ("cancel_job", "DELETE", {"instance_id": "push-" + "a" * 32}, b""),
    "approve_plan": ("decide_plan", "POST", {"plan_id": "e" * 64}, b'{"decision": "approve"}'),
    "reject_plan": ("decide_plan", "POST", {"plan_id": "e" * 64}, b'{"decision": "reject"}'),
    "manage_credentials": ("put_credential", "PUT", {"name": "databricks_token"}, b'{"value": "dapi-secret-1234"}'),
    "manage_settings": ("put_settings", "PUT", {}, b'{"allow_self_approval": false}'),
    "manage_tenants": ("onboard_tenant", "POST", {}, b'{}'),
    "configure_repository": ("put_repository", "PUT", {"owner": "matrix", "name": "probe"}, b'{"branches": ["main"]}'),
    "manage_identities": ("put_identity", "PUT", {}, b'{"provider": "api", "subject": "zed", "role": "viewer"}'),
}
READ = {"list_plans", "get_plan", "list_runs", "list_jobs", "health", "audit_verify", "telemetry", "usage", "quota"}
OPERATE = READ | {"cancel_job", "approve_plan", "reject_plan"}
ALLOWED = {  # written out, not derived from shared_core.security.roles
    "viewer": READ,
    "operator": OPERATE,
    "engineer": OPERATE,
    "admin": OPERATE | {"manage_credentials", "manage_settings", "manage_tenants", "configure_repository",
              "manage_identities"},
    "service": {"health"},
}


@pytest.mark.parametrize("role", sorted(ALLOWED))
def test_role_by_endpoint_matrix(jwt_env: dict[str, Any], role: str) -> None:
    for endpoint, (name, method, params, body) in ENDPOINTS.items():
        response = call(name, token(jwt_env["tenant"], role), method=method, body=body, route_params=params)
        if endpoint in ALLOWED[role]:
            assert response.status_code not in (401, 403), (role, endpoint, response.get_body())
            assert response.status_code < 500, (role, endpoint, response.get_body())
        else:
            assert response.status_code == 403, (role, endpoint, response.status_code)
            assert "role" in json_body(response)["error"]["message"]


def test_credentials_are_stored_encrypted_and_never_returned(jwt_env: dict[str, Any], admin_database_url: str) -> None:
    response = call("put_credential", token(jwt_env["tenant"], "admin"), method="PUT",
                    body=b'{"value": "dapi0123456789abcdef"}', route_params={"name": "databricks_token"})
    assert response.status_code == 200
    assert "dapi0123456789abcdef" not in response.get_body().decode()
    assert json_body(response)["value"].endswith("cdef")

    async def stored() -> str:
        conn = await asyncpg.connect(admin_database_url)
        try:
            return str(await conn.fetchval("SELECT ciphertext FROM credentials WHERE tenant_id = $1",
                                           jwt_env["tenant"]))
        finally:
            await conn.close()

    ciphertext = asyncio.run(stored())
    assert ciphertext.startswith("gAAAAA") and "dapi" not in ciphertext


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda t: None, "Authorization"),
        (lambda t: token(t, "admin", secret="another-secret-of-sufficient-length-xyz"), "signature"),
        (lambda t: token(t, "admin", issued=datetime.now(UTC) - timedelta(hours=2)), "expired"),
        (lambda t: token(t, "admin", audience="someone-else"), "audience"),
        (lambda t: token(t, "admin", lifetime=7200), "longer than 60 minutes"),
        (lambda t: token(t, "root"), "role"),
        (lambda t: "not.a.jwt", ""),
        (lambda t: jwt.encode({"sub": "x", "tenant_id": t, "role": "admin"}, None,  # type: ignore[arg-type]
                              algorithm="none"), ""),  # an unsigned token, on purpose
    ],
)
def test_bad_tokens_are_refused_with_401(jwt_env: dict[str, Any], make: Any, message: str) -> None:
    response = call("list_plans", make(jwt_env["tenant"]))
    assert response.status_code == 401 and response.headers["WWW-Authenticate"].startswith("Bearer")
    assert message.lower() in json_body(response)["error"]["message"].lower()


def test_revoked_tokens_are_refused_on_every_request(jwt_env: dict[str, Any]) -> None:
    jti = uuid.uuid4().hex
    bearer = token(jwt_env["tenant"], "viewer", jti=jti)
    assert call("list_plans", bearer).status_code == 200

    async def revoke() -> None:
        store = await resources.get_store()
        await store.revoke_token(jwt_env["tenant"], jti, datetime.now(UTC) + timedelta(hours=1))

    asyncio.run(revoke())
    resources.reset()
    response = call("list_plans", bearer)
    assert response.status_code == 401 and "revoked" in json_body(response)["error"]["message"]


def test_tenants_see_only_their_own_data(jwt_env: dict[str, Any]) -> None:
    mine = token(jwt_env["tenant"], "admin")
    assert call("put_settings", mine, method="PUT", body=b'{"allow_self_approval": true}').status_code == 200
    other_tenant = f"o{uuid.uuid4().hex[:10]}"

    async def make_other() -> None:
        store = await resources.get_store()
        await store.ensure_tenant(other_tenant, other_tenant)

    asyncio.run(make_other())
    resources.reset()
    theirs = call("audit_verify", token(other_tenant, "viewer"))
    assert json_body(theirs)["checked"] == 1  # only its own login: none of this tenant's entries
    assert json_body(call("audit_verify", token(jwt_env["tenant"], "viewer")))["checked"] >= 2


def test_rate_limit_answers_429_with_retry_after(jwt_env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IRONLAYER_RATE_LIMIT_USER", "3")
    resources.reset()
    bearer = token(jwt_env["tenant"], "viewer")
    statuses = [call("list_jobs", bearer).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    limited = call("list_jobs", bearer)
    assert limited.status_code == 429 and 1 <= int(limited.headers["Retry-After"]) <= 120  # two windows at most
    assert call("list_plans", bearer).status_code == 200  # per endpoint and user


def test_audit_chain_detects_changed_deleted_reordered_and_truncated_rows(jwt_env: dict[str, Any],
                                                                         admin_database_url: str) -> None:
    admin = token(jwt_env["tenant"], "admin", subject="root")
    for flag in (True, False, True, False):
        body = json.dumps({"allow_self_approval": flag}).encode()
        assert call("put_settings", admin, method="PUT", body=body).status_code == 200
    viewer = token(jwt_env["tenant"], "viewer")
    report = json_body(call("audit_verify", viewer))
    assert report["ok"] and report["checked"] == 6  # two logins (admin, viewer) and four settings changes

    async def tamper(sql: str) -> None:
        conn = await asyncpg.connect(admin_database_url)
        try:
            await conn.execute(sql.replace("$T", f"'{jwt_env['tenant']}'"))
        finally:
            await conn.close()

    SWAP_2_AND_4 = ("UPDATE audit_log SET seq = 1000 WHERE tenant_id = $T AND seq = 2; "
                    "UPDATE audit_log SET seq = 2 WHERE tenant_id = $T AND seq = 4; "
                    "UPDATE audit_log SET seq = 4 WHERE tenant_id = $T AND seq = 1000")

    def verify() -> dict[str, Any]:
        resources.reset()
        result: dict[str, Any] = json_body(call("audit_verify", token(jwt_env["tenant"], "viewer")))
        return result

    asyncio.run(tamper("UPDATE audit_log SET actor = 'mallory' WHERE tenant_id = $T AND seq = 3"))
    assert (verify()["ok"], verify()["first_broken_seq"]) == (False, 3)
    asyncio.run(tamper("UPDATE audit_log SET actor = 'root' WHERE tenant_id = $T AND seq = 3"))
    assert verify()["ok"]
    asyncio.run(tamper(SWAP_2_AND_4))
    assert verify()["first_broken_seq"] == 2
    asyncio.run(tamper(SWAP_2_AND_4))
    assert verify()["ok"]
    asyncio.run(tamper("DELETE FROM audit_log WHERE tenant_id = $T AND seq = (SELECT max(seq) FROM audit_log "
                       "WHERE tenant_id = $T)"))
    truncated = verify()
    assert not truncated["ok"] and "does not link" in truncated["reason"]  # later appends chain to the head
    asyncio.run(tamper("DELETE FROM audit_log WHERE tenant_id = $T AND seq = 2"))
    assert verify()["first_broken_seq"] == 2
    assert main(["audit", "verify"]) == 1


def test_key_rotation_keeps_every_credential_readable(jwt_env: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    import io

    from shared_core.security.cipher import CredentialCipher, credential_name

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    monkeypatch.setenv("IRONLAYER_CREDENTIAL_KEYS", old)
    for name, value in (("github_token", "ghp_aaaaaaaaaaaaaaaaaaaaaaaa"), ("databricks_token", "dapi1234")):
        monkeypatch.setattr("sys.stdin", io.StringIO(value + "\n"))
        assert main(["credentials", "set", name]) == 0
    monkeypatch.setenv("IRONLAYER_CREDENTIAL_KEYS", f"{new},{old}")
    assert main(["rotate-keys"]) == 0
    assert "re-encrypted 2 credentials" in capsys.readouterr().out
    monkeypatch.setenv("IRONLAYER_CREDENTIAL_KEYS", new)  # the old key is retired

    async def read_all() -> dict[str, str]:
        store = await resources.get_store()
        box = CredentialCipher([new])
        return {name: box.decrypt(credential_name(jwt_env["tenant"], name), ciphertext)
                for name, ciphertext in await store.list_credentials(jwt_env["tenant"])}

    resources.reset()
    assert asyncio.run(read_all()) == {"databricks_token": "dapi1234", "github_token": "ghp_aaaaaaaaaaaaaaaaaaaaaaaa"}
    assert main(["audit", "verify"]) == 0


_SURROGATES: tuple[Literal["Cs"]] = ("Cs",)
_text = st.text(alphabet=st.characters(exclude_categories=_SURROGATES), max_size=80)
_bodies = st.one_of(st.binary(max_size=200), _text.map(str.encode),
                    st.dictionaries(_text, st.one_of(_text, st.integers(), st.booleans(), st.none()),
                                    max_size=4).map(lambda d: json.dumps(d).encode()))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(endpoint=st.sampled_from(sorted(ENDPOINTS)), body=_bodies, param=_text,
       auth=st.one_of(st.none(), _text, st.just("Bearer ") | _text.map(lambda t: "Bearer " + t)))
def test_fuzzed_requests_never_get_a_5xx(app_env: dict[str, Any], endpoint: str, body: bytes, param: str,
                                         auth: str | None) -> None:
    name, method, params, _ = ENDPOINTS[endpoint]
    route = {key: param for key in params}
    headers = {"Authorization": auth} if auth else {}
    req = request(method, f"/api/{name}", body=body, headers=headers, route_params=route)
    code = handler(name)
    response = asyncio.run(code(req, client=Mock()) if name in ("cancel_job", "decide_plan") else code(req))
    assert response.status_code < 500, (endpoint, body[:60], response.get_body()[:200])


@pytest.fixture()
def unmapped_afterwards(admin_database_url: str) -> Iterator[None]:
    """Drop the repository routes a test made (the routing table is shared by every tenant of the session)."""
    yield

    async def unmap() -> None:
        conn = await asyncpg.connect(admin_database_url)
        try:
            await conn.execute("DELETE FROM repository_tenants WHERE repository = 'codertocat/hello-world'")
        finally:
            await conn.close()

    asyncio.run(unmap())


@pytest.mark.usefixtures("unmapped_afterwards")
def test_webhooks_are_routed_to_the_tenant_mapped_to_the_repository(app_env: dict[str, Any], client: Mock) -> None:
    from shared_core.core.repository_settings import repository_settings
    from shared_core.services.tenancy import onboard_tenant
    from tests.functions.conftest import fixture_bytes, sign

    mapped = f"m{uuid.uuid4().hex[:10]}"
    body = fixture_bytes("push.new-branch.json")  # a push to master of Codertocat/Hello-World

    def deliver() -> Any:
        req = request("POST", "/api/github/webhook", body=body, headers={
            "X-GitHub-Event": "push", "X-GitHub-Delivery": uuid.uuid4().hex, "X-Hub-Signature-256": sign(body)})
        return asyncio.run(handler("github_webhook")(req, client=client))

    refused = deliver()  # not mapped to any tenant, and not this deployment's own repository
    assert refused.status_code == 404
    assert json_body(refused)["error"]["message"] == (
        "repository codertocat/hello-world is not onboarded; run `ironlayer tenants add TENANT --repository "
        "Codertocat/Hello-World` (or `ironlayer repositories map Codertocat/Hello-World --tenant TENANT`)")

    async def map_only() -> None:
        store = await resources.get_store()
        await store.ensure_tenant(mapped, mapped)
        await store.map_repository(mapped, "Codertocat/Hello-World", 123)

    asyncio.run(map_only())
    resources.reset()
    no_settings = deliver()  # mapped, but without settings: nothing to run it with
    assert no_settings.status_code == 404 and f"ironlayer tenants add {mapped}" in json_body(no_settings)["error"][
        "message"]

    async def onboard() -> None:
        settings = repository_settings(mapped, "Codertocat/Hello-World", production=False, branches=["master"])
        await onboard_tenant(await resources.get_store(), settings, name="Mapped", actor="ops", role="admin")

    asyncio.run(onboard())
    resources.reset()
    response = deliver()
    assert response.status_code == 202
    assert client.start_new.await_args.args[2]["tenant_id"] == mapped


def test_secrets_and_pii_never_reach_the_state_store_or_the_logs(app_env: dict[str, Any], admin_database_url: str,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    import logging

    import function_app  # noqa: F401  (installs the log scrubbing)

    async def fail_a_run() -> int:
        store = await resources.get_store()
        await store.save_plan(app_env["tenant"], stub_plan("c" * 64, base="b", target="t", inputs_hash="i"), "{}")
        run_id: int = await store.start_run(app_env["tenant"], "c" * 64, "s", "m.x", None, None)
        await store.finish_run(app_env["tenant"], run_id, "failed",
                               error="connect to postgresql://etl:hunter2@db/x failed for ann@example.com "
                                     "with token ghp_0123456789abcdefghijklmnopqrstuvwxyz")
        return run_id

    run_id = asyncio.run(fail_a_run())

    async def stored() -> str:
        conn = await asyncpg.connect(admin_database_url)
        try:
            return str(await conn.fetchval("SELECT error FROM runs WHERE run_id = $1", run_id))
        finally:
            await conn.close()

    error = asyncio.run(stored())
    assert "hunter2" not in error and "ann@example.com" not in error and "ghp_0123" not in error
    assert "postgresql://etl:***@db/x" in error
    with caplog.at_level(logging.INFO):
        logging.getLogger("functions.test").info("token %s for %s", "ghp_0123456789abcdefghijklmnopqrstuvwxyz",
                                                 "bob@example.com")
    assert "ghp_0123" not in caplog.text and "bob@example.com" not in caplog.text
