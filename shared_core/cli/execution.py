"""`ironlayer apply`, `backfill`, `runs`, `status` and `db`: execution against DuckDB and the state store.

The state store is PostgreSQL at IRONLAYER_DATABASE_URL, or else an embedded server started under
`.ironlayer/` (IRONLAYER_HOME) and reused by later commands; `ironlayer db stop` stops it. Local runs
use the tenant IRONLAYER_TENANT (default `local`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from shared_core.cli import _runtime
from shared_core.core.errors import PlanError

if TYPE_CHECKING:
    from shared_core.adapters.local_git import LocalGitSource
    from shared_core.core.planning.intervals import Range
    from shared_core.core.planning.plan import Plan
    from shared_core.ports import PlanSummaryRow, RunRow, StateStore
    from shared_core.services.apply import StepOutcome

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def add_commands(commands: _runtime.CommandParsers) -> None:
    apply = commands.add_parser("apply", help="execute a plan on DuckDB, recording runs and watermarks")
    apply.add_argument("plan", help="plan JSON file (from ironlayer plan --out)")
    apply.add_argument("--repo", required=True, help="the git repository the plan was made from")
    _execution_options(apply)

    backfill = commands.add_parser(
        "backfill", help="plan and apply exactly [start, end) of one incremental model, replacing what those "
        "batches wrote (running it again re-runs it)")
    backfill.add_argument("repo")
    backfill.add_argument("model")
    backfill.add_argument("--start", required=True)
    backfill.add_argument("--end", required=True)
    backfill.add_argument("--ref", default="HEAD")
    backfill.add_argument("--downstream", action="store_true",
                          help="also refresh, in the same plan, every model downstream that reads what re-ran")
    _execution_options(backfill)

    runs = commands.add_parser("runs", help="list runs (one per step and batch)")
    runs.add_argument("--plan", help="only the runs of this plan ID (a prefix is enough)")
    runs.add_argument("--stats", action="store_true",
                      help="per model: executed steps, p50/p95 runtime, rows written, estimated cost")
    runs.add_argument("--model", help="with --stats: only this model")
    runs.add_argument("--json", action="store_true", help="with --stats: print JSON (the GET /api/telemetry body)")
    commands.add_parser("status", help="plans, their status and the watermark ledger")
    db = commands.add_parser("db", help="the embedded PostgreSQL server")
    db.add_argument("action", choices=["status", "stop"])


def _execution_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--warehouse", help="DuckDB file (default .ironlayer/warehouse.duckdb)")
    parser.add_argument("--auto-approve", action="store_true", help="apply without asking for confirmation")
    parser.add_argument("--parallelism", type=int, default=4, help="steps run at once within a wave (default 4)")
    parser.add_argument("--lock-timeout", type=float, default=60.0, help="seconds to wait for a locked range")


def cmd_apply(args: argparse.Namespace) -> int:
    from shared_core.adapters.local_git import LocalGitSource
    from shared_core.core.planning.plan_codec import load_plan

    plan = load_plan(Path(args.plan).read_text("utf-8"), args.plan)
    return _apply(args, plan, LocalGitSource(args.repo))


def cmd_backfill(args: argparse.Namespace) -> int:
    from shared_core.adapters.caches.analysis import CachedAnalyzer
    from shared_core.adapters.local_git import LocalGitSource
    from shared_core.core.errors import SourceError
    from shared_core.core.project.headers import parse_instant
    from shared_core.services.plans import plan_backfill

    try:
        start, end = parse_instant(args.start), parse_instant(args.end)
    except ValueError:
        raise SourceError(f"--start/--end '{args.start}'/'{args.end}' are not dates; use YYYY-MM-DD") from None
    source = LocalGitSource(args.repo)
    ledger = _runtime.with_store(lambda store: store.load_ledger(_runtime.tenant())) if args.downstream else None
    plan, _ = plan_backfill(source, args.ref, args.model, start, end,
                            analyzer=CachedAnalyzer(source.git_dir / "ironlayer" / "cache"),
                            downstream=args.downstream, ledger=ledger)
    # planned now: its base is what is deployed now; a backfill asked for again runs again
    return _apply(args, plan, source, record_base=True, rerun=True)


def _apply(args: argparse.Namespace, plan: Plan, source: LocalGitSource, *, record_base: bool = False,
           rerun: bool = False) -> int:
    from shared_core.adapters.caches.analysis import CachedAnalyzer
    from shared_core.adapters.engines.duckdb import DuckDBExecutor
    from shared_core.cli.render import apply_progress, render_apply_summary, render_plan
    from shared_core.services.apply import RunOptions, run_apply, verify_plan

    if args.parallelism < 1:
        raise PlanError(f"--parallelism must be at least 1, got {args.parallelism}")
    console = _runtime.console()
    verified = verify_plan(plan, source, CachedAnalyzer(source.git_dir / "ironlayer" / "cache"), where=args.repo)
    render_plan(plan, console)
    if not plan.steps and not verified.tests:
        console.print("\nNothing to apply.")
        return EXIT_OK
    if not args.auto_approve:
        if not sys.stdin.isatty():
            raise PlanError("refusing to apply without confirmation: no terminal to ask; pass --auto-approve")
        what = "these steps" if plan.steps else f"the changed tests of {', '.join(sorted(verified.tests))}"
        answer = console.input(f"\nDo you want to apply {what}? Only 'yes' will be accepted: ")
        if answer.strip() != "yes":
            console.print("Apply cancelled; nothing was run.")
            return EXIT_FAILED
    warehouse = Path(args.warehouse) if args.warehouse else _runtime.home() / "warehouse.duckdb"
    executor = DuckDBExecutor(warehouse, wait_seconds=args.lock_timeout)
    options = RunOptions(tenant=_runtime.tenant(), parallelism=args.parallelism, lock_timeout=args.lock_timeout,
                         rerun=rerun)

    async def run(store: StateStore) -> list[StepOutcome]:
        with apply_progress(console, len(plan.steps)) as on_event:
            return await run_apply(verified, store, executor, options, actor=_runtime.actor(), on_event=on_event,
                                   record_base=record_base)

    try:
        outcomes = _runtime.with_store(run)
    finally:
        executor.close()
    render_apply_summary(console, outcomes, warehouse)
    return EXIT_OK if all(o.status in ("success", "done") for o in outcomes) else EXIT_FAILED


def cmd_runs(args: argparse.Namespace) -> int:
    from rich.table import Table

    from shared_core.services.plans import find_plan_id

    tenant = _runtime.tenant()
    if args.stats:
        return _run_stats(args, tenant)

    async def fetch(store: StateStore) -> list[RunRow]:
        plan_id = await find_plan_id(store, tenant, args.plan) if args.plan else None
        return await store.list_runs(tenant, plan_id)

    rows = _runtime.with_store(fetch)
    table = Table("run", "plan", "model", "batch", "attempt", "status", "rows", "error", box=None)
    for row in rows:
        batch = ""
        if row["batch_start"]:
            batch = f"{row['batch_start']:%Y-%m-%d %H:%M} -> {row['batch_end']:%Y-%m-%d %H:%M}"
        table.add_row(str(row["run_id"]), row["plan_id"][:12], row["model"], batch, str(row["attempt"]),
                      row["status"], "" if row["rows_written"] is None else str(row["rows_written"]),
                      (row["error"] or "")[:80])
    _runtime.console().print(table if rows else "No runs yet.")
    return EXIT_OK


def _run_stats(args: argparse.Namespace, tenant: str) -> int:
    """`runs --stats`: the telemetry of executed steps per model (`shared_core.services.telemetry`)."""
    from rich.table import Table

    from shared_core.services.telemetry import TelemetrySummary, telemetry_summary

    async def fetch(store: StateStore) -> TelemetrySummary:
        return await telemetry_summary(store, tenant, args.model)

    summary = _runtime.with_store(fetch)
    if args.json:
        print(json.dumps({"tenant_id": tenant, **summary}, indent=2, sort_keys=True))
        return EXIT_OK
    table = Table("model", "engine", "steps", "failed", "p50", "p95", "rows", "est. cost", "last run", box=None)
    for row in summary["models"]:
        table.add_row(row["model"], row["engine"], str(row["steps"]), str(row["failed"]), f"{row['p50_seconds']:.2f}s",
                      f"{row['p95_seconds']:.2f}s", f"{row['rows_written']:,}", f"${row['cost_usd']:.4f}",
                      row["last_run"][:16].replace("T", " "))
    _runtime.console().print(table if summary["models"] else "No executed steps recorded yet.")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from rich.table import Table

    from shared_core.core.project.headers import format_instant

    tenant = _runtime.tenant()

    async def fetch(store: StateStore) -> tuple[list[PlanSummaryRow], dict[str, list[Range]]]:
        return await store.list_plans(tenant), await store.load_ledger(tenant)

    plans, ledger = _runtime.with_store(fetch)
    console = _runtime.console()
    table = Table("plan", "base", "target", "as of", "status", box=None, title=f"Plans of tenant {tenant}")
    for plan in plans:
        table.add_row(plan["plan_id"][:12], plan["base"][:12], plan["target"][:12],
                      format_instant(plan["as_of"]), plan["status"])
    console.print(table if plans else "No plans yet.")
    ledger_table = Table("model", "completed ranges", box=None, title="Watermark ledger")
    for model, ranges in sorted(ledger.items()):
        ledger_table.add_row(model, ", ".join(f"[{format_instant(s)}, {format_instant(e)})" for s, e in ranges))
    console.print(ledger_table if ledger else "The ledger is empty.")
    return EXIT_OK


def cmd_db(args: argparse.Namespace) -> int:
    from shared_core.adapters.postgres.embedded import embedded_server_status, stop_embedded_server

    if args.action == "stop":
        print("stopped the embedded PostgreSQL" if stop_embedded_server(_runtime.home()) else "the embedded "
              "PostgreSQL was not running")
    else:
        url = embedded_server_status(_runtime.home())
        print(f"running at {url}" if url else "not running")
    return EXIT_OK


COMMANDS = {"apply": cmd_apply, "backfill": cmd_backfill, "runs": cmd_runs, "status": cmd_status, "db": cmd_db}
