"""The telemetry function: `record_telemetry_activity` writes the step and batch telemetry of a chunk of steps, and
exports it to Azure Monitor; `GET /api/telemetry` summarizes it per model.

Each `run_steps_orchestrator` (a chunk of a wave) calls the activity with what its steps' activities reported,
and ignores its failure: a telemetry write never fails a run. When `APPLICATIONINSIGHTS_CONNECTION_STRING` is
set, each step also leaves as an OpenTelemetry span (and a log record) exported to Azure Monitor, with the
orchestration instance ID and the plan ID as attributes, so a run's traces and logs are found by either.
OpenTelemetry and the Azure Monitor exporter are imported here only, and only then: no other function's cold
start pays for them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Generator, Sequence
from typing import TYPE_CHECKING, Any

import azure.durable_functions as df
import azure.functions as func

from functions.history import scrubbed
from functions.http.guard import Body, guarded
from shared_core.services.messages import JobIds, StepResult, TelemetryRecorded, TelemetryRequest
from shared_core.settings import Settings, get_settings

if TYPE_CHECKING:
    from shared_core.ports import StateStore
    from shared_core.security.tokens import Principal

bp = df.Blueprint()
logger = logging.getLogger(__name__)
#: The logger whose records Azure Monitor exports (configured on first use).
EXPORT_LOGGER = "ironlayer.telemetry"

# Any: an OpenTelemetry tracer (imported lazily, see the module docstring), or None until the first export.
_tracer: Any = None
_configured_for = ""


def record_wave_telemetry(context: df.DurableOrchestrationContext, ids: JobIds,
                          results: Sequence[StepResult]) -> Generator[Any, Any, None]:  # Any: Durable tasks
    """After a chunk of steps: hand their telemetry to `record_telemetry_activity`; its failure is logged and ignored,
    so a telemetry write never fails a run. Used with `yield from`."""
    steps = [result["telemetry"] for result in results if "telemetry" in result]
    if not steps:
        return
    try:
        yield context.call_activity("record_telemetry_activity", TelemetryRequest(**ids, steps=steps))
    except Exception as exc:
        if not context.is_replaying:
            logger.warning("telemetry of plan %s was not recorded: %s", ids["plan_id"][:12], exc)


@bp.activity_trigger(input_name="request")
@scrubbed
async def record_telemetry_activity(request: TelemetryRequest) -> TelemetryRecorded:
    """Record the telemetry of a wave's steps (cost estimated with `IRONLAYER_ENGINE_RATES`) and export it.

    Returns:
        How many records were written (0 when the store refused: logged, never raised).
    """
    from functions.resources import get_store
    from shared_core.core.errors import CoreError
    from shared_core.services.telemetry import record_steps

    settings = get_settings()
    try:
        store = await get_store(settings)
    except CoreError as exc:  # the store cannot even be opened: the run goes on, this telemetry is lost
        logger.warning("telemetry of plan %s was not recorded: %s", request["plan_id"][:12], exc)
        recorded = 0
    else:
        recorded = await record_steps(store, request["tenant_id"], request["plan_id"], request["instance_id"],
                                      request["steps"], dict(settings.engine_rates))
    try:
        export_steps(request, settings)
    except Exception:  # exporting is best effort: the run and the stored telemetry stand without it
        logger.warning("telemetry of plan %s was not exported", request["plan_id"][:12], exc_info=True)
    return TelemetryRecorded(recorded=recorded)


def export_steps(request: TelemetryRequest, settings: Settings, tracer: Any = None) -> int:  # Any: a tracer
    """Emit a span and a log record per step, correlated by orchestration instance ID and plan ID.

    Without `tracer`, the Azure Monitor one (configured from `APPLICATIONINSIGHTS_CONNECTION_STRING` on first
    use); without a connection string, nothing is exported. Returns how many steps were emitted.
    """
    if tracer is None:
        tracer = _azure_tracer(settings.applicationinsights_connection_string)
        if tracer is None:
            return 0
    export_log = logging.getLogger(EXPORT_LOGGER)
    now = time.time_ns()
    for step in request["steps"]:
        attributes = {
            "ironlayer.tenant_id": request["tenant_id"], "ironlayer.instance_id": request["instance_id"],
            "ironlayer.plan_id": request["plan_id"], "ironlayer.repository": request["repository"],
            "ironlayer.step_id": step["step_id"], "ironlayer.model": step["model"],
            "ironlayer.engine": step["engine"], "ironlayer.status": step["status"],
            "ironlayer.batches": len(step["batches"]), "ironlayer.seconds": step["seconds"],
            "ironlayer.engine_seconds": step["engine_seconds"], "ironlayer.rows_written": step["rows_written"],
            **({"ironlayer.rows_read": step["rows_read"]} if step["rows_read"] is not None else {}),
            **({"ironlayer.bytes": step["bytes"]} if step["bytes"] is not None else {}),
        }
        span = tracer.start_span(f"step {step['model']}", start_time=now - int(step["seconds"] * 1e9),
                                 attributes=attributes)
        span.end(end_time=now)
        export_log.info("step %s of plan %s %s in %.3fs", step["model"], request["plan_id"][:12], step["status"],
                        step["seconds"], extra=attributes)
    return len(request["steps"])


def _azure_tracer(connection_string: str) -> Any:  # Any: an OpenTelemetry tracer
    """The tracer exporting to Azure Monitor, configured once per worker; None without a connection string."""
    global _tracer, _configured_for
    if not connection_string:
        return None
    if _tracer is None or _configured_for != connection_string:
        from azure.monitor.opentelemetry import configure_azure_monitor
        from opentelemetry import trace

        # every step is exported: a run has few, and a rate-limited default sampler would drop some
        configure_azure_monitor(connection_string=connection_string, logger_name=EXPORT_LOGGER, sampling_ratio=1.0)
        logging.getLogger(EXPORT_LOGGER).setLevel(logging.INFO)  # the step records are INFO
        _tracer, _configured_for = trace.get_tracer("ironlayer.telemetry"), connection_string
    return _tracer


@bp.route(route="telemetry", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@guarded("telemetry")
async def telemetry_summary(req: func.HttpRequest, principal: Principal, store: StateStore) -> Body:
    """Per model (or `?model=` one): executed steps, failures, p50/p95 runtime, rows written, estimated cost, and
    each model's newest steps (`points`) for a runtime/cost chart."""
    from shared_core.core.errors import InputError
    from shared_core.services.telemetry import telemetry_summary as summarize

    model = req.params.get("model")
    if model is not None and not 0 < len(model) <= 200:
        raise InputError("model must be a model name of 1 to 200 characters")
    summary = await summarize(store, principal.tenant_id, model)
    return {"tenant_id": principal.tenant_id, "models": summary["models"], "points": summary["points"]}
