"""Every failure path ends cleanly, for real: a terminal job, a final commit status and a reason.

`plan_orchestrator` runs through the Durable SDK's executor with every activity executed for real against
PostgreSQL, the blob folder, DuckDB and a local git repository; GitHub is a stand-in HTTP server (the one
part that cannot run here) whose answers each test sets: it serves the commit statuses, and refuses or fails
the repository reads of a tenant whose source is GitHub. PostgreSQL goes down by pointing one activity's
settings at a closed port. Each test starts from the job row the webhook claims (`queued`) and checks where
it ends, what the commit status says, and that no status was left `pending`.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from functions import resources
from shared_core.adapters.git_writer import commit_files
from shared_core.cli.demo import build_demo_repo, default_examples_dir
from shared_core.cli.main import main
from shared_core.core.state import JobRow
from tests.functions.conftest import orchestrate, run_activity
from tests.functions.durable_replay import Run

pytestmark = pytest.mark.integration
ZERO = "0" * 40
TOKEN = "ghp_" + "c3" * 18


@dataclass
class GitHub:
    """What the stand-in answers: `statuses` to commit-status posts, `reads` to every GET."""

    url: str
    statuses: int = 201
    reads: int = 503
    posted: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (commit SHA, body)

    def states(self, sha: str) -> list[str]:
        return [body["state"] for posted_sha, body in self.posted if posted_sha == sha]


class _Handler(BaseHTTPRequestHandler):
    def _answer(self, status: int) -> None:
        body = json.dumps({"message": "stand-in"}).encode() if status >= 400 else b"{}"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        github: GitHub = self.server.github  # type: ignore[attr-defined]
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if github.statuses < 300:
            github.posted.append((self.path.rsplit("/", 1)[1], body))
        self._answer(github.statuses)

    def do_GET(self) -> None:
        self._answer(self.server.github.reads)  # type: ignore[attr-defined]

    def log_message(self, *args: Any) -> None:
        return


@dataclass
class World:
    tenant: str
    local: str  # a repository read from a local path (its statuses go to GitHub)
    remote: str  # a repository read from GitHub
    github: GitHub
    v1: str
    v2: str
    bad: str  # a commit after v2 with an invalid model
    calls: list[str] = field(default_factory=list)


@pytest.fixture()
def world(app_env: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
          capsys: pytest.CaptureFixture[str]) -> Iterator[World]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    github = GitHub(f"http://127.0.0.1:{server.server_address[1]}")
    server.github = github  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    tmp: Path = app_env["tmp"]
    monkeypatch.setenv("IRONLAYER_CREDENTIAL_KEYS", Fernet.generate_key().decode())
    monkeypatch.setenv("IRONLAYER_GITHUB_API_URL", github.url)
    monkeypatch.setenv("IRONLAYER_WAREHOUSE_DIR", str(tmp / "warehouses"))
    resources.reset()
    tenant = f"f{uuid.uuid4().hex[:10]}"
    local, remote = f"acme-{tenant}/local", f"acme-{tenant}/remote"  # repositories route to one tenant each
    path = tmp / "repo"
    v1, v2 = build_demo_repo(default_examples_dir(), path)
    bad = commit_files(path, {"models/gold/broken.sql": "-- name: gold.broken\n-- kind: FULL_REFRESH\n"
                                                        "SELECT * FROM {{ ref('gold.nowhere') }}\n"},
                       "a model with an unknown ref", "2024-03-20T00:00:00+00:00")
    assert main(["tenants", "add", tenant, "--repository", local, "--local-path", str(path), "--warehouse",
                 "w.duckdb", "--github-token-credential", "github", "--status-repository", local]) == 0
    assert main(["repositories", "map", remote, "--tenant", tenant, "--warehouse", "r.duckdb",
                 "--github-token-credential", "github", "--status-repository", remote]) == 0
    monkeypatch.setenv("IRONLAYER_TENANT", tenant)  # `credentials set` stores for the tenant it runs as
    monkeypatch.setattr("sys.stdin", io.StringIO(TOKEN + "\n"))
    assert main(["credentials", "set", "github"]) == 0
    monkeypatch.setenv("IRONLAYER_TENANT", app_env["tenant"])
    resources.reset()
    capsys.readouterr()
    try:
        yield World(tenant, local, remote, github, v1, v2, bad)
    finally:
        server.shutdown()
        server.server_close()


def push(world: World, repository: str, base: str, target: str, **changes: Any) -> tuple[dict[str, Any], str]:
    """The job the webhook starts for a push: its input, and its instance claimed as a queued job row."""
    instance = f"push-{uuid.uuid4().hex}"
    job = {"kind": "push", "tenant_id": world.tenant, "repository": repository, "base": base, "target": target,
           "branch": "main", "author": "pat", "auto_approve": False, "approval_ttl_hours": 24, "step_retries": 3,
           **changes}

    async def claim() -> bool:
        store = await resources.get_store()
        return await store.claim_job(world.tenant, instance, kind="push", repository=repository, target=target,
                                     author="pat")

    assert asyncio.run(claim())
    return job, instance


def job_row(world: World, instance: str) -> JobRow:
    async def read() -> JobRow | None:
        return await (await resources.get_store()).get_job(world.tenant, instance)

    row = asyncio.run(read())
    assert row is not None
    return row


def recording(world: World, around: Callable[[str, Any], Any] | None = None) -> Callable[[str, Any], Any]:
    """Run each activity for real (through `around` when given), recording its name."""

    def respond(name: str, payload: Any) -> Any:
        world.calls.append(name)
        return around(name, payload) if around is not None else run_activity(name, payload)

    return respond


def with_postgres_down(name: str, payload: Any) -> Any:
    """Run one activity while its settings point at a PostgreSQL that does not answer."""
    saved = {key: os.environ.get(key) for key in ("IRONLAYER_DATABASE_URL", "IRONLAYER_MIGRATION_DATABASE_URL")}
    os.environ["IRONLAYER_DATABASE_URL"] = "postgresql://ironlayer_app@127.0.0.1:1/ironlayer"
    os.environ["IRONLAYER_MIGRATION_DATABASE_URL"] = ""
    resources.reset()
    try:
        return run_activity(name, payload)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        resources.reset()


def ended(run: Run, world: World, instance: str, target: str, outcome: str) -> JobRow:
    """The run and its job ended with `outcome`; the commit's last status is final, never left pending."""
    assert run.status == "Completed", run.error
    assert run.output["status"] == outcome
    row = job_row(world, instance)
    assert row["status"] == ("succeeded" if outcome == "succeeded" else "failed")
    states = world.github.states(target)
    assert states and states[-1] == ("success" if outcome == "succeeded" else "failure")
    return row


def test_bad_sql_pushed_fails_the_job_at_once_naming_the_model(world: World) -> None:
    job, instance = push(world, world.local, world.v2, world.bad)
    run = orchestrate(job, instance, respond=recording(world))
    row = ended(run, world, instance, world.bad, "failed")
    assert world.calls == ["build_plan_activity", "finalize_activity"]  # bad input: no retry, no approval asked
    assert row["plan_id"] is None and run.output == {"plan_id": None, "status": "failed"}
    assert row["detail"] is not None and f"cannot plan {world.bad[:12]} of {world.local}" in row["detail"]
    assert "gold.nowhere" in row["detail"]
    assert world.github.states(world.bad) == ["failure"]


def test_postgres_down_while_planning_is_retried_then_fails_the_job(world: World) -> None:
    def around(name: str, payload: Any) -> Any:
        return with_postgres_down(name, payload) if name == "build_plan_activity" else run_activity(name, payload)

    job, instance = push(world, world.local, ZERO, world.v1)
    run = orchestrate(job, instance, respond=recording(world, around))
    row = ended(run, world, instance, world.v1, "failed")
    assert world.calls == ["build_plan_activity"] * 6 + ["finalize_activity"]
    assert row["detail"] is not None and "build_plan_activity kept failing after 6 attempts" in row["detail"]
    assert "StateUnavailableError: state store unreachable" in row["detail"]


def test_github_down_while_planning_is_retried_then_fails_the_job(world: World) -> None:
    world.github.reads = 503
    job, instance = push(world, world.remote, ZERO, world.v1)
    run = orchestrate(job, instance, respond=recording(world))
    row = ended(run, world, instance, world.v1, "failed")
    assert world.calls == ["build_plan_activity"] * 6 + ["finalize_activity"]
    assert row["detail"] is not None and "SourceUnavailableError: GitHub is unavailable (HTTP 503)" in row["detail"]


def test_github_refusing_the_repository_fails_the_job_without_retrying(world: World) -> None:
    world.github.reads = 404
    job, instance = push(world, world.remote, ZERO, world.v1)
    run = orchestrate(job, instance, respond=recording(world))
    row = ended(run, world, instance, world.v1, "failed")
    assert world.calls == ["build_plan_activity", "finalize_activity"]
    assert row["detail"] is not None and f"GitHub repository {world.remote} not found" in row["detail"]


def test_an_approval_request_github_refuses_ends_the_job(world: World) -> None:
    world.github.statuses = 403
    job, instance = push(world, world.local, ZERO, world.v1)
    run = orchestrate(job, instance, respond=recording(world))
    assert run.status == "Completed" and run.output["status"] == "failed"
    assert world.calls == ["build_plan_activity", "request_approval_activity", "finalize_activity"]
    row = job_row(world, instance)
    assert row["status"] == "failed" and row["detail"] is not None
    assert row["detail"].startswith("approval could not be requested: GitHub refused the commit status")
    assert world.github.posted == []  # GitHub took no status at all: nothing was left pending either


def test_github_down_when_finalizing_is_retried_until_the_final_status_is_set(world: World) -> None:
    def around(name: str, payload: Any) -> Any:
        if name == "finalize_activity":
            world.github.statuses = 503 if world.calls.count("finalize_activity") <= 2 else 201
        return run_activity(name, payload)

    job, instance = push(world, world.local, ZERO, world.v1)
    run = orchestrate(job, instance, approve=True, respond=recording(world, around))
    ended(run, world, instance, world.v1, "succeeded")
    assert world.calls.count("finalize_activity") == 3
    assert world.github.states(world.v1) == ["pending", "success"]


def test_a_step_whose_state_store_stays_down_lets_its_wave_finish_then_fails_the_job(world: World) -> None:
    job, instance = push(world, world.local, ZERO, world.v1)
    broken: list[int] = []

    def around(name: str, payload: Any) -> Any:
        if name == "run_step_activity" and (not broken or payload["step"] == broken[0]):
            broken[:] = [payload["step"]]  # the first step of the first wave: its store is down for good
            return with_postgres_down(name, payload)
        return run_activity(name, payload)

    run = orchestrate(job, instance, approve=True, respond=recording(world, around))
    row = ended(run, world, instance, world.v1, "failed")
    assert row["detail"] is not None and f"step #{broken[0]} kept failing after 3 attempts: ActivityError: " \
        "StateUnavailableError: state store unreachable" in row["detail"]
    assert row["detail"].endswith("; wave 1 of 4 finished, later waves did not run")
    first_wave = run.children[0]
    assert first_wave.output["statuses"].count("success") == len(first_wave.output["statuses"]) - 1
    assert [c.instance_id for c in run.children] == [f"{instance}-w0-c0"]  # later waves never started

    async def runs() -> list[str]:
        return [r["status"] for r in await (await resources.get_store()).list_runs(world.tenant, run.output["plan_id"])]

    assert sorted(asyncio.run(runs())) == ["success"] * (len(first_wave.output["statuses"]) - 1)
