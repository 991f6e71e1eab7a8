"""`plan_orchestrator` and `build_plan_activity`: from a push (or a schedule) to an approved, executed plan.

The orchestrator only decides; every side effect is an activity. It is deterministic: time comes from
`context.current_utc_datetime`, settings from its input (fixed when the starter read them), and it
passes plan and step IDs, never plan bodies.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Generator
from datetime import timedelta
from typing import Any

import azure.durable_functions as df

from shared_core.settings import get_settings

bp = df.Blueprint()
logger = logging.getLogger(__name__)


@bp.orchestration_trigger(context_name="context")
def plan_orchestrator(context: df.DurableOrchestrationContext) -> Generator[Any, Any, dict[str, Any]]:
    job = context.get_input()
    ids = {"tenant_id": job["tenant_id"], "instance_id": context.instance_id, "repository": job["repository"],
           "target": job["target"]}
    ref = yield context.call_activity("build_plan_activity", {**job, "instance_id": context.instance_id})
    plan_id = ref["plan_id"]
    ids["plan_id"] = plan_id

    def finalize(outcome: str, detail: str) -> Any:
        return context.call_activity("finalize_activity", {**ids, "outcome": outcome, "detail": detail})

    if not ref["waves"]:
        yield finalize("succeeded", "nothing to run: no model's data changed")
        return {"plan_id": plan_id, "status": "succeeded"}
    if not job["auto_approve"]:
        yield context.call_activity("request_approval_activity", {**ids, "author": job.get("author", ""),
                                                                  "ttl_hours": job["approval_ttl_hours"]})
        context.set_custom_status({"status": "awaiting_approval", "plan_id": plan_id})
        deadline = context.current_utc_datetime + timedelta(hours=job["approval_ttl_hours"])
        timer = context.create_timer(deadline)
        approval = context.wait_for_external_event("approval")
        winner = yield context.task_any([approval, timer])
        if winner is not approval:
            yield finalize("expired", f"not approved within {job['approval_ttl_hours']} h")
            return {"plan_id": plan_id, "status": "expired"}
        timer.cancel()
        decision = _decision(approval.result)
        if decision.get("decision") != "approve":
            yield finalize("rejected", f"rejected by {decision.get('by', 'a reviewer')}")
            return {"plan_id": plan_id, "status": "rejected"}
    started = yield context.call_activity("start_execution_activity", ids)
    if started["status"] != "ok":
        yield finalize("failed", started["detail"])
        return {"plan_id": plan_id, "status": "failed"}
    context.set_custom_status({"status": "running", "plan_id": plan_id})
    retry = df.RetryOptions(first_retry_interval_in_milliseconds=5000, max_number_of_attempts=job["step_retries"])
    outcomes: dict[str, str] = {}
    for wave in ref["waves"]:
        tasks = []
        for step in wave:
            broken = [d for d in step["depends_on"] if outcomes.get(d) in ("failed", "skipped")]
            skip = "skipped: an upstream step did not succeed" if broken else None
            tasks.append(context.call_activity_with_retry(
                "run_step_activity", retry, {**ids, "step_id": step["step_id"], "skip_reason": skip}))
        try:
            results = yield context.task_all(tasks)
        except Exception as exc:  # retries exhausted: the step's infrastructure kept failing
            yield finalize("failed", f"a step kept failing after {job['step_retries']} attempts: {exc}")
            return {"plan_id": plan_id, "status": "failed"}
        for step, result in zip(wave, results, strict=True):
            outcomes[step["step_id"]] = result["status"]
    failed = sorted(s for s, status in outcomes.items() if status in ("failed", "skipped"))
    outcome = "failed" if failed else "succeeded"
    yield finalize(outcome, f"{len(failed)} of {len(outcomes)} steps did not succeed" if failed else
                   f"{len(outcomes)} steps succeeded")
    return {"plan_id": plan_id, "status": outcome}


def _decision(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return {}
    return value if isinstance(value, dict) else {}


@bp.activity_trigger(input_name="job")
async def build_plan_activity(job: dict[str, Any]) -> dict[str, Any]:
    """Plan the job's commits with shared_core, store the plan in the blob store and PostgreSQL.

    Returns:
        `{"plan_id", "waves": [[{"step_id", "depends_on"}, ...], ...]}`: IDs only, never the plan body.
    """
    from functions.resources import analysis_cache_dir, get_blob_store, get_git_source, get_store, plan_key
    from shared_core.adapters.caches.analysis import CachedAnalyzer
    from shared_core.core.planning.plan import plan_to_json

    settings = get_settings()
    store = await get_store(settings)
    tenant = job["tenant_id"]
    ledger = await store.load_ledger(tenant)
    analyzer = CachedAnalyzer(analysis_cache_dir(settings))
    plan, diffs = await asyncio.to_thread(_plan, job, get_git_source(settings), ledger, analyzer)
    text = plan_to_json(plan)
    blob = get_blob_store(settings)
    await asyncio.to_thread(blob.put, plan_key(plan["plan_id"]), text.encode(), content_type="application/json")
    await asyncio.to_thread(blob.put, f"plans/{plan['plan_id']}.sql-diff.json",
                            json.dumps(diffs, sort_keys=True).encode(), content_type="application/json")
    await store.save_plan(tenant, plan, text)
    await store.upsert_job(tenant, job["instance_id"], plan_id=plan["plan_id"], kind=job["kind"],
                           repository=job["repository"], target=job["target"])
    waves: dict[int, list[dict[str, Any]]] = {}
    for step in plan["steps"]:
        waves.setdefault(step["parallel_group"], []).append(
            {"step_id": step["step_id"], "depends_on": step["depends_on"]})
    return {"plan_id": plan["plan_id"], "waves": [waves[w] for w in sorted(waves)]}


def _plan(job: dict[str, Any], source: Any, ledger: Any, analyzer: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Build the plan exactly as `ironlayer plan` does, and the old/new canonical SQL of modified models."""
    from shared_core.core.planning.planner import build_catchup_plan, build_plan
    from shared_core.core.project.headers import parse_instant
    from shared_core.core.project.loading import load_commit
    from shared_core.core.sql.canonical import resolve_canonical

    target = load_commit(source, source.resolve(job["target"]))
    if job["kind"] == "schedule":
        plan = build_catchup_plan(
            target.project, job["models"], target_sha=target.sha, as_of=parse_instant(job["as_of"]), ledger=ledger,
            settings=target.config.planner, analyzer=analyzer,
        )
        return plan, {}
    base_sha = source.resolve(job["base"])
    base = load_commit(source, base_sha)
    plan = build_plan(
        base.project, target.project, base_sha=base_sha, target_sha=target.sha,
        as_of=source.commit_time(target.sha), ledger=ledger, settings=target.config.planner, analyzer=analyzer,
    )
    diffs: dict[str, Any] = {}
    modified = [m["name"] for m in plan["models"] if m["change"] == "modified"]
    models = [(base.project[n], target.project[n]) for n in modified]
    analyses = analyzer.analyze_many([(m.key, m.path, m.text) for pair in models for m in pair])
    for old, new in models:
        diffs[new.name] = [resolve_canonical(analyses[old.key], old.ref_targets),
                           resolve_canonical(analyses[new.key], new.ref_targets)]
    return plan, diffs
