"""A push whose models `check` refuses is never planned: the job fails at once, with check's own message.

`ironlayer plan` still plans such a commit (plans of repositories written before `sources:` existed keep their
bytes), but nothing planned from a push may be refused later by `apply` for a reason visible in the files.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from functions import resources
from shared_core.adapters.git_writer import commit_files
from shared_core.cli.demo import build_demo_repo, default_examples_dir
from shared_core.cli.main import EXIT_CHECK_FAILED, EXIT_OK, main
from tests.functions.conftest import handler

pytestmark = pytest.mark.integration
ZERO = "0" * 40
UNDECLARED = "-- name: silver.extra\n-- kind: FULL_REFRESH\nSELECT * FROM landing.extra\n"
WINDOWED = ("-- name: silver.windowed\n-- kind: FULL_REFRESH\n-- sources: landing.extra\n"
            "SELECT * FROM landing.extra WHERE d >= '{{ start_date }}'\n")


@pytest.fixture()
def repo(app_env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    path = app_env["tmp"] / "repo"
    v1, _ = build_demo_repo(default_examples_dir(), path)
    bad = commit_files(path, {"models/silver/extra.sql": UNDECLARED, "models/silver/windowed.sql": WINDOWED},
                       "reads a table it does not declare", "2024-03-20T00:00:00+00:00")
    monkeypatch.setenv("IRONLAYER_LOCAL_REPO", str(path))
    resources.reset()
    return {**app_env, "repo": path, "v1": v1, "bad": bad}


def test_a_push_that_check_refuses_fails_with_every_problem_and_stores_no_plan(
    repo: dict[str, Any], capsys: pytest.CaptureFixture[str],
) -> None:
    job = {"kind": "push", "tenant_id": repo["tenant"], "repository": "binkkatal/sample_app", "base": repo["v1"],
           "target": repo["bad"], "branch": "main", "author": "octocat", "auto_approve": True,
           "approval_ttl_hours": 24, "step_retries": 1, "instance_id": "push-" + "5" * 32}
    ref = asyncio.run(handler("build_plan_activity")(job))
    sha = repo["bad"][:12]
    assert ref == {"status": "failed", "detail": (
        f"cannot plan {sha} of binkkatal/sample_app: 2 problems in the models at commit {sha} (`ironlayer check` "
        "lists them all): models/silver/extra.sql:3: undeclared relation landing.extra in silver.extra; declare it "
        "with `-- sources: landing.extra`; models/silver/windowed.sql:4: {{ start_date }} in silver.windowed, a "
        "FULL_REFRESH model, which runs without a batch window; only INCREMENTAL_BY_TIME_RANGE and APPEND_ONLY "
        "models read start_date/end_date: make the model incremental (with a time_column) or remove the window")}
    assert not list(Path(repo["tmp"] / "blobs").rglob("*.json")), "no plan is stored"

    # the same problems from the command line; `plan` alone still plans the commit
    assert main(["check", str(repo["repo"]), "--ref", repo["bad"], "--no-cache"]) == EXIT_CHECK_FAILED
    printed = capsys.readouterr().err
    assert printed.count("error: ") == 2 and "undeclared relation landing.extra" in printed
    out = repo["tmp"] / "plan.json"
    assert main(["plan", str(repo["repo"]), repo["v1"], repo["bad"], "--out", str(out), "--no-cache"]) == EXIT_OK
