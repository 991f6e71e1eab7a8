"""`schedule_tick`: every 5 minutes, plan the missing intervals of incremental models whose cron is due.

Missed ticks leave no gap: a model is due while any complete batch before its cron's latest fire is
missing from the ledger. The instance ID is derived from (repository, commit, fire time, models), so two
ticks in the same period never start the same work twice.
"""

from __future__ import annotations

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
    from shared_core.core.project.headers import format_instant
    from shared_core.services.jobs import JobPolicy, due_schedule_jobs, start_job

    settings = get_settings()
    if not settings.branches:
        return
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    branch = sorted(settings.branches)[0] if "main" not in settings.branches else "main"
    policy = JobPolicy(settings.schedule_auto_approve, settings.approval_ttl_hours, settings.step_retries)
    try:
        store = await get_store(settings)
        jobs = await due_schedule_jobs(get_git_source(settings), store, tenant_id=settings.tenant_id,
                                       repository=settings.repository or settings.local_repo, branch=branch, now=now,
                                       policy=policy)
    except CoreError as exc:
        logger.error("schedule tick %s: cannot read the project: %s", format_instant(now), exc)
        raise
    for job in jobs:
        started = await start_job(store, client, job)
        if started.status == "accepted":
            logger.info("schedule started %s for %s", started.instance_id, ", ".join(job.models or ()))
