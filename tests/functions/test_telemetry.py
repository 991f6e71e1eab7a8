"""The telemetry function on real PostgreSQL: step and batch records with estimated cost, scrubbed; an idempotent
rewrite; a store that is down never fails the activity; the per-model summary of `GET /api/telemetry`; spans and
log records correlated by orchestration instance ID and plan ID, exported to Azure Monitor (a local ingestion
endpoint) when `APPLICATIONINSIGHTS_CONNECTION_STRING` is set."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from functions import resources
from functions.telemetry import export_steps
from shared_core.services.messages import BatchTelemetry, StepTelemetry, TelemetryRequest
from shared_core.settings import load_settings
from tests.functions.conftest import handler, json_body, request
from tests.pg import owner_rows as owner

pytestmark = pytest.mark.integration
PLAN = "a" * 64
INSTANCE = "push-" + "b" * 32


def step(step_id: str, model: str, seconds: float, *, status: str = "success", error: str | None = None,
         run_ids: tuple[int, ...] = (1,)) -> StepTelemetry:
    batches = [BatchTelemetry(run_id=run_id, batch_start=f"2024-01-0{i + 1}T00:00:00+00:00",
                              batch_end=f"2024-01-0{i + 2}T00:00:00+00:00", status=status,
                              seconds=seconds / len(run_ids), rows_written=5, rows_read=None, bytes=None)
               for i, run_id in enumerate(run_ids)]
    return StepTelemetry(step_id=step_id, model=model, engine="duckdb", status=status, seconds=seconds + 0.5,
                         engine_seconds=seconds, rows_written=5 * len(run_ids), rows_read=None, bytes=None, error=error,
                         batches=batches)


def telemetry_request(tenant: str, steps: list[StepTelemetry], plan: str = PLAN) -> TelemetryRequest:
    return TelemetryRequest(tenant_id=tenant, instance_id=INSTANCE, repository="binkkatal/sample_app", target="c" * 40,
                            plan_id=plan, steps=steps)


@pytest.fixture()
def rated(app_env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv("IRONLAYER_ENGINE_RATES", "duckdb=3.6,databricks=7.2")
    resources.reset()
    return app_env


def record(req: TelemetryRequest) -> Any:
    return asyncio.run(handler("record_telemetry_activity")(req))


def test_steps_and_batches_are_recorded_with_cost_and_scrubbed(rated: dict[str, Any], admin_database_url: str) -> None:
    tenant = rated["tenant"]
    leak = "failed for ann@example.com with password=hunter2 and token ghp_" + "a" * 36
    result = record(telemetry_request(tenant, [step("s1", "gold.daily", 10.0, run_ids=(11, 12)),
                                               step("s2", "gold.funnel", 1.0, status="failed", error=leak,
                                                    run_ids=(13,))]))
    assert result == {"recorded": 5}
    rows = owner(admin_database_url, "SELECT kind, step_id, run_id, instance_id, model, engine, status, batches, "
                                     "seconds, engine_seconds, rows_written, cost_usd, attributes, batch_start "
                                     "FROM step_telemetry WHERE tenant_id = $1 ORDER BY kind DESC, step_id, run_id",
                 tenant)
    steps = [r for r in rows if r["kind"] == "step"]
    assert [(r["step_id"], r["model"], r["batches"], r["seconds"], r["engine_seconds"], r["rows_written"],
             r["cost_usd"], r["instance_id"]) for r in steps] == [
        ("s1", "gold.daily", 2, 10.5, 10.0, 10, 0.01, INSTANCE),  # 10 engine seconds at $3.60 an hour
        ("s2", "gold.funnel", 1, 1.5, 1.0, 5, 0.001, INSTANCE),
    ]
    assert [(r["run_id"], r["status"], r["seconds"], r["cost_usd"]) for r in rows if r["kind"] == "batch"] == [
        (11, "success", 5.0, 0.005), (12, "success", 5.0, 0.005), (13, "failed", 1.0, 0.001)]
    attributes = json.loads(steps[1]["attributes"])["error"]
    assert "ann@example.com" not in attributes and "hunter2" not in attributes and "ghp_" not in attributes
    assert attributes.startswith("failed for ")


def test_writing_the_same_reports_again_replaces_them(rated: dict[str, Any], admin_database_url: str) -> None:
    tenant = rated["tenant"]
    record(telemetry_request(tenant, [step("s1", "gold.daily", 2.0, run_ids=(21,))]))
    record(telemetry_request(tenant, [step("s1", "gold.daily", 3.0, run_ids=(21,))]))  # a retried activity
    rows = owner(admin_database_url, "SELECT kind, engine_seconds FROM step_telemetry WHERE tenant_id = $1 "
                                     "ORDER BY kind", tenant)
    assert rows == [{"kind": "batch", "engine_seconds": 3.0}, {"kind": "step", "engine_seconds": 3.0}]


def test_a_store_that_is_down_never_fails_the_activity(rated: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IRONLAYER_DATABASE_URL", "postgresql://ironlayer_app@127.0.0.1:1/nowhere")
    monkeypatch.delenv("IRONLAYER_MIGRATION_DATABASE_URL")
    resources.reset()
    assert record(telemetry_request(rated["tenant"], [step("s1", "gold.daily", 1.0)])) == {"recorded": 0}


def test_the_api_summarizes_per_model(rated: dict[str, Any]) -> None:
    tenant = rated["tenant"]
    record(telemetry_request(tenant, [step(f"s{i}", "gold.daily", float(i), run_ids=(100 + i,))
                                      for i in range(1, 21)] + [step("f1", "gold.funnel", 4.0, run_ids=(200,))]))
    body = json_body(asyncio.run(handler("telemetry_summary")(request("GET", "/api/telemetry"))))
    daily, funnel = body["models"]
    assert (daily["model"], daily["steps"], daily["failed"]) == ("gold.daily", 20, 0)
    assert (daily["p50_seconds"], daily["p95_seconds"]) == (11.0, 19.55)  # wall clock: 1.5 s to 20.5 s
    assert daily["cost_usd"] == pytest.approx(sum(range(1, 21)) / 1000)
    assert (funnel["model"], funnel["steps"], funnel["p50_seconds"]) == ("gold.funnel", 1, 4.5)
    assert [p["seconds"] for p in body["points"]["gold.funnel"]] == [4.5]
    one = json_body(asyncio.run(handler("telemetry_summary")(request("GET", "/api/telemetry",
                                                                      params={"model": "gold.funnel"}))))
    assert [m["model"] for m in one["models"]] == ["gold.funnel"] and list(one["points"]) == ["gold.funnel"]


def test_spans_and_logs_carry_the_instance_and_the_plan(caplog: pytest.LogCaptureFixture) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    req = telemetry_request("acme", [step("s1", "gold.daily", 2.0), step("s2", "gold.funnel", 1.0)])
    with caplog.at_level("INFO", logger="ironlayer.telemetry"):
        assert export_steps(req, load_settings({}), tracer=provider.get_tracer("test")) == 2
    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == ["step gold.daily", "step gold.funnel"]
    for span in spans:
        assert span.attributes is not None
        assert (span.attributes["ironlayer.instance_id"], span.attributes["ironlayer.plan_id"]) == (INSTANCE, PLAN)
        assert span.end_time is not None and span.start_time is not None
    assert spans[0].end_time - spans[0].start_time == 2_500_000_000  # type: ignore[operator]  # the step's 2.5 s
    records = [r for r in caplog.records if r.name == "ironlayer.telemetry"]
    assert [(r.__dict__["ironlayer.instance_id"], r.__dict__["ironlayer.plan_id"]) for r in records] == [
        (INSTANCE, PLAN)] * 2
    assert export_steps(req, load_settings({})) == 0  # no connection string: nothing is exported


class _Ingestion(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.headers.get("Content-Encoding") == "gzip":
            body = zlib.decompress(body, 16 + zlib.MAX_WBITS)
        _Ingestion.received.append((self.path, body))
        answer = json.dumps({"itemsReceived": 1, "itemsAccepted": 1, "errors": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: object) -> None:
        return


def _envelopes(text: str) -> list[Any]:
    """The telemetry items of one ingestion request: a JSON array, or one JSON object per line."""
    stripped = text.strip()
    if stripped.startswith("["):
        return list(json.loads(stripped))
    return [json.loads(line) for line in stripped.splitlines() if line.strip()]


@pytest.fixture()
def ingestion() -> Iterator[str]:
    _Ingestion.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ingestion)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_a_connection_string_exports_to_azure_monitor(ingestion: str) -> None:
    """In a process of its own (the exporter configures global providers): spans and logs reach the endpoint."""
    script = f"""
import json, os, sys
os.environ["IRONLAYER_ENVIRONMENT"] = "test"
os.environ["APPLICATIONINSIGHTS_CONNECTION_STRING"] = (
    "InstrumentationKey=00000000-0000-0000-0000-000000000001;IngestionEndpoint={ingestion}")
from opentelemetry import trace
from opentelemetry._logs import get_logger_provider
from functions.telemetry import export_steps
from shared_core.settings import load_settings
from tests.functions.test_telemetry import step, telemetry_request
sent = export_steps(telemetry_request("acme", [step("s1", "gold.daily", 2.0)]), load_settings())
trace.get_tracer_provider().shutdown()  # exports what is pending, and waits for it
get_logger_provider().shutdown()
print(sent)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).parents[2], env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home())})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "1"
    items = [item for path, body in _Ingestion.received if path.endswith("/track")
             for item in _envelopes(body.decode())]
    kinds = {item["data"]["baseType"] for item in items}
    assert {"RemoteDependencyData", "MessageData"} <= kinds, kinds
    for item in items:
        if item["data"]["baseType"] in ("RemoteDependencyData", "RequestData", "MessageData"):
            properties = item["data"]["baseData"]["properties"]
            assert (properties["ironlayer.instance_id"], properties["ironlayer.plan_id"]) == (INSTANCE, PLAN)
