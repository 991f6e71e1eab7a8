"""The CLI's telemetry and billing on real PostgreSQL and DuckDB: `runs --stats` after an apply, the runtime chart
of `docs --telemetry`, `usage` with its bar, `billing customer` and `billing send` to a local stand-in for Stripe."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from shared_core.cli.main import main
from tests.functions.stripe_support import StripeStandIn, serve_stripe
from tests.integration.test_apply import apply, base_project, plan, query

pytestmark = pytest.mark.integration
stripe_api = pytest.fixture(serve_stripe())


@pytest.fixture()
def applied(env: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> Iterator[dict[str, Any]]:
    head = base_project(env)
    assert apply(env, plan(env, "0" * 40, head, "p1.json")) == 0
    capsys.readouterr()
    yield {**env, "head": head}


def test_runs_stats_summarize_each_model_that_ran(applied: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["runs", "--stats", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert [m["model"] for m in stats["models"]] == ["mart.daily", "mart.totals", "raw.events", "ref.lookup"]
    daily = stats["models"][0]
    assert (daily["steps"], daily["failed"], daily["engine"], daily["rows_written"]) == (1, 0, "duckdb", 9)
    assert 0 < daily["p50_seconds"] == daily["p95_seconds"] and daily["cost_usd"] == 0  # duckdb=0 by default
    assert len(stats["points"]["mart.daily"]) == 1
    batches = query(applied, "SELECT count(*) FROM step_telemetry WHERE tenant_id = $1 AND kind = 'batch' "
                             "AND model = 'mart.daily'", applied["tenant"])
    assert batches[0][0] == 9  # one record per daily batch
    assert main(["runs", "--stats"]) == 0
    table = capsys.readouterr().out
    assert "mart.daily" in table and "p95" in table and "$0.0000" in table


def test_docs_chart_runtime_and_cost_of_the_models_given(applied: dict[str, Any],
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    stats_file = applied["tmp"] / "stats.json"
    assert main(["runs", "--stats", "--json", "--model", "mart.daily"]) == 0
    stats_file.write_text(capsys.readouterr().out, "utf-8")
    out = applied["tmp"] / "site"
    assert main(["docs", str(applied["repo"]), "--out", str(out), "--telemetry", str(stats_file)]) == 0
    daily = (out / "models" / "mart.daily.html").read_text("utf-8")
    assert "<h2>Runtime and cost</h2>" in daily and daily.count('<svg class="runtime"') == 1
    assert "1 step · p50 " in daily and "on duckdb" in daily
    assert "Runtime and cost" not in (out / "models" / "raw.events.html").read_text("utf-8")  # no data, no chart
    again = applied["tmp"] / "site2"
    assert main(["docs", str(applied["repo"]), "--out", str(again), "--telemetry", str(stats_file)]) == 0
    assert (again / "models" / "mart.daily.html").read_bytes() == daily.encode()  # the same numbers, the same bytes
    bad = applied["tmp"] / "bad.json"
    bad.write_text('{"models": [{"model": "m"}]}', "utf-8")
    capsys.readouterr()
    assert main(["docs", str(applied["repo"]), "--out", str(applied["tmp"] / "site3"), "--telemetry", str(bad)]) == 2
    assert "not the JSON of 'ironlayer runs --stats --json'" in capsys.readouterr().err


def test_usage_shows_the_month_against_the_tier(applied: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["usage"]) == 0
    out = capsys.readouterr().out
    assert f"Usage of {applied['tenant']} since " in out and "(community tier, subscription none)" in out
    assert f"steps    [{'.' * 40}]   0%  4 of 1,000" in out  # 4 of 1,000 rounds to no mark
    assert "plans    1 generated" in out and "no Stripe customer" in out
    assert main(["usage", "--json"]) == 0
    usage = json.loads(capsys.readouterr().out)
    assert (usage["tier"], usage["monthly_steps"], usage["usage"]["steps"], usage["usage"]["plans"]) == (
        "community", 1000, 4, 1)


def test_billing_customer_and_send_bill_the_tenants_usage(applied: dict[str, Any], stripe_api: StripeStandIn,
                                                          capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    customer = f"cus_{applied['tenant']}"
    assert main(["billing", "customer", customer]) == 0
    assert capsys.readouterr().out.strip() == f"{customer} now pays for tenant {applied['tenant']}"
    assert main(["billing", "customer", "nope"]) == 2
    assert "is not a Stripe customer ID" in capsys.readouterr().err
    assert main(["billing", "send", "--tenant", applied["tenant"]]) == 2
    assert "IRONLAYER_STRIPE_API_KEY is not set" in capsys.readouterr().err
    monkeypatch.setenv("IRONLAYER_STRIPE_API_KEY", "sk_test_cli")
    monkeypatch.setenv("IRONLAYER_STRIPE_API_BASE", stripe_api.url)
    assert main(["billing", "send", "--tenant", applied["tenant"]]) == 0
    pending = query(applied, "SELECT kind, status FROM usage_events WHERE tenant_id = $1 ORDER BY id",
                    applied["tenant"])
    assert {row[1] for row in pending} == {"sent"} and len(stripe_api.requests) == len(pending)
    assert {dict(r.form)["payload[stripe_customer_id]"] for r in stripe_api.requests} == {customer}
    assert capsys.readouterr().out.startswith(f"sent {len(pending)}, to retry 0")
    assert main(["usage"]) == 0
    assert "no Stripe customer" not in capsys.readouterr().out
