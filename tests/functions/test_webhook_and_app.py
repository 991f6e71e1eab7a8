"""The registered functions and their bindings, and the GitHub webhook with real payloads."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any
from unittest.mock import Mock

import pytest

from tests.functions.conftest import fixture_bytes, functions_by_name, handler, json_body, request, sign

pytestmark = pytest.mark.integration


def test_the_host_loads_exactly_these_functions_and_bindings() -> None:
    described = {}
    for name, function in functions_by_name().items():
        bindings = json.loads(function.get_function_json())["bindings"]
        described[name] = sorted(
            (b["type"], b.get("route"), tuple(b.get("methods") or ()), b.get("schedule"), b.get("runOnStartup"))
            for b in bindings
        )
    assert described == {
        "github_webhook": [("durableClient", None, (), None, None), ("http", None, (), None, None),
                           ("httpTrigger", "github/webhook", ("POST",), None, None)],
        "plan_orchestrator": [("orchestrationTrigger", None, (), None, None)],
        "run_steps_orchestrator": [("orchestrationTrigger", None, (), None, None)],
        "build_plan_activity": [("activityTrigger", None, (), None, None)],
        "request_approval_activity": [("activityTrigger", None, (), None, None)],
        "plan_approval": [("durableClient", None, (), None, None), ("http", None, (), None, None),
                          ("httpTrigger", "plans/{plan_id}/approval", ("GET", "POST"), None, None)],
        "start_execution_activity": [("activityTrigger", None, (), None, None)],
        "run_step_activity": [("activityTrigger", None, (), None, None)],
        "finalize_activity": [("activityTrigger", None, (), None, None)],
        "schedule_tick": [("durableClient", None, (), None, None),
                          ("timerTrigger", None, (), "0 */5 * * * *", False)],
        "list_plans": [("http", None, (), None, None), ("httpTrigger", "plans", ("GET",), None, None)],
        "get_plan": [("http", None, (), None, None), ("httpTrigger", "plans/{plan_id}", ("GET",), None, None)],
        "list_runs": [("http", None, (), None, None), ("httpTrigger", "runs", ("GET",), None, None)],
        "list_jobs": [("http", None, (), None, None), ("httpTrigger", "jobs", ("GET",), None, None)],
        "cancel_job": [("durableClient", None, (), None, None), ("http", None, (), None, None),
                       ("httpTrigger", "jobs/{instance_id}", ("DELETE",), None, None)],
        "health": [("http", None, (), None, None), ("httpTrigger", "health", ("GET",), None, None)],
        "audit_verify": [("http", None, (), None, None), ("httpTrigger", "audit/verify", ("GET",), None, None)],
        "decide_plan": [("durableClient", None, (), None, None), ("http", None, (), None, None),
                        ("httpTrigger", "plans/{plan_id}/decision", ("POST",), None, None)],
        "put_credential": [("http", None, (), None, None),
                           ("httpTrigger", "credentials/{name}", ("PUT",), None, None)],
        "put_settings": [("http", None, (), None, None), ("httpTrigger", "settings", ("PUT",), None, None)],
        "onboard_tenant": [("http", None, (), None, None), ("httpTrigger", "admin/tenants", ("POST",), None, None)],
        "put_repository": [("http", None, (), None, None),
                           ("httpTrigger", "repositories/{owner}/{name}", ("PUT",), None, None)],
        "list_identities": [("http", None, (), None, None), ("httpTrigger", "identities", ("GET",), None, None)],
        "put_identity": [("http", None, (), None, None), ("httpTrigger", "identities", ("PUT",), None, None)],
        "delete_identity": [("http", None, (), None, None),
                            ("httpTrigger", "identities", ("DELETE",), None, None)],
        "record_telemetry_activity": [("activityTrigger", None, (), None, None)],
        "telemetry_summary": [("http", None, (), None, None), ("httpTrigger", "telemetry", ("GET",), None, None)],
        "stripe_webhook": [("http", None, (), None, None), ("httpTrigger", "stripe/webhook", ("POST",), None, None)],
        "send_usage_timer": [("timerTrigger", None, (), "0 */5 * * * *", False)],
        "check_quota_activity": [("activityTrigger", None, (), None, None)],
        "usage": [("http", None, (), None, None), ("httpTrigger", "usage", ("GET",), None, None)],
        "quota": [("http", None, (), None, None), ("httpTrigger", "quota", ("GET",), None, None)],
    }


def deliver(client: Mock, body: bytes, *, event: str = "push", delivery: str = "d-1",
            signature: str | None = None, headers: dict[str, str] | None = None) -> Any:
    all_headers = {"X-GitHub-Event": event, "X-GitHub-Delivery": delivery,
                   "X-Hub-Signature-256": signature if signature is not None else sign(body), **(headers or {})}
    req = request("POST", "/api/github/webhook", body=body, headers=all_headers)
    return asyncio.run(handler("github_webhook")(req, client=client))


def test_push_starts_one_orchestration_with_a_deterministic_id(app_env: dict[str, Any], client: Mock) -> None:
    body = fixture_bytes("push.branch-modified.json")
    response = deliver(client, body)
    assert response.status_code == 202
    instance = json_body(response)["instance_id"]
    assert instance.startswith("push-") and len(instance) == 37
    client.start_new.assert_awaited_once()
    name, started_id, started_input = client.start_new.await_args.args
    payload = json.loads(body)
    assert (name, started_id) == ("plan_orchestrator", instance)
    assert started_input == {
        "kind": "push", "tenant_id": app_env["tenant"], "repository": "binkkatal/sample_app",
        "base": payload["before"], "target": payload["after"], "branch": "master", "author": payload["sender"]["login"],
        "auto_approve": False, "approval_ttl_hours": 24, "step_retries": 3, "sequence": 1,
    }
    assert "system" not in response.get_body().decode() and "code=" not in response.get_body().decode()

    again = deliver(client, body)  # GitHub redelivers the same delivery
    assert again.status_code == 202 and json_body(again)["status"] == "duplicate"
    other = deliver(client, body, delivery="d-2")  # a new delivery of the same commits
    assert other.status_code == 202 and json_body(other)["instance_id"] == instance
    assert json_body(other)["status"] == "duplicate"
    assert client.start_new.await_count == 1


@pytest.mark.parametrize(
    ("sender", "pusher", "author"),
    [({"login": "OctoCat"}, {"name": "The Octocat"}, "OctoCat"), (None, {"name": "binkkatal"}, "binkkatal"),
     (None, None, "")],
    ids=["the sender's login", "no sender: the pusher's name (a push's is the login)", "neither"],
)
def test_the_job_records_the_pushers_github_login(app_env: dict[str, Any], client: Mock, sender: Any, pusher: Any,
                                                  author: str) -> None:
    payload = json.loads(fixture_bytes("push.branch-modified.json"))
    for key, value in (("sender", sender), ("pusher", pusher)):
        payload.pop(key)
        if value is not None:
            payload[key] = value
    assert deliver(client, json.dumps(payload).encode()).status_code == 202
    assert client.start_new.await_args.args[2]["author"] == author  # what separation of duties compares


@pytest.mark.parametrize(
    ("name", "event", "status", "expected"),
    [
        ("ping.json", "ping", 200, "ping"),
        ("ping.with-organization.json", "ping", 200, "ping"),
        ("push.tag-deleted.json", "push", 202, "tag push refs/tags/simple-tag is not planned"),
        ("push.tag-deleted.with-organization.json", "push", 202, "tag push"),
        ("push.branch-modified.json", "issues", 202, "event 'issues' is not handled"),
    ],
)
def test_deliveries_that_start_nothing(app_env: dict[str, Any], client: Mock, name: str, event: str, status: int,
                                       expected: str) -> None:
    response = deliver(client, fixture_bytes(name), event=event)
    assert response.status_code == status
    body = json_body(response)
    assert expected in body["reason"] or body["status"] == expected
    client.start_new.assert_not_awaited()


def test_unconfigured_branch_and_deleted_branch(app_env: dict[str, Any], client: Mock,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from functions import resources

    monkeypatch.setenv("IRONLAYER_BRANCHES", "main")
    resources.reset()
    response = deliver(client, fixture_bytes("push.branch-modified.json"))
    assert response.status_code == 202
    assert json_body(response)["reason"] == "branch master is not configured (IRONLAYER_BRANCHES)"
    deleted = json.loads(fixture_bytes("push.branch-modified.json"))
    deleted.update(ref="refs/heads/main", deleted=True, after="0" * 40)
    body = json.dumps(deleted).encode()
    response = deliver(client, body, delivery="d-del")
    assert json_body(response)["reason"] == "branch main was deleted"
    client.start_new.assert_not_awaited()


def test_new_branch_plans_from_nothing(app_env: dict[str, Any], client: Mock, monkeypatch: pytest.MonkeyPatch) -> None:
    from functions import resources

    monkeypatch.setenv("IRONLAYER_REPOSITORY", "Codertocat/Hello-World")
    resources.reset()
    response = deliver(client, fixture_bytes("push.new-branch.json"), delivery="d-new")
    assert response.status_code == 202
    assert client.start_new.await_args.args[2]["base"] == "0" * 40


@pytest.mark.parametrize(
    ("signature", "body", "status", "message"),
    [
        ("", None, 401, "missing X-Hub-Signature-256"),
        ("sha256=" + "0" * 64, None, 401, "invalid X-Hub-Signature-256"),
        (sign(b"{}", "another-secret"), None, 401, "invalid X-Hub-Signature-256"),
        ("sha1=abc", None, 401, "invalid X-Hub-Signature-256"),
        (None, b"{not json", 400, "body is not valid JSON"),
        (None, b"[1, 2]", 400, "body must be a JSON object"),
        (None, b'{"ref": "refs/heads/main"}', 400, "invalid push payload: before: Field required"),
        (None, b"x" * 1048577, 413, "exceeds the limit of 1048576 bytes"),
    ],
)
def test_bad_deliveries_get_4xx_json(app_env: dict[str, Any], client: Mock, signature: str | None,
                                     body: bytes | None, status: int, message: str) -> None:
    payload = body if body is not None else fixture_bytes("push.branch-modified.json")
    response = deliver(client, payload, signature=signature)
    assert response.status_code == status
    error = json_body(response)["error"]
    assert error["status"] == status and message in error["message"]
    client.start_new.assert_not_awaited()


def test_a_failed_start_lets_github_redeliver(app_env: dict[str, Any], client: Mock) -> None:
    client.start_new.side_effect = RuntimeError("durable extension unavailable")
    body = fixture_bytes("push.branch-modified.json")
    failed = deliver(client, body, delivery="d-retry")
    assert failed.status_code == 503  # a JSON error GitHub shows; its redelivery retries
    assert "could not be started (RuntimeError); safe to retry" in json_body(failed)["error"]["message"]
    assert "durable extension unavailable" not in failed.get_body().decode()
    client.start_new.side_effect = None
    client.start_new.return_value = "ok"
    again = deliver(client, body, delivery="d-retry")
    assert again.status_code == 202 and json_body(again)["status"] == "accepted"  # not treated as a duplicate
    assert client.start_new.await_count == 2
    assert client.start_new.await_args_list[0].args[1] == json_body(again)["instance_id"]  # the same push


def test_loading_the_app_and_serving_the_webhook_imports_no_engine(tmp_path: Path) -> None:
    """Cold start: loading the app and answering a ping import no engine, no SQL parser, no pydantic, no Stripe SDK and
    no OpenTelemetry exporter."""
    script = """
import asyncio, json, sys, hmac, hashlib, os
os.environ.update(IRONLAYER_ENVIRONMENT="test", IRONLAYER_GITHUB_WEBHOOK_SECRET="s", IRONLAYER_BRANCHES="main")
import function_app
import azure.functions as func
fn = {f.get_function_name(): f for f in function_app.app.get_functions()}["github_webhook"].get_user_function()
body = b'{"zen": "hi", "hook_id": 1}'
req = func.HttpRequest("POST", "/api/github/webhook", body=body, headers={
    "X-GitHub-Event": "ping", "X-GitHub-Delivery": "1",
    "X-Hub-Signature-256": "sha256=" + hmac.new(b"s", body, hashlib.sha256).hexdigest()})
response = asyncio.run(fn.__wrapped__(req, client=None))
print(json.dumps([response.status_code, sorted(sys.modules)]))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parents[2]).stdout
    status, loaded = json.loads(out.strip().splitlines()[-1])
    modules = {m.split(".")[0] for m in loaded}
    assert status == 200
    assert not {"duckdb", "databricks", "stripe", "networkx", "sqlglot", "pydantic"} & set(modules)
    # the Durable SDK brings the OpenTelemetry API; the SDK and the Azure Monitor exporter stay in the telemetry function
    assert [m for m in loaded if m.startswith(("azure.monitor", "opentelemetry.sdk", "opentelemetry.instrumentation"))] == []


@pytest.mark.parametrize(
    ("environ", "loads", "message"),
    [
        ({"IRONLAYER_AUTH_MODE": "dev"}, False, "IRONLAYER_ENVIRONMENT unset (production): IRONLAYER_AUTH_MODE=dev"),
        ({}, False, "IRONLAYER_DATABASE_URL is empty"),
        ({"IRONLAYER_ENVIRONMENT": "production", "IRONLAYER_AUTH_MODE": "jwt"}, False,
         "IRONLAYER_ENVIRONMENT=production: IRONLAYER_DATABASE_URL is empty"),
        ({"IRONLAYER_ENVIRONMENT": "development", "IRONLAYER_AUTH_MODE": "dev"}, True, ""),
        ({"IRONLAYER_ENVIRONMENT": "test"}, True, ""),
    ],
)
def test_the_app_fails_closed_when_it_is_loaded(environ: dict[str, str], loads: bool, message: str) -> None:
    """The host imports function_app to index it: outside an explicit local environment, unsafe settings stop it."""
    import os

    env = {key: value for key, value in os.environ.items() if not key.startswith("IRONLAYER_")}
    result = subprocess.run([sys.executable, "-c", "import function_app; print(len(function_app.app.get_functions()))"],
                            capture_output=True, text=True, cwd=Path(__file__).parents[2], env={**env, **environ})
    assert (result.returncode == 0) is loads
    if loads:
        assert int(result.stdout.strip()) == len(functions_by_name())
    else:
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith("shared_core.core.errors.SettingsError: the app refuses to start with") and message in last
