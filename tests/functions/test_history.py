"""Secrets never reach Durable history, the run table or the CLI's apply summary: one scrubbed failure text.

A model whose failure quotes a password (a data value) and a GitHub token (a column name) is applied by
the Functions' activities and by `ironlayer apply`; every place the failure goes shows the same scrubbed
text. Every registered activity is wrapped: its output is scrubbed, and its failures leave as an
`ActivityError` with a scrubbed message and no original attached.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import traceback
from typing import Any

import asyncpg
import pytest

from functions import resources
from functions.history import scrubbed
from shared_core.cli.main import main
from shared_core.core.errors import ActivityError, StateUnavailableError
from tests.conftest import write_commits
from tests.functions.conftest import functions_by_name, handler

pytestmark = pytest.mark.integration
ZERO = "0" * 40
PASSWORD, TOKEN = "hunter2-s3cr3t", "ghp_" + "Zx9" * 12
LEAK = {
    "ironlayer.toml": 'models_path = "models"\n',
    "models/mart/leak.sql": (
        "-- name: mart.leak\n-- kind: FULL_REFRESH\n"
        f"SELECT CAST('postgresql://etl:{PASSWORD}@db/x' AS INTEGER) AS n, {TOKEN} AS t\n"
    ),
}
ACTIVITIES = ("build_plan_activity", "request_approval_activity", "start_execution_activity", "run_step_activity",
              "finalize_activity")


def test_the_wrapper_scrubs_outputs_and_failures_and_keeps_the_binding() -> None:
    async def activity(request: dict[str, Any]) -> dict[str, Any]:
        if request["fail"]:
            raise StateUnavailableError(f"state store unreachable at postgresql://app:{PASSWORD}@db/x")
        return {"status": "failed", "error": f"token {TOKEN} for ann@example.com", "rows_written": 3}

    wrapped = scrubbed(activity)
    assert list(inspect.signature(wrapped).parameters) == ["request"] and wrapped.__name__ == "activity"
    assert not hasattr(wrapped, "__wrapped__")
    assert asyncio.run(wrapped({"fail": False})) == {"status": "failed", "error": "token [github-token] for [email]",
                                                     "rows_written": 3}
    with pytest.raises(ActivityError) as failed:
        asyncio.run(wrapped({"fail": True}))
    assert str(failed.value) == "StateUnavailableError: state store unreachable at postgresql://app:***@db/x"
    recorded = "".join(traceback.format_exception(failed.value))  # what a worker reports as the stack
    assert PASSWORD not in recorded and failed.value.__suppress_context__ and failed.value.__cause__ is None


@pytest.mark.parametrize("name", ACTIVITIES)
def test_every_registered_activity_fails_with_scrubbed_text(app_env: dict[str, Any], name: str) -> None:
    trigger = functions_by_name()[name].get_trigger()
    assert trigger is not None
    assert list(inspect.signature(handler(name)).parameters) == [trigger.name]  # the host binds the input by it
    repository = f"o/r-password={PASSWORD}"  # a hostile repository name ends up in the refusal's message
    ids = {"tenant_id": app_env["tenant"], "instance_id": "push-" + "0" * 32, "repository": repository,
           "target": "a" * 40, "plan_id": "c" * 64}
    payload = {
        "build_plan_activity": {"kind": "push", "tenant_id": app_env["tenant"], "repository": repository,
                                "base": ZERO, "target": "a" * 40, "auto_approve": True, "approval_ttl_hours": 1,
                                "step_retries": 1, "instance_id": ids["instance_id"]},
        "request_approval_activity": {**ids, "author": "x", "ttl_hours": 1},
        "start_execution_activity": ids,
        "run_step_activity": {**ids, "step": 0, "skip_reason": None},
        "finalize_activity": {**ids, "outcome": "failed", "detail": f"token {TOKEN}"},
    }[name]
    # a repository that is not onboarded is a permanent error: a typed, scrubbed failure, never a retry
    output = asyncio.run(handler(name)(payload))
    if name == "finalize_activity":  # the outcome is recorded even without a commit status target
        assert output == {"status": "failed"}
        job = asyncio.run(_job(app_env["tenant"], ids["instance_id"]))
        assert job is not None and job["status"] == "failed"
        text = str(job["detail"])
    else:
        text = json.dumps(output)
        assert output["status"] == "failed" and "is not onboarded" in text and "repository o/r-password=***" in text
    assert PASSWORD not in text and TOKEN not in text


async def _job(tenant: str, instance: str) -> Any:
    return await (await resources.get_store()).get_job(tenant, instance)


def test_a_transient_failure_raises_scrubbed_so_that_durable_retries_it(app_env: dict[str, Any],
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IRONLAYER_DATABASE_URL", f"postgresql://ironlayer_app:{PASSWORD}@127.0.0.1:1/ironlayer")
    monkeypatch.setenv("IRONLAYER_MIGRATION_DATABASE_URL", "")
    resources.reset()
    job = {"kind": "push", "tenant_id": app_env["tenant"], "repository": "binkkatal/sample_app", "base": ZERO,
           "target": "a" * 40, "auto_approve": True, "approval_ttl_hours": 1, "step_retries": 1,
           "instance_id": "push-" + "0" * 32}
    with pytest.raises(ActivityError) as failed:  # PostgreSQL down: raised, so Durable's retry policy runs it again
        asyncio.run(handler("build_plan_activity")(job))
    assert str(failed.value).startswith("StateUnavailableError: state store unreachable at "
                                        "postgresql://ironlayer_app:***@127.0.0.1:1/ironlayer")
    assert PASSWORD not in "".join(traceback.format_exception(failed.value))


@pytest.fixture()
def leaky(app_env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    path = app_env["tmp"] / "leaky"
    (sha,) = write_commits(path, [LEAK])
    monkeypatch.setenv("IRONLAYER_LOCAL_REPO", str(path))
    resources.reset()
    return {**app_env, "repo": path, "sha": sha}


async def run_errors(url: str, tenant: str) -> list[str]:
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            await conn.execute("SELECT set_config('app.tenant_id', $1, true)", tenant)
            return [r["error"] for r in await conn.fetch("SELECT error FROM runs WHERE tenant_id = $1 AND "
                                                         "status = 'failed' ORDER BY run_id", tenant)]
    finally:
        await conn.close()


def test_a_failing_step_shows_one_scrubbed_text_in_history_the_run_table_and_the_cli(
        leaky: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    job = {"kind": "push", "tenant_id": leaky["tenant"], "repository": "binkkatal/sample_app", "base": ZERO,
           "target": leaky["sha"], "branch": "main", "author": "pat", "auto_approve": True,
           "approval_ttl_hours": 1, "step_retries": 1, "instance_id": "push-" + "7" * 32}
    ref = asyncio.run(handler("build_plan_activity")(job))
    ids = {"tenant_id": leaky["tenant"], "instance_id": job["instance_id"], "repository": job["repository"],
           "target": leaky["sha"], "plan_id": ref["plan_id"]}
    result = asyncio.run(handler("run_step_activity")({**ids, "step": ref["waves"][0][0], "skip_reason": None}))
    assert result["status"] == "failed"
    history = result["error"]
    assert PASSWORD not in history and TOKEN not in history
    assert asyncio.run(run_errors(leaky["url"], leaky["tenant"])) == [history]  # the run table: the same text

    out = leaky["tmp"] / "plan.json"
    assert main(["plan", str(leaky["repo"]), ZERO, leaky["sha"], "--out", str(out), "--no-cache"]) == 0
    capsys.readouterr()
    code = main(["apply", str(out), "--repo", str(leaky["repo"]), "--warehouse", str(leaky["tmp"] / "cli.duckdb"),
                 "--auto-approve"])
    printed = capsys.readouterr()
    assert code == 1
    summary = printed.out + printed.err
    assert PASSWORD not in summary and TOKEN not in summary
    cli_errors = asyncio.run(run_errors(leaky["url"], leaky["tenant"]))[1:]
    assert len(cli_errors) == 1 and cli_errors[0] in summary  # the summary prints exactly what was stored
