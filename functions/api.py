"""The read API: plans, runs, jobs (with cancel) and health. JSON bodies, JSON errors, tenant-bound."""

from __future__ import annotations

import asyncio
import re

import azure.durable_functions as df
import azure.functions as func

from functions.http import error_response, json_response
from functions.settings import get_settings
from shared_core.errors import CoreError, PlanError

bp = df.Blueprint()
_PLAN_ID = re.compile(r"^[0-9a-f]{64}$")
_INSTANCE = re.compile(r"^(push|schedule)-[0-9a-f]{32}$")


def _bad(message: str, status: int = 400) -> func.HttpResponse:
    return json_response({"error": {"status": status, "message": message}}, status)


@bp.route(route="plans", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def list_plans(req: func.HttpRequest) -> func.HttpResponse:
    from functions.resources import get_store

    try:
        settings = get_settings()
        plans = await (await get_store(settings)).list_plans(settings.tenant_id, 100)
    except CoreError as exc:
        return error_response(exc)
    return json_response({"plans": plans})


@bp.route(route="plans/{plan_id}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def get_plan(req: func.HttpRequest) -> func.HttpResponse:
    from functions.resources import get_blob_store, get_store

    plan_id = req.route_params.get("plan_id", "")
    if not _PLAN_ID.match(plan_id):
        return _bad(f"plan id {plan_id[:80]!r} is not 64 hex digits")
    try:
        settings = get_settings()
        if await (await get_store(settings)).get_plan(settings.tenant_id, plan_id) is None:
            return _bad(f"plan {plan_id[:12]} not found", 404)
        data = await asyncio.to_thread(get_blob_store(settings).get, f"plans/{plan_id}.json")
        if data is None:
            raise PlanError(f"plan {plan_id[:12]} is recorded but missing from the blob store")
    except CoreError as exc:
        return error_response(exc)
    return func.HttpResponse(data, status_code=200, headers={"Content-Type": "application/json"})


@bp.route(route="runs", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def list_runs(req: func.HttpRequest) -> func.HttpResponse:
    from functions.resources import get_store

    plan_id = req.params.get("plan_id")
    if plan_id is not None and not _PLAN_ID.match(plan_id):
        return _bad(f"plan_id {plan_id[:80]!r} is not 64 hex digits")
    try:
        settings = get_settings()
        runs = await (await get_store(settings)).list_runs(settings.tenant_id, plan_id, 1000)
    except CoreError as exc:
        return error_response(exc)
    return json_response({"runs": runs})


@bp.route(route="jobs", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def list_jobs(req: func.HttpRequest) -> func.HttpResponse:
    from functions.resources import get_store

    try:
        settings = get_settings()
        jobs = await (await get_store(settings)).list_jobs(settings.tenant_id)
    except CoreError as exc:
        return error_response(exc)
    return json_response({"jobs": jobs})


@bp.route(route="jobs/{instance_id}", methods=["DELETE"], auth_level=func.AuthLevel.ANONYMOUS)
@bp.durable_client_input(client_name="client")
async def cancel_job(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    from functions.resources import get_store

    instance = req.route_params.get("instance_id", "")
    if not _INSTANCE.match(instance):
        return _bad(f"job id {instance[:80]!r} is not a job id")
    try:
        settings = get_settings()
        store = await get_store(settings)
        job = await store.get_job(settings.tenant_id, instance)
        if job is None:
            return _bad(f"job {instance} not found", 404)
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return _bad(f"job {instance} already {job['status']}; nothing to cancel", 409)
        await client.terminate(instance, "cancelled through the API")
        cancelled = await store.cancel_runs(settings.tenant_id, job["plan_id"]) if job["plan_id"] else 0
        if job["plan_id"]:
            await store.set_plan_status(settings.tenant_id, job["plan_id"], "cancelled")
        await store.upsert_job(settings.tenant_id, instance, status="cancelled", detail="cancelled through the API")
    except CoreError as exc:
        return error_response(exc)
    return json_response({"instance_id": instance, "status": "cancelled", "runs_cancelled": cancelled}, 202)


@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def health(req: func.HttpRequest) -> func.HttpResponse:
    from functions.resources import get_blob_store, get_store

    checks: dict[str, str] = {}
    settings = get_settings()
    try:
        await (await get_store(settings)).health()
        checks["postgres"] = "ok"
    except CoreError as exc:
        checks["postgres"] = str(exc)
    try:
        await asyncio.to_thread(get_blob_store(settings).health)
        checks["blob"] = "ok"
    except CoreError as exc:
        checks["blob"] = str(exc)
    healthy = all(v == "ok" for v in checks.values())
    return json_response({"status": "ok" if healthy else "degraded", "checks": checks}, 200 if healthy else 503)
