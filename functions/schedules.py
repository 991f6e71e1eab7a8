"""`schedule_tick`: every 5 minutes, plan the missing intervals of incremental models whose cron is due.

Missed ticks leave no gap: a model is due while any complete batch before its cron's latest fire is
missing from the ledger. The instance ID is derived from (repository, commit, fire time, models), so two
ticks in the same period never start the same work twice.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import azure.durable_functions as df
import azure.functions as func

from shared_core.core.errors import CoreError
from shared_core.settings import get_settings

bp = df.Blueprint()
logger = logging.getLogger(__name__)


@bp.timer_trigger(schedule="0 */5 * * * *", arg_name="timer", run_on_startup=False)
@bp.durable_client_input(client_name="client")
async def schedule_tick(timer: func.TimerRequest, client: df.DurableOrchestrationClient) -> None:
    from functions.resources import get_git_source, get_store
    from shared_core.adapters.github.webhooks import instance_id
    from shared_core.core.planning.schedules import due_models
    from shared_core.core.project.headers import format_instant
    from shared_core.core.project.loading import load_commit

    settings = get_settings()
    if not settings.branches:
        return
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    branch = sorted(settings.branches)[0] if "main" not in settings.branches else "main"
    try:
        source = get_git_source(settings)
        sha = await asyncio.to_thread(source.resolve, branch)
        project = (await asyncio.to_thread(load_commit, source, sha)).project
        store = await get_store(settings)
        ledger = await store.load_ledger(settings.tenant_id)
    except CoreError as exc:
        logger.error("schedule tick %s: cannot read the project: %s", format_instant(now), exc)
        raise
    groups: dict[datetime, list[str]] = {}
    for model in due_models(project, ledger, now):
        groups.setdefault(model.fired_at, []).append(model.name)
    repository = settings.repository or settings.local_repo
    for fired_at, names in sorted(groups.items()):
        instance = instance_id("schedule", repository.lower(), sha, format_instant(fired_at), *names)
        existing = await client.get_status(instance)
        if existing is not None and getattr(existing, "runtime_status", None) is not None:
            continue  # this period's work was already started by an earlier tick
        await store.upsert_job(settings.tenant_id, instance, kind="schedule", repository=repository, target=sha,
                               status="queued", detail=f"schedule for {', '.join(names)}")
        await client.start_new("plan_orchestrator", instance, {
            "kind": "schedule",
            "tenant_id": settings.tenant_id,
            "repository": repository,
            "base": sha,
            "target": sha,
            "models": names,
            "as_of": format_instant(fired_at),
            "author": "schedule",
            "auto_approve": settings.schedule_auto_approve,
            "approval_ttl_hours": settings.approval_ttl_hours,
            "step_retries": settings.step_retries,
        })
        logger.info("schedule started %s for %s", instance, ", ".join(names))
