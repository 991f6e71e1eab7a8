"""The activities, approval page, read API and schedule tick, end to end on real PostgreSQL, blobs and DuckDB.

The orchestrator's decisions are tested in test_orchestrator.py; here each activity it calls runs for
real, in the order the orchestrator calls them, against a local git repository of the example project.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest.mock import Mock
from urllib.parse import parse_qs, urlencode, urlparse

import duckdb
import pytest

from functions import resources
from shared_core.adapters.github.status import LoggedStatusPublisher
from shared_core.cli.demo import build_demo_repo, default_examples_dir
from shared_core.cli.main import main
from shared_core.core.planning.plan_codec import load_plan
from shared_core.security.approval_tokens import issue_approval_token
from shared_core.services.messages import JobIds, PlanJobRequest
from shared_core.settings import get_settings
from tests.functions.conftest import APPROVAL_SECRET, handler, json_body, request
from tests.integration.azurite import azurite_blob_fixture  # noqa: F401  (the `azurite_blob` fixture)

pytestmark = pytest.mark.integration
ZERO = "0" * 40


@pytest.fixture()
def repo(app_env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    path = app_env["tmp"] / "repo"
    v1, v2 = build_demo_repo(default_examples_dir(), path)
    monkeypatch.setenv("IRONLAYER_LOCAL_REPO", str(path))
    resources.reset()
    return {**app_env, "repo": path, "v1": v1, "v2": v2}


def plans_dir(repo: dict[str, Any]) -> Path:
    """Where the tenant's plans are: its prefix (`tenants/<tenant>/`) of the blob folder."""
    return Path(repo["tmp"] / "blobs" / "tenants" / repo["tenant"] / "plans")


def run(name: str, *args: Any, **kwargs: Any) -> Any:
    return asyncio.run(handler(name)(*args, **kwargs))


def job(repo: dict[str, Any], base: str, target: str) -> PlanJobRequest:
    return {"kind": "push", "tenant_id": repo["tenant"], "repository": "binkkatal/sample_app", "base": base,
            "target": target, "branch": "main", "author": "octocat", "auto_approve": False,
            "approval_ttl_hours": 24, "step_retries": 3, "instance_id": "push-" + "1" * 32}


def test_push_to_approved_execution(repo: dict[str, Any], client: Mock, capsys: pytest.CaptureFixture[str]) -> None:
    register("dev", "reviewer")  # who approves below (dev authentication: every bearer token is `dev`)
    # build_plan_activity: the stored plan is byte-identical to `ironlayer plan` for the same commits
    ref = run("build_plan_activity", job(repo, ZERO, repo["v1"]))
    plan_id = ref["plan_id"]
    stored = (plans_dir(repo) / f"{plan_id}.json").read_bytes()
    out = repo["tmp"] / "cli-plan.json"
    assert main(["plan", str(repo["repo"]), ZERO, repo["v1"], "--out", str(out), "--no-cache"]) == 0
    assert stored == out.read_bytes()
    plan = load_plan(stored.decode(), "stored")
    assert ref["status"] == "planned" and [len(w) for w in ref["waves"]] == [3, 3, 3, 1]
    assert sorted(p for w in ref["waves"] for p in w) == list(range(len(plan.steps)))  # positions, not IDs
    ids_in_order = [s.step_id for s in plan.steps]
    assert ref["depends_on"] == [[ids_in_order.index(d) for d in s.depends_on] for s in plan.steps]

    ids = JobIds(tenant_id=repo["tenant"], instance_id="push-" + "1" * 32, repository="binkkatal/sample_app",
                 target=repo["v1"], plan_id=plan_id)
    assert run("request_approval_activity", {**ids, "author": "octocat", "ttl_hours": 24}) == {
        "status": "requested", "link_expires_in_hours": 24}
    publisher = asyncio.run(resources.clients_for(repo["tenant"], "binkkatal/sample_app")).publisher
    assert isinstance(publisher, LoggedStatusPublisher)
    sha, state, description, link = publisher.published[-1]
    assert (sha, state) == (repo["v1"], "pending") and plan_id[:12] in description
    assert link is not None and link.startswith(f"https://ironlayer.example.com/api/plans/{plan_id}/approval?token=")
    token = parse_qs(urlparse(link).query)["token"][0]

    page = run("plan_approval", request("GET", link, params={"token": token}, route_params={"plan_id": plan_id}),
               client=client)
    html = page.get_body().decode()
    assert page.status_code == 200 and "silver.orders" in html and plan_id[:12] in html
    assert 'name="decision"' in html and page.headers["Content-Security-Policy"].startswith("default-src 'none'")

    def post(token_value: str, decision: str, plan: str = plan_id, signed_in: bool = True) -> Any:
        body = urlencode({"token": token_value, "decision": decision}).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if signed_in:  # dev authentication: any bearer token is the `dev` principal, registered below
            headers["Authorization"] = "Bearer dev"
        req = request("POST", f"/api/plans/{plan}/approval", body=body, route_params={"plan_id": plan},
                      headers=headers)
        return run("plan_approval", req, client=client)

    assert post(token, "approve", signed_in=False).status_code == 401  # the link alone decides nothing

    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert post(forged, "approve").status_code == 401
    other_plan = issue_approval_token(APPROVAL_SECRET, tenant_id=repo["tenant"], plan_id="f" * 64,
                                      action="decide", subject="x", now=datetime.now(UTC))
    assert post(other_plan, "approve").status_code == 403
    expired = issue_approval_token(APPROVAL_SECRET, tenant_id=repo["tenant"], plan_id=plan_id, action="decide",
                                   subject="x", now=datetime.now(UTC) - timedelta(hours=3), ttl=timedelta(hours=1))
    gone = post(expired, "approve")
    assert gone.status_code == 410 and "expired" in gone.get_body().decode()
    client.raise_event.assert_not_awaited()

    approved = post(token, "approve")
    assert approved.status_code == 200 and "approved" in approved.get_body().decode()
    client.raise_event.assert_awaited_once_with(ids["instance_id"], "approval",
                                                {"decision": "approve", "by": "reviewer", "comment": ""})
    reused = post(token, "approve")
    assert reused.status_code == 410 and "already used" in reused.get_body().decode()
    assert client.raise_event.await_count == 1

    assert run("start_execution_activity", ids) == {"status": "ok", "detail": ""}
    outcomes = {}
    for wave in ref["waves"]:
        for step in wave:
            result = run("run_step_activity", {**ids, "step": step, "skip_reason": None})
            assert (result["step_id"], result["model"]) == (plan.steps[step].step_id, plan.steps[step].model)
            outcomes[result["step_id"]] = result["status"]
    assert set(outcomes.values()) == {"success"}
    assert run("finalize_activity", {**ids, "outcome": "succeeded", "detail": "10 steps succeeded"}) == {
        "status": "succeeded"}
    assert publisher.published[-1][:2] == (repo["v1"], "success")
    conn = duckdb.connect(str(repo["tmp"] / "warehouse.duckdb"), read_only=True)
    assert conn.execute("SELECT count(*) FROM silver.orders").fetchone() == (9,)
    conn.close()

    # the read API
    plans = json_body(run("list_plans", request("GET", "/api/plans")))["plans"]
    assert [(p["plan_id"], p["status"]) for p in plans] == [(plan_id, "succeeded")]
    exact = run("get_plan", request("GET", f"/api/plans/{plan_id}", route_params={"plan_id": plan_id}))
    assert exact.status_code == 200 and exact.get_body() == stored
    runs = json_body(run("list_runs", request("GET", "/api/runs", params={"plan_id": plan_id})))["runs"]
    assert len(runs) == sum(max(1, s.batches) for s in plan.steps) and {r["status"] for r in runs} == {"success"}
    jobs = json_body(run("list_jobs", request("GET", "/api/jobs")))["jobs"]
    assert [(j["instance_id"], j["status"], j["plan_id"]) for j in jobs] == [(ids["instance_id"], "succeeded", plan_id)]
    health = run("health", request("GET", "/api/health"))
    assert health.status_code == 200 and json_body(health)["checks"] == {"postgres": "ok", "blob": "ok"}
    done = run("cancel_job", request("DELETE", f"/api/jobs/{ids['instance_id']}",
                                     route_params={"instance_id": ids["instance_id"]}), client=client)
    assert done.status_code == 409 and "already succeeded" in json_body(done)["error"]["message"]

    # a later schedule tick: silver.orders' cron fired, but the branch head (v2) changed it and v2 was not
    # approved and deployed: a schedule runs only deployed versions, so nothing starts
    tick = handler("schedule_tick")
    asyncio.run(tick(Mock(past_due=False), client=client))
    assert [i for i in client.started if i.startswith("schedule-")] == []

    # the push of v2 runs (approval skipped here: the activities in order), then the tick catches up
    v2 = run("build_plan_activity", {**job(repo, repo["v1"], repo["v2"]), "instance_id": "push-" + "2" * 32})
    ids2 = {**ids, "instance_id": "push-" + "2" * 32, "target": repo["v2"], "plan_id": v2["plan_id"]}
    assert run("start_execution_activity", ids2) == {"status": "ok", "detail": ""}
    for wave in v2["waves"]:
        for step in wave:
            assert run("run_step_activity", {**ids2, "step": step, "skip_reason": None})["status"] == "success"
    run("finalize_activity", {**ids2, "outcome": "succeeded", "detail": "steps succeeded"})
    asyncio.run(tick(Mock(past_due=False), client=client))
    scheduled = [(iid, inp) for iid, inp in client.started.items() if iid.startswith("schedule-")]
    assert len(scheduled) == 1
    instance, payload = scheduled[0]
    assert payload["kind"] == "schedule" and payload["models"] == ["silver.orders"]  # the model with a cron
    assert payload["target"] == repo["v2"]  # the branch head
    asyncio.run(tick(Mock(past_due=False), client=client))  # the next tick in the same period starts nothing
    assert [i for i in client.started if i.startswith("schedule-")] == [instance]
    ref = run("build_plan_activity", {**payload, "instance_id": instance})
    scheduled_plan = load_plan((plans_dir(repo) / f"{ref['plan_id']}.json").read_text(), "stored")
    first = scheduled_plan.steps[0]
    assert first.model == "silver.orders" and first.run_type == "incremental"
    assert first.start == "2024-01-09T00:00:00Z"  # lookback 1 before the ledger's end (2024-01-10)
    assert scheduled_plan.inputs.watermarks == {"silver.orders": (("2024-01-01T00:00:00Z", "2024-01-10T00:00:00Z"),)}


def register(subject: str, github_login: str) -> None:
    """Register an API identity of the test's tenant as an operator with its GitHub login."""
    from shared_core.services.identities import set_identity

    async def add() -> None:
        await set_identity(await resources.get_store(), get_settings().tenant_id, provider="api",
                           subject=subject, role="operator", github_login=github_login, actor="root",
                           actor_role="admin")

    asyncio.run(add())
    resources.reset()


@pytest.mark.parametrize(
    ("name", "kwargs", "status", "message"),
    [
        ("get_plan", {"route_params": {"plan_id": "nope"}}, 400, "is not 64 hex digits"),
        ("get_plan", {"route_params": {"plan_id": "e" * 64}}, 404, "not found"),
        ("list_runs", {"params": {"plan_id": "x' OR 1=1"}}, 400, "is not 64 hex digits"),
        ("cancel_job", {"route_params": {"instance_id": "../etc"}}, 400, "is not a job id"),
        ("cancel_job", {"route_params": {"instance_id": "push-" + "a" * 32}}, 404, "not found"),
    ],
)
def test_api_rejects_bad_ids_with_json(app_env: dict[str, Any], client: Mock, name: str, kwargs: dict[str, Any],
                                       status: int, message: str) -> None:
    method = "DELETE" if name == "cancel_job" else "GET"
    req = request(method, "/api/x", **kwargs)
    response = run(name, req, client=client) if name == "cancel_job" else run(name, req)
    assert response.status_code == status
    assert message in json_body(response)["error"]["message"]


def test_cancel_terminates_and_marks_runs_cancelled(repo: dict[str, Any], client: Mock) -> None:
    ref = run("build_plan_activity", job(repo, ZERO, repo["v1"]))
    instance = "push-" + "1" * 32

    async def running_run() -> None:
        store = await resources.get_store()
        stored = (plans_dir(repo) / f"{ref['plan_id']}.json").read_text()
        step = load_plan(stored, "stored").steps[0]
        await store.start_run(repo["tenant"], ref["plan_id"], step.step_id, step.model, None, None)
        await store.upsert_job(repo["tenant"], instance, status="running")

    asyncio.run(running_run())
    resources.reset()
    response = run("cancel_job", request("DELETE", f"/api/jobs/{instance}", route_params={"instance_id": instance}),
                   client=client)
    assert response.status_code == 202 and json_body(response)["runs_cancelled"] == 1
    client.terminate.assert_awaited_once_with(instance, "cancelled through the API by dev")
    jobs = json_body(run("list_jobs", request("GET", "/api/jobs")))["jobs"]
    assert jobs[0]["status"] == "cancelled"


def test_an_engine_configured_without_its_warehouse_fails_the_step_clearly(repo: dict[str, Any],
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    ref = run("build_plan_activity", job(repo, ZERO, repo["v1"]))
    monkeypatch.setenv("IRONLAYER_ENGINE", "databricks")
    monkeypatch.setenv("IRONLAYER_DATABRICKS_HOST", "adb-123.azuredatabricks.net")
    for name in ("DATABRICKS_HTTP_PATH", "DATABRICKS_TOKEN", "DATABRICKS_CLIENT_ID", "DATABRICKS_CLIENT_SECRET"):
        monkeypatch.delenv(name, raising=False)
    resources.reset()
    ids = {"tenant_id": repo["tenant"], "instance_id": "push-" + "1" * 32, "repository": "binkkatal/sample_app",
           "target": repo["v1"], "plan_id": ref["plan_id"]}
    result = run("run_step_activity", {**ids, "step": ref["waves"][0][0], "skip_reason": None})
    assert result["status"] == "failed"
    assert result["error"] == ("IRONLAYER_ENGINE=databricks (host adb-123.azuredatabricks.net) needs "
                               "DATABRICKS_HTTP_PATH, DATABRICKS_TOKEN or DATABRICKS_CLIENT_ID/DATABRICKS_CLIENT_SECRET")


def test_local_settings_sample_lists_every_setting() -> None:
    import re

    root = Path(__file__).parents[2]
    sample = json.loads((root / "local.settings.sample.json").read_text())["Values"]
    source = (root / "shared_core" / "settings.py").read_text()
    read = set(re.findall(r'"(IRONLAYER_[A-Z_]+)"', source))
    host = set(re.findall(r"%(IRONLAYER_[A-Z_]+)%", (root / "host.json").read_text()))  # e.g. the task hub name
    assert host == {"IRONLAYER_TASK_HUB"}
    assert read | host == {k for k in sample if k.startswith("IRONLAYER_")}


def test_plans_go_to_azure_blob_storage_when_configured(repo: dict[str, Any], azurite_blob: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IRONLAYER_BLOB_CONNECTION_STRING", azurite_blob)
    monkeypatch.setenv("IRONLAYER_BLOB_CONTAINER", f"plans-{repo['tenant']}")
    resources.reset()
    ref = run("build_plan_activity", job(repo, ZERO, repo["v1"]))
    out = repo["tmp"] / "cli-plan.json"
    assert main(["plan", str(repo["repo"]), ZERO, repo["v1"], "--out", str(out), "--no-cache"]) == 0
    response = run("get_plan", request("GET", f"/api/plans/{ref['plan_id']}", route_params={"plan_id": ref["plan_id"]}))
    assert response.status_code == 200 and response.get_body() == out.read_bytes()
    assert not (repo["tmp"] / "blobs").exists()  # nothing went to the local folder
    health = run("health", request("GET", "/api/health"))
    assert json_body(health)["checks"]["blob"] == "ok"
