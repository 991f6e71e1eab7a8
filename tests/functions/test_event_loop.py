"""No activity or handler does blocking I/O on the worker's event loop: git, blobs, DuckDB and the SQL analyzer
are only ever called from worker threads (`asyncio.to_thread`).

The Functions worker runs every async function on one event loop; a blocking call there stalls every other
invocation of the worker. Every blocking method of the local adapters (the git source, the blob folder, the
DuckDB executor, the analysis cache, the logged commit statuses) is wrapped here to fail when it is called
from a thread whose event loop is running; then a push is planned, approved, executed and finalized, and
its approval page shown, for real.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any
from unittest.mock import Mock

import pytest

from functions import resources
from shared_core.adapters.blobs import LocalBlobStore
from shared_core.adapters.caches.analysis import CachedAnalyzer
from shared_core.adapters.engines.duckdb import DuckDBExecutor
from shared_core.adapters.github.status import LoggedStatusPublisher
from shared_core.adapters.local_git import LocalGitSource
from shared_core.cli.demo import build_demo_repo, default_examples_dir
from shared_core.ports import InlineAnalyzer
from shared_core.security.approval_tokens import issue_approval_token
from tests.functions.conftest import APPROVAL_SECRET, APPROVED, approve_plan, request, run_activity
from tests.functions.conftest import handler as function

pytestmark = pytest.mark.integration
ZERO = "0" * 40
BLOCKING: dict[type, tuple[str, ...]] = {
    LocalGitSource: ("resolve", "commit_time", "read_file", "list_files", "read_blobs"),
    LocalBlobStore: ("get", "put", "exists", "health"),
    DuckDBExecutor: ("__init__", "close", "committed_batches", "run_batch"),
    CachedAnalyzer: ("analyze_many", "prefetch", "start_workers", "close"),
    InlineAnalyzer: ("analyze_many",),
    LoggedStatusPublisher: ("publish",),
}


def off_the_loop(method: Callable[..., Any], calls: list[str]) -> Callable[..., Any]:
    """`method`, failing when called from a thread that runs an event loop."""

    @functools.wraps(method)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # a worker thread: fine
            calls.append(method.__qualname__)
            return method(*args, **kwargs)
        raise AssertionError(f"{method.__qualname__} blocks the event loop; call it through asyncio.to_thread")

    return guarded


@pytest.fixture()
def guarded_adapters(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    calls: list[str] = []
    for kind, names in BLOCKING.items():
        for name in names:
            monkeypatch.setattr(kind, name, off_the_loop(getattr(kind, name), calls))
    yield calls


def test_a_push_from_plan_to_finalize_never_blocks_the_event_loop(app_env: dict[str, Any],
                                                                   guarded_adapters: list[str],
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    path = app_env["tmp"] / "repo"
    v1, v2 = build_demo_repo(default_examples_dir(), path)
    monkeypatch.setenv("IRONLAYER_LOCAL_REPO", str(path))
    resources.reset()
    for base, target, instance in ((ZERO, v1, "push-" + "1" * 32), (v1, v2, "push-" + "2" * 32)):
        job = {"kind": "push", "tenant_id": app_env["tenant"], "repository": "binkkatal/sample_app", "base": base,
               "target": target, "branch": "main", "author": "octocat", "auto_approve": False,
               "approval_ttl_hours": 24, "step_retries": 3, "instance_id": instance}
        ref = run_activity("build_plan_activity", job)
        assert ref["status"] == "planned"
        ids = {"tenant_id": app_env["tenant"], "instance_id": instance, "repository": "binkkatal/sample_app",
               "target": target, "plan_id": ref["plan_id"]}
        assert run_activity("request_approval_activity", {**ids, "author": "octocat", "ttl_hours": 24})["status"] == (
            "requested")
        link = issue_approval_token(APPROVAL_SECRET, tenant_id=app_env["tenant"], plan_id=ref["plan_id"],
                                    action="decide", subject="reviewers", now=datetime.now(UTC))
        page = asyncio.run(function("plan_approval")(
            request("GET", f"/api/plans/{ref['plan_id']}/approval", params={"token": link},
                    route_params={"plan_id": ref["plan_id"]}), client=Mock()))
        assert page.status_code == 200
        assert asyncio.run(approve_plan(app_env["tenant"], ref["plan_id"])) == APPROVED
        assert run_activity("start_execution_activity", ids)["status"] == "ok"
        statuses = [run_activity("run_step_activity", {**ids, "step": step, "skip_reason": None})["status"]
                    for wave in ref["waves"] for step in wave]
        assert set(statuses) <= {"success", "done"}
        assert run_activity("finalize_activity", {**ids, "outcome": "succeeded", "detail": "ok"}) == {
            "status": "succeeded"}
    touched = {call.split(".")[0] for call in guarded_adapters}
    assert touched == {"LocalGitSource", "LocalBlobStore", "DuckDBExecutor", "CachedAnalyzer", "InlineAnalyzer",
                       "LoggedStatusPublisher"}  # every kind of adapter was used, each from a worker thread
