"""Everything that runs is approved: a tests-only push waits for approval and is shown for review; a schedule
runs only what is deployed, and never a model whose previous run is still planned, awaiting approval or running.

The activities run for real, in the orchestrator's order, on PostgreSQL, local blobs and DuckDB, against a
small repository: `raw.events` and the incremental `mart.daily` (daily cron); the second commit changes
only `mart.daily`'s quality tests.
"""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest.mock import Mock
from urllib.parse import parse_qs, urlencode, urlparse

import pytest

from functions import resources
from shared_core.adapters.github.status import LoggedStatusPublisher
from shared_core.cli.main import main
from shared_core.services.identities import set_identity
from shared_core.services.jobs import JobPolicy, due_schedule_jobs
from tests.conftest import write_commits
from tests.functions.conftest import handler, request

pytestmark = pytest.mark.integration
ZERO = "0" * 40
RAW = ("-- name: raw.events\n-- kind: FULL_REFRESH\n"
       "SELECT * FROM VALUES (1, TIMESTAMP '2024-01-01 10:00:00'), (2, TIMESTAMP '2024-01-02 11:00:00') AS v(id, ts)\n")
DAILY = """-- name: mart.daily
-- kind: INCREMENTAL_BY_TIME_RANGE
-- time_column: day
-- start: 2024-01-01
-- cron: 0 2 * * *
-- tests: {tests}
SELECT CAST(ts AS DATE) AS day, count(*) AS events FROM {{{{ ref('raw.events') }}}}
WHERE ts >= '{{{{ start_date }}}}' AND ts < '{{{{ end_date }}}}' GROUP BY CAST(ts AS DATE)
"""
BOB = "0b4f0000-0000-4000-8000-00000000b0b0"


@pytest.fixture()
def repo(app_env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    path = app_env["tmp"] / "repo"
    first, second = write_commits(path, [
        {"models/raw.sql": RAW, "models/daily.sql": DAILY.format(tests="not_null(day)")},
        {"models/raw.sql": RAW, "models/daily.sql": DAILY.format(tests="not_null(day), unique(day)")},
    ], ["2024-01-05T06:00:00+00:00", "2024-01-06T06:00:00+00:00"])
    monkeypatch.setenv("IRONLAYER_LOCAL_REPO", str(path))
    monkeypatch.setenv("IRONLAYER_APP_SERVICE_AUTH", "true")
    resources.reset()

    async def register() -> None:
        await set_identity(await resources.get_store(), app_env["tenant"], provider="appservice:aad", subject=BOB,
                           role="operator", github_login="bob", actor="root", actor_role="admin")

    asyncio.run(register())
    resources.reset()
    return {**app_env, "repo": path, "c1": first, "c2": second}


def run(name: str, *args: Any, **kwargs: Any) -> Any:
    return asyncio.run(handler(name)(*args, **kwargs))


def push(repo: dict[str, Any], base: str, target: str, instance: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """build_plan_activity for a push; returns its answer and the orchestrator's IDs."""
    job = {"kind": "push", "tenant_id": repo["tenant"], "repository": "binkkatal/sample_app", "base": base,
           "target": target, "branch": "main", "author": "octocat", "auto_approve": False, "approval_ttl_hours": 24,
           "step_retries": 3}
    ref = run("build_plan_activity", {**job, "instance_id": instance})
    ids = {"tenant_id": repo["tenant"], "instance_id": instance, "repository": "binkkatal/sample_app",
           "target": target, "plan_id": ref["plan_id"]}
    return ref, ids


def execute(ref: dict[str, Any], ids: dict[str, Any]) -> None:
    """start_execution_activity, every step, finalize_activity: as the orchestrator runs an approved plan."""
    assert run("start_execution_activity", ids) == {"status": "ok", "detail": ""}
    for wave in ref["waves"]:
        for step in wave:
            assert run("run_step_activity", {**ids, "step": step, "skip_reason": None})["status"] == "success"
    run("finalize_activity", {**ids, "outcome": "succeeded", "detail": "done"})


def started_schedules(client: Mock) -> list[tuple[str, Any]]:
    return [(instance, payload) for instance, payload in client.started.items() if instance.startswith("schedule-")]


def principal() -> dict[str, str]:
    document = {"auth_typ": "aad", "claims": [{"typ": "oid", "val": BOB}]}
    return {"X-MS-CLIENT-PRINCIPAL": base64.b64encode(json.dumps(document).encode()).decode(),
            "X-MS-CLIENT-PRINCIPAL-ID": BOB}


def test_a_tests_only_push_needs_approval_and_schedules_wait_for_it(repo: dict[str, Any], client: Mock) -> None:
    ref, ids = push(repo, ZERO, repo["c1"], "push-" + "1" * 32)
    execute(ref, ids)  # the first push, approved and run: mart.daily deployed with not_null(day)

    tests_only, ids2 = push(repo, repo["c1"], repo["c2"], "push-" + "2" * 32)
    assert tests_only["waves"] == [] and tests_only["checks_changed"] is True  # no step, yet it needs approval
    blobs = Path(repo["tmp"]) / "blobs" / "tenants" / repo["tenant"] / "plans"  # the tenant's prefix
    cli_plan = Path(repo["tmp"]) / "cli-plan.json"
    assert main(["plan", str(repo["repo"]), repo["c1"], repo["c2"], "--out", str(cli_plan), "--no-cache"]) == 0
    assert (blobs / f"{ids2['plan_id']}.json").read_bytes() == cli_plan.read_bytes()  # the plan's bytes as ever
    review = json.loads((blobs / f"{ids2['plan_id']}.review.json").read_bytes())
    assert review["checks"] == {"mart.daily": {"tests": ["not_null(day)@BLOCK",
                                                         "not_null(day)@BLOCK,unique(day)@BLOCK"]}}

    run("request_approval_activity", {**ids2, "author": "octocat", "ttl_hours": 24})
    publisher = asyncio.run(resources.clients_for(repo["tenant"], "binkkatal/sample_app")).publisher
    assert isinstance(publisher, LoggedStatusPublisher)
    link = publisher.published[-1][3]
    assert link is not None
    token = parse_qs(urlparse(link).query)["token"][0]
    page = run("plan_approval", request("GET", link, params={"token": token}, route_params={"plan_id": ids2["plan_id"]}),
               client=client)
    html = page.get_body().decode()
    assert page.status_code == 200 and "Tests and contracts (1)" in html and "unique(day)@BLOCK" in html
    assert "approving deploys them for the runs to come" in html

    tick = handler("schedule_tick")
    asyncio.run(tick(Mock(past_due=False), client=client))
    assert started_schedules(client) == []  # the head's tests are not the deployed ones: not approved yet

    body = urlencode({"token": token, "decision": "approve"}).encode()
    approved = run("plan_approval", request("POST", link, body=body, route_params={"plan_id": ids2["plan_id"]},
                                            headers={"Content-Type": "application/x-www-form-urlencoded",
                                                     **principal()}), client=client)
    assert approved.status_code == 200
    execute(tests_only, ids2)  # no step: the orchestrator starts (stale check) and finalizes
    asyncio.run(tick(Mock(past_due=False), client=client))
    ((instance, payload),) = started_schedules(client)
    assert payload["models"] == ["mart.daily"] and payload["target"] == repo["c2"]

    catchup = run("build_plan_activity", {**payload, "instance_id": instance})  # planned: its job is busy now

    async def due(now: datetime) -> list[Any]:
        analyzer = resources.get_analyzer(repo["tenant"])
        clients = await resources.clients_for(repo["tenant"], "binkkatal/sample_app")
        try:
            return await due_schedule_jobs(clients.source, await resources.get_store(), analyzer,
                                           tenant_id=repo["tenant"], repository="binkkatal/sample_app",
                                           branch="main", now=now, policy=JobPolicy(False, 24, 3))
        finally:
            analyzer.close()

    tomorrow = datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(days=1)
    assert asyncio.run(due(tomorrow)) == []  # its previous run is still planned: no second run of it
    run("finalize_activity", {**ids2, "instance_id": instance, "plan_id": catchup["plan_id"], "outcome": "cancelled",
                              "detail": "cancelled"})
    (again,) = asyncio.run(due(tomorrow))  # that run ended: the next fire may catch up
    assert again.models == ("mart.daily",)
