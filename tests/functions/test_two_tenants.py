"""Two tenants on one deployment: each push runs with its own repository, warehouse, blobs, token and statuses.

Tenant A is onboarded with the CLI, tenant B with the admin API; each has its own local git repository,
its own DuckDB file and its own GitHub token credential, and its commit statuses go to a recording GitHub
stand-in (the one part that cannot run here). Pushes arrive as signed webhooks, and the real orchestrator
generator is driven with every activity run for real. Then B's repository is pushed with A's commit SHAs:
the job fails (the commits are not in B's repository) and A's warehouse file, blobs and statuses stay
exactly as they were.
"""

from __future__ import annotations

import asyncio
import io
import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from unittest.mock import Mock

import duckdb
import pytest
from cryptography.fernet import Fernet

from functions import resources
from shared_core.cli.demo import build_demo_repo, default_examples_dir
from shared_core.cli.main import main
from shared_core.core.errors import StateError
from shared_core.services.plans import plan_key
from tests.conftest import write_commits
from tests.functions.conftest import handler, json_body, request, sign

pytestmark = pytest.mark.integration
ZERO = "0" * 40
TOKEN_A, TOKEN_B = "ghp_" + "a1" * 18, "ghp_" + "b2" * 18

B_PROJECT = {
    "ironlayer.toml": 'models_path = "models"\n',
    "models/bronze/raw_orders.sql": (  # the same model name as A's: only the warehouse keeps them apart
        "-- name: bronze.raw_orders\n-- kind: FULL_REFRESH\n-- materialization: TABLE\n"
        "SELECT order_id, amount FROM VALUES (1, 7.5), (2, 8.5) AS t(order_id, amount)\n"
    ),
}
B_PROJECT_V2 = {**B_PROJECT, "models/silver/big_orders.sql": (
    "-- name: silver.big_orders\n-- kind: FULL_REFRESH\n"
    "SELECT order_id FROM {{ ref('bronze.raw_orders') }} WHERE amount > 8\n"
)}


class _GitHub(BaseHTTPRequestHandler):
    """Records `POST /repos/{owner}/{name}/statuses/{sha}` with the token it came with."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.calls.append((self.path, self.headers["Authorization"], body))  # type: ignore[attr-defined]
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: Any) -> None:
        return


@pytest.fixture()
def github() -> Iterator[tuple[str, list[tuple[str, str, dict[str, Any]]]]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _GitHub)
    server.calls = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.calls  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture()
def tenants(app_env: dict[str, Any], github: tuple[str, list[Any]], monkeypatch: pytest.MonkeyPatch,
            capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """Tenant A (CLI) and tenant B (API), each with its repository, warehouse file and GitHub token."""
    url, calls = github
    tmp: Path = app_env["tmp"]
    monkeypatch.setenv("IRONLAYER_CREDENTIAL_KEYS", Fernet.generate_key().decode())
    monkeypatch.setenv("IRONLAYER_GITHUB_API_URL", url)
    monkeypatch.setenv("IRONLAYER_WAREHOUSE_DIR", str(tmp / "warehouses"))
    resources.reset()
    a, b = f"a{uuid.uuid4().hex[:10]}", f"b{uuid.uuid4().hex[:10]}"
    repo_a, repo_b = f"acme-{a}/models", f"bolt-{b}/models"
    path_a, path_b = tmp / "repo-a", tmp / "repo-b"
    a_v1, a_v2 = build_demo_repo(default_examples_dir(), path_a)
    b_v1, b_v2 = write_commits(path_b, [B_PROJECT, B_PROJECT_V2])

    assert main(["tenants", "add", a, "--name", "Acme", "--repository", repo_a, "--local-path", str(path_a),
                 "--warehouse", "a.duckdb", "--github-token-credential", "github", "--status-repository", repo_a]) == 0
    assert "note: credential github is not stored yet" in capsys.readouterr().out
    monkeypatch.setenv("IRONLAYER_TENANT", a)  # `credentials set` stores for the tenant it runs as
    monkeypatch.setattr("sys.stdin", io.StringIO(TOKEN_A + "\n"))
    assert main(["credentials", "set", "github"]) == 0
    monkeypatch.setenv("IRONLAYER_TENANT", app_env["tenant"])
    resources.reset()

    onboarded = run_http("onboard_tenant", "POST", "/api/admin/tenants", {
        "tenant_id": b, "name": "Bolt", "repository": repo_b, "settings": {
            "local_path": str(path_b), "warehouse": "b.duckdb", "github_token_credential": "github",
            "status_repository": repo_b}})
    assert onboarded.status_code == 201, onboarded.get_body()
    assert json_body(onboarded)["missing_credentials"] == ["github"]

    async def store_b_token() -> None:
        from shared_core.services.credentials import credential_cipher, set_credential
        from shared_core.settings import get_settings

        cipher = credential_cipher(get_settings().credential_keys)
        await set_credential(await resources.get_store(), b, "github", TOKEN_B, cipher=cipher, actor="ops",
                             role="admin")

    asyncio.run(store_b_token())
    resources.reset()
    capsys.readouterr()
    return {**app_env, "a": a, "b": b, "repo_a": repo_a, "repo_b": repo_b, "a_v1": a_v1, "a_v2": a_v2,
            "b_v1": b_v1, "b_v2": b_v2, "calls": calls, "warehouse_a": tmp / "warehouses" / a / "a.duckdb",
            "warehouse_b": tmp / "warehouses" / b / "b.duckdb", "blobs": tmp / "blobs" / "tenants"}


def run_http(name: str, method: str, url: str, body: dict[str, Any]) -> Any:
    return asyncio.run(handler(name)(request(method, url, body=json.dumps(body).encode())))


def push(client: Mock, repository: str, before: str, after: str) -> dict[str, Any]:
    """Deliver a signed push webhook; returns the orchestration input it started (and its instance ID)."""
    body = json.dumps({"ref": "refs/heads/main", "before": before, "after": after, "pusher": {"name": "pat"},
                       "repository": {"id": 1, "full_name": repository}}).encode()
    req = request("POST", "/api/github/webhook", body=body, headers={
        "X-GitHub-Event": "push", "X-GitHub-Delivery": uuid.uuid4().hex, "X-Hub-Signature-256": sign(body)})
    response = asyncio.run(handler("github_webhook")(req, client=client))
    assert response.status_code == 202, response.get_body()
    instance = json_body(response)["instance_id"]
    return {"instance_id": instance, "input": client.started[instance]}


def orchestrate(started: dict[str, Any]) -> dict[str, Any]:
    """Run `plan_orchestrator` for one job with every activity executed for real; the reviewer approves."""
    from tests.functions.conftest import orchestrate as run_for_real

    run = run_for_real(started["input"], started["instance_id"], approve=True)
    assert run.status == "Completed", run.error
    return dict(run.output)


def table(path: Path, sql: str) -> list[tuple[Any, ...]]:
    conn = duckdb.connect(str(path), read_only=True)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def job_of(tenant: str, instance: str) -> Any:
    async def read() -> Any:
        return await (await resources.get_store()).get_job(tenant, instance)

    return asyncio.run(read())


def test_each_tenant_plans_and_applies_with_its_own_resources_and_a_foreign_push_touches_nothing(
        tenants: dict[str, Any], client: Mock) -> None:
    t = tenants
    calls = t["calls"]

    # A's push: planned from A's repository, applied into A's warehouse, statuses on A's repository with A's token
    done_a = orchestrate(push(client, t["repo_a"], ZERO, t["a_v1"]))
    assert done_a["status"] == "succeeded"
    assert table(t["warehouse_a"], "SELECT count(*) FROM bronze.raw_orders") == [(12,)]
    assert not t["warehouse_b"].exists()
    assert {(path.split("/statuses/")[0], auth) for path, auth, _ in calls} == {
        (f"/repos/{t['repo_a']}", f"Bearer {TOKEN_A}")}
    assert [body["state"] for _, _, body in calls] == ["pending", "success"]
    assert (t["blobs"] / t["a"] / "plans" / f"{done_a['plan_id']}.json").is_file()

    # B's push: B's repository, B's warehouse (the same model name, B's rows), B's token on B's repository
    calls.clear()
    done_b = orchestrate(push(client, t["repo_b"], ZERO, t["b_v1"]))
    assert done_b["status"] == "succeeded"
    assert table(t["warehouse_b"], "SELECT order_id, amount FROM bronze.raw_orders ORDER BY 1") == [
        (1, 7.5), (2, 8.5)]
    assert table(t["warehouse_a"], "SELECT count(*) FROM bronze.raw_orders") == [(12,)]
    assert {(path.split("/statuses/")[0], auth) for path, auth, _ in calls} == {
        (f"/repos/{t['repo_b']}", f"Bearer {TOKEN_B}")}
    assert sorted(p.name for p in (t["blobs"] / t["b"] / "plans").iterdir()) == [
        f"{done_b['plan_id']}.json", f"{done_b['plan_id']}.review.json"]

    # B's repository pushed with A's commits: B cannot read them, the job fails, and A is untouched
    warehouse_a = t["warehouse_a"].read_bytes(), t["warehouse_a"].stat().st_mtime_ns
    blobs_a = snapshot(t["blobs"] / t["a"])
    tables_a = table(t["warehouse_a"], "SELECT table_schema, table_name FROM information_schema.tables ORDER BY 1, 2")
    orders_a = table(t["warehouse_a"], "SELECT * FROM silver.orders ORDER BY ALL")
    calls.clear()
    attack = push(client, t["repo_b"], t["a_v1"], t["a_v2"])
    assert attack["input"]["tenant_id"] == t["b"]
    outcome = orchestrate(attack)
    assert outcome == {"plan_id": None, "status": "failed"}
    job = job_of(t["b"], attack["instance_id"])
    assert job["status"] == "failed" and job["plan_id"] is None
    assert f"cannot plan {t['a_v2'][:12]} of {t['repo_b']}" in job["detail"] and "unknown git ref" in job["detail"]
    assert calls == [(f"/repos/{t['repo_b']}/statuses/{t['a_v2']}", f"Bearer {TOKEN_B}",
                      {"state": "failure", "context": "ironlayer/plan",
                       "description": f"IronLayer planning failed: {job['detail']}"[:140]})]
    assert (t["warehouse_a"].read_bytes(), t["warehouse_a"].stat().st_mtime_ns) == warehouse_a
    assert snapshot(t["blobs"] / t["a"]) == blobs_a
    assert table(t["warehouse_a"], "SELECT table_schema, table_name FROM information_schema.tables "
                                   "ORDER BY 1, 2") == tables_a
    assert table(t["warehouse_a"], "SELECT * FROM silver.orders ORDER BY ALL") == orders_a

    # a normal second push of each tenant still plans and applies into its own warehouse only
    assert orchestrate(push(client, t["repo_b"], t["b_v1"], t["b_v2"]))["status"] == "succeeded"
    assert table(t["warehouse_b"], "SELECT order_id FROM silver.big_orders") == [(2,)]
    assert (t["warehouse_a"].read_bytes(), t["warehouse_a"].stat().st_mtime_ns) == warehouse_a
    assert orchestrate(push(client, t["repo_a"], t["a_v1"], t["a_v2"]))["status"] == "succeeded"
    assert table(t["warehouse_a"], "SELECT count(*) FROM gold.top_customers") != []
    assert table(t["warehouse_b"], "SELECT table_schema, table_name FROM information_schema.tables WHERE "
                                   "table_schema <> '_ironlayer' ORDER BY 1, 2") == [
        ("bronze", "raw_orders"), ("silver", "big_orders")]


def test_tenant_b_cannot_read_tenant_a_plans(tenants: dict[str, Any], client: Mock) -> None:
    from shared_core.security.approval_tokens import issue_approval_token
    from tests.functions.conftest import APPROVAL_SECRET

    t = tenants
    plan_a = orchestrate(push(client, t["repo_a"], ZERO, t["a_v1"]))["plan_id"]
    clients_a = asyncio.run(resources.clients_for(t["a"], t["repo_a"]))
    clients_b = asyncio.run(resources.clients_for(t["b"], t["repo_b"]))
    assert clients_a.blobs.get(plan_key(plan_a)) is not None
    assert clients_b.blobs.get(plan_key(plan_a)) is None  # the same key is B's own (empty) folder
    for hostile in (f"../{t['a']}/{plan_key(plan_a)}", f"/tenants/{t['a']}/{plan_key(plan_a)}",
                    f"plans/../../{t['a']}/{plan_key(plan_a)}", f"..\\{t['a']}\\plans", f"./{plan_key(plan_a)}"):
        with pytest.raises(StateError, match="invalid blob key"):
            clients_b.blobs.get(hostile)

    # a genuine approval link signed for tenant B but naming A's plan finds no plan: B's job never built it
    from datetime import UTC, datetime

    token = issue_approval_token(APPROVAL_SECRET, tenant_id=t["b"], plan_id=plan_a, action="decide",
                                 subject="reviewers", now=datetime.now(UTC))
    page = asyncio.run(handler("plan_approval")(
        request("GET", f"/api/plans/{plan_a}/approval", params={"token": token}, route_params={"plan_id": plan_a}),
        client=client))
    assert page.status_code == 404 and "silver.orders" not in page.get_body().decode()
    # while A's own link shows A's plan
    token = issue_approval_token(APPROVAL_SECRET, tenant_id=t["a"], plan_id=plan_a, action="decide",
                                 subject="reviewers", now=datetime.now(UTC))
    page = asyncio.run(handler("plan_approval")(
        request("GET", f"/api/plans/{plan_a}/approval", params={"token": token}, route_params={"plan_id": plan_a}),
        client=client))
    assert page.status_code == 200 and "silver.orders" in page.get_body().decode()
