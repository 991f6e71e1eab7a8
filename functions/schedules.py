"""`schedule_tick`: every 5 minutes, plan the missing intervals of incremental models whose cron is due.

Every onboarded repository is visited (and, in development, the deployment's own), each with its own
tenant's resources: its git source and its default branch. One repository that cannot be read is logged
and skipped; the others still run. Missed ticks leave no gap: a model is due while any complete batch
before its cron's latest fire is missing from the ledger. Only approved work runs: a model whose run is
planned, awaiting approval or running is left out, and so is one not deployed exactly as it is at the
branch head. The instance ID is derived from (repository, commit, fire time, models), so two ticks in
the same period never start the same work twice.
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
    from functions.resources import clients_for, deployment, get_analyzer, get_store
    from shared_core.core.project.headers import format_instant
    from shared_core.services.jobs import JobPolicy, due_schedule_jobs, start_job
    from shared_core.services.tenancy import repositories_to_schedule

    settings = get_settings()
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    policy = JobPolicy(settings.schedule_auto_approve, settings.approval_ttl_hours, settings.step_retries)
    store = await get_store(settings)
    for tenant_id, repository in await repositories_to_schedule(store, deployment(settings)):
        analyzer = get_analyzer(tenant_id, settings)
        try:
            clients = await clients_for(tenant_id, repository, settings)
            jobs = await due_schedule_jobs(clients.source, store, analyzer, tenant_id=tenant_id,
                                           repository=repository, branch=clients.resources.default_branch, now=now,
                                           policy=policy)
        except CoreError as exc:
            logger.error("schedule tick %s: %s of tenant %s cannot be read: %s", format_instant(now), repository,
                         tenant_id, exc)
            continue
        finally:
            analyzer.close()
        for job in jobs:
            started = await start_job(store, client, job)
            if started.status == "accepted":
                logger.info("schedule started %s for %s", started.instance_id, ", ".join(job.models or ()))
