"""`ironlayer apply`, `backfill`, `run`, `runs`, `status` and `db`: execution against DuckDB or Databricks and the
state store.

`--engine databricks` reads the workspace as the Databricks CLI and dbt-databricks do: DATABRICKS_HOST,
DATABRICKS_HTTP_PATH (the SQL warehouse), and DATABRICKS_TOKEN or, for a service principal,
DATABRICKS_CLIENT_ID and DATABRICKS_CLIENT_SECRET; `--catalog` (default IRONLAYER_DATABRICKS_CATALOG, else
the workspace's default catalog) is where models are written. All of it through `Settings`.

The state store is PostgreSQL at IRONLAYER_DATABASE_URL, or else the project's embedded server (under the
repository's git directory, `shared_core.settings`), started on demand and reused by later commands;
`ironlayer db stop` stops it. Local runs use the tenant IRONLAYER_TENANT (default `local`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from shared_core.cli import _runtime
from shared_core.core.errors import PlanError
from shared_core.core.wording import plural

if TYPE_CHECKING:
    from collections.abc import Mapping

    from shared_core.adapters.local_git import LocalGitSource
    from shared_core.core.planning.intervals import Range
    from shared_core.core.planning.plan import Plan
    from shared_core.ports import Executor, PlanSummaryRow, RunRow, StateStore
    from shared_core.services.apply import StepOutcome

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
_PROJECT_HELP = "the project (a git repository) whose local state to read (default: the current directory's)"


def add_commands(commands: _runtime.CommandParsers) -> None:
    example = _runtime.examples
    apply = commands.add_parser(
        "apply", help="execute a plan on DuckDB or Databricks, recording runs and watermarks",
        epilog=example("ironlayer apply plan.json --repo . --auto-approve",
                       "ironlayer apply plan.json --repo . --warehouse dev.duckdb --parallelism 8",
                       "ironlayer apply plan.json --repo . --engine databricks --catalog analytics"))
    apply.add_argument("plan", help="plan JSON file (from ironlayer plan --out)")
    apply.add_argument("--repo", required=True, help="the git repository the plan was made from")
    _execution_options(apply)

    backfill = commands.add_parser(
        "backfill", help="plan and apply exactly [start, end) of one incremental model, replacing what those "
        "batches wrote (running it again re-runs it)",
        epilog=example("ironlayer backfill . gold.daily_revenue --start 2024-01-01 --end 2024-02-01",
                       "ironlayer backfill . silver.orders --start 2024-01-01 --end 2024-01-08 --downstream"))
    backfill.add_argument("repo")
    backfill.add_argument("model")
    backfill.add_argument("--start", required=True)
    backfill.add_argument("--end", required=True)
    backfill.add_argument("--ref", default="HEAD")
    backfill.add_argument("--downstream", action="store_true",
                          help="also refresh, in the same plan, every model downstream that reads what re-ran")
    _execution_options(backfill)

    run = commands.add_parser(
        "run", help="plan and apply what has come due on the models' cron schedules (like the timer does)",
        epilog=example("ironlayer run --auto-approve", "ironlayer run ~/models --ref main --auto-approve   # in cron"))
    run.add_argument("repo", nargs="?", default=".", help="the git repository (default: the current directory)")
    run.add_argument("--ref", default="HEAD", help="the commit whose models run (default HEAD)")
    run.add_argument("--now", help="UTC time to run as (default: the clock), e.g. 2024-03-01T06:00:00Z")
    _execution_options(run)

    runs = commands.add_parser("runs", help="list runs (one per step and batch)",
                               epilog=example("ironlayer runs --limit 20", "ironlayer runs --plan 3f2a9c --json"))
    runs.add_argument("repo", nargs="?", help=_PROJECT_HELP)
    runs.add_argument("--plan", help="only the runs of this plan ID (a prefix is enough)")
    runs.add_argument("--limit", type=int, default=200, help="the newest N runs (default 200)")
    runs.add_argument("--stats", action="store_true",
                      help="per model: executed steps, p50/p95 runtime, rows written, estimated cost")
    runs.add_argument("--model", help="with --stats: only this model")
    runs.add_argument("--json", action="store_true",
                      help="print the runs as JSON (with --stats: the GET /api/telemetry body)")
    status = commands.add_parser("status", help="plans, their status and the watermark ledger",
                                 epilog=example("ironlayer status", "ironlayer status ~/models --json"))
    status.add_argument("repo", nargs="?", help=_PROJECT_HELP)
    status.add_argument("--json", action="store_true", help="print the plans and the ledger as JSON")
    db = commands.add_parser("db", help="the project's embedded PostgreSQL server",
                             epilog=example("ironlayer db status", "ironlayer db stop"))
    db.add_argument("action", choices=["status", "stop"])
    db.add_argument("repo", nargs="?", help=_PROJECT_HELP)


def _execution_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--engine", choices=["duckdb", "databricks"],
                        help="where models run (default IRONLAYER_ENGINE, else duckdb)")
    parser.add_argument("--warehouse", help="DuckDB file (default: warehouse.duckdb in the project's state folder)")
    parser.add_argument("--catalog", help="Databricks catalog written to (default IRONLAYER_DATABRICKS_CATALOG, "
                                          "else the workspace's default catalog)")
    parser.add_argument("--auto-approve", action="store_true", help="apply without asking for confirmation")
    parser.add_argument("--parallelism", type=int, default=4, help="steps run at once within a wave (default 4)")
    parser.add_argument("--lock-timeout", type=float, default=60.0, help="seconds to wait for a locked range")


def cmd_apply(args: argparse.Namespace) -> int:
    from shared_core.adapters.local_git import LocalGitSource
    from shared_core.core.planning.plan_codec import load_plan

    plan = load_plan(_runtime.read_text(Path(args.plan), "plan file"), args.plan)
    return _apply(args, plan, LocalGitSource(args.repo))


def cmd_backfill(args: argparse.Namespace) -> int:
    from shared_core.adapters.caches.analysis import CachedAnalyzer
    from shared_core.adapters.local_git import LocalGitSource
    from shared_core.services.plans import plan_backfill

    start, end = _runtime.parse_time(args.start, "--start"), _runtime.parse_time(args.end, "--end")
    source = LocalGitSource(args.repo)
    ledger = _runtime.with_store(lambda store: store.load_ledger(_runtime.tenant())) if args.downstream else None
    plan, _ = plan_backfill(source, args.ref, args.model, start, end,
                            analyzer=CachedAnalyzer(source.git_dir / "ironlayer" / "cache"),
                            downstream=args.downstream, ledger=ledger)
    # planned now: its base is what is deployed now; a backfill asked for again runs again
    return _apply(args, plan, source, record_base=True, rerun=True)


def cmd_run(args: argparse.Namespace) -> int:
    """Plan and apply the catch-up of every model whose cron fired with batches missing (the schedule's rule)."""
    from shared_core.adapters.caches.analysis import CachedAnalyzer
    from shared_core.adapters.local_git import LocalGitSource
    from shared_core.core.project.headers import parse_instant
    from shared_core.services.jobs import JobPolicy, due_schedule_jobs
    from shared_core.services.plans import plan_catchup

    now = _runtime.parse_time(args.now, "--now") if args.now else datetime.now(UTC).replace(second=0, microsecond=0)
    source = LocalGitSource(args.repo)
    settings, tenant = _runtime.settings(), _runtime.tenant()
    policy = JobPolicy(args.auto_approve, settings.approval_ttl_hours, settings.step_retries)
    analyzer = CachedAnalyzer(source.git_dir / "ironlayer" / "cache")
    jobs = _runtime.with_store(lambda store: due_schedule_jobs(
        source, store, analyzer, tenant_id=tenant, repository=str(args.repo), branch=args.ref, now=now,
        policy=policy))
    if not jobs:
        _say_nothing_runs(args.ref, source, tenant, now)
        return EXIT_OK
    code = EXIT_OK
    for job in jobs:
        models = job.models or ()
        print(f"due: {', '.join(models)} (schedule fired at {job.as_of})")
        ledger = _runtime.with_store(partial(_load_ledger, tenant=tenant, models=models))
        plan = plan_catchup(source, job.target, models, as_of=parse_instant(job.as_of or ""), ledger=ledger,
                            analyzer=analyzer)
        code = max(code, _apply(args, plan, source, record_base=True))  # planned now, as backfill
        if code == EXIT_INTERRUPTED:
            break
    return code


def _say_nothing_runs(ref: str, source: LocalGitSource, tenant: str, now: datetime) -> None:
    """Why `run` found nothing to do: no schedule, nothing due, or due models that wait for an approved plan."""
    from shared_core.core.planning.schedules import due_models
    from shared_core.core.project.headers import format_instant
    from shared_core.services.project import project_at

    project = project_at(source, ref)
    scheduled = [m for m in project.models.values() if m.header.is_incremental and m.header.cron]
    if not scheduled:
        print(f"nothing to run: no incremental model at {ref} has a schedule; add one to a model's header, "
              "e.g. `-- cron: 0 3 * * *` (03:00 UTC daily)")
        return
    waiting = [d.name for d in due_models(project, _runtime.with_store(partial(_load_ledger, tenant=tenant)), now)]
    if waiting:
        one = len(waiting) == 1
        print(f"nothing ran: {', '.join(waiting)} {'is' if one else 'are'} due at {format_instant(now)} but "
              f"{'waits' if one else 'wait'} for an approved plan (the version at {ref} is not the deployed one, "
              f"or a run of it is in progress); plan and apply {ref} first")
        return
    one = len(scheduled) == 1
    print(f"nothing is due at {format_instant(now)}: {plural(len(scheduled), 'scheduled model')} "
          f"{'has' if one else 'have'} every complete batch up to {'its' if one else 'their'} latest fire")


async def _load_ledger(store: StateStore, *, tenant: str, models: Sequence[str] | None = None
                       ) -> dict[str, list[Range]]:
    return await store.load_ledger(tenant, list(models) if models is not None else None)
def _open_executor(args: argparse.Namespace) -> tuple[Executor, str]:
    """The executor `--engine` asks for and how the summary names its warehouse.

    Raises:
        PlanError: a Databricks setting is missing, or a DuckDB option is given for Databricks.
        ExecutionError: the warehouse cannot be used.
    """
    settings = _runtime.settings()
    engine = args.engine or settings.engine
    if engine == "duckdb":
        from shared_core.adapters.engines.duckdb import DuckDBExecutor

        if args.catalog:
            raise PlanError("--catalog is for --engine databricks; drop it or choose that engine")
        warehouse = Path(args.warehouse) if args.warehouse else _runtime.home() / "warehouse.duckdb"
        return DuckDBExecutor(warehouse, wait_seconds=args.lock_timeout), str(warehouse)
    from shared_core.adapters.engines.databricks import Credentials, DatabricksExecutor, Target

    if args.warehouse:
        raise PlanError("--warehouse is the DuckDB file; with --engine databricks set DATABRICKS_HTTP_PATH instead")
    missing = [name for name, value in (("DATABRICKS_HOST", settings.databricks_host),
                                        ("DATABRICKS_HTTP_PATH", settings.databricks_http_path)) if not value]
    if settings.databricks_client_id or settings.databricks_client_secret:
        missing += [name for name, value in (("DATABRICKS_CLIENT_ID", settings.databricks_client_id),
                                             ("DATABRICKS_CLIENT_SECRET", settings.databricks_client_secret))
                    if not value]
        credentials = Credentials(client_id=settings.databricks_client_id,
                                  client_secret=settings.databricks_client_secret,
                                  source="DATABRICKS_CLIENT_ID/DATABRICKS_CLIENT_SECRET")
    else:
        missing += [] if settings.databricks_token else ["DATABRICKS_TOKEN (or DATABRICKS_CLIENT_ID and "
                                                         "DATABRICKS_CLIENT_SECRET)"]
        credentials = Credentials(token=settings.databricks_token, source="DATABRICKS_TOKEN")
    if missing:
        raise PlanError(f"--engine databricks needs {', '.join(missing)} in the environment")
    catalog = args.catalog or settings.databricks_catalog or None
    executor = DatabricksExecutor(Target(settings.databricks_host, settings.databricks_http_path, catalog),
                                  credentials, tenant=_runtime.tenant())
    return executor, f"Databricks {settings.databricks_host}{settings.databricks_http_path}, catalog {executor.catalog}"


def _apply(args: argparse.Namespace, plan: Plan, source: LocalGitSource, *, record_base: bool = False,
           rerun: bool = False) -> int:
    from shared_core.adapters.caches.analysis import CachedAnalyzer
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
    executor, warehouse = _open_executor(args)
    options = RunOptions(tenant=_runtime.tenant(), parallelism=args.parallelism, lock_timeout=args.lock_timeout,
                         rerun=rerun, engine=args.engine or _runtime.settings().engine)

    async def run(store: StateStore) -> list[StepOutcome]:
        with apply_progress(console, plan.steps) as on_event:
            return await run_apply(verified, store, executor, options, actor=_runtime.actor(), on_event=on_event,
                                   record_base=record_base)

    try:
        outcomes = _runtime.with_store(run)
    except KeyboardInterrupt:
        _report_interrupted(plan, executor, warehouse)
        return EXIT_INTERRUPTED
    finally:
        executor.close()
    render_apply_summary(console, outcomes, warehouse)
    return EXIT_OK if all(o.status in ("success", "done") for o in outcomes) else EXIT_FAILED


def _report_interrupted(plan: Plan, executor: Executor, warehouse: str) -> None:
    """Say what an interrupted apply left: the batches committed in the warehouse, and that re-running resumes."""
    from shared_core.cli.render import step_batch_count

    total = sum(step_batch_count(step) for step in plan.steps)
    markers = executor.committed_batches(sorted({step.model for step in plan.steps}))
    committed = sum(1 for batches in markers.values() for batch in batches if batch.plan_id == plan.plan_id)
    print(f"\ninterrupted: {committed} of {plural(total, 'batch')} of plan {plan.plan_id[:12]} are committed in "
          f"{warehouse}; the rest did not run, and the plan is marked cancelled. Run the same command "
          "again to resume: committed batches are not run again.", file=sys.stderr)


def cmd_runs(args: argparse.Namespace) -> int:
    from shared_core.services.plans import find_plan_id

    if args.limit < 1:
        raise PlanError(f"--limit must be at least 1, got {args.limit}")
    tenant = _runtime.tenant()
    if args.stats:
        return _run_stats(args, tenant)

    async def fetch(store: StateStore) -> list[RunRow]:
        plan_id = await find_plan_id(store, tenant, args.plan) if args.plan else None
        return await store.list_runs(tenant, plan_id, args.limit)

    rows = _runtime.with_store(fetch)
    if args.json:
        print(json.dumps([_jsonable(row) for row in rows], indent=2, sort_keys=True))
        return EXIT_OK
    from rich.table import Table

    table = Table("run", "plan", "model", "batch", "attempt", "status", "rows", "error", box=None)
    for row in rows:
        batch = ""
        if row["batch_start"]:
            batch = f"{row['batch_start']:%Y-%m-%d %H:%M} -> {row['batch_end']:%Y-%m-%d %H:%M}"
        table.add_row(str(row["run_id"]), row["plan_id"][:12], row["model"], batch, str(row["attempt"]),
                      row["status"], "" if row["rows_written"] is None else str(row["rows_written"]),
                      (row["error"] or "")[:80])
    console = _runtime.console()
    console.print(table if rows else "No runs yet.")
    if len(rows) == args.limit:
        console.print(f"(the newest {plural(args.limit, 'run')}; --limit N shows more)")
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
    from shared_core.core.project.headers import format_instant

    tenant = _runtime.tenant()

    async def fetch(store: StateStore) -> tuple[list[PlanSummaryRow], dict[str, list[Range]]]:
        return await store.list_plans(tenant), await store.load_ledger(tenant)

    plans, ledger = _runtime.with_store(fetch)
    if args.json:
        print(json.dumps({
            "tenant": tenant,
            "plans": [_jsonable(plan) for plan in plans],
            "ledger": {model: [[format_instant(s), format_instant(e)] for s, e in ranges]
                       for model, ranges in sorted(ledger.items())},
        }, indent=2, sort_keys=True))
        return EXIT_OK
    from rich.table import Table

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


def _jsonable(row: Mapping[str, object]) -> dict[str, object]:
    """A store row with its times as ISO 8601 UTC text."""
    from shared_core.core.project.headers import format_instant

    return {key: format_instant(value) if isinstance(value, datetime) else value for key, value in row.items()}


def cmd_db(args: argparse.Namespace) -> int:
    from shared_core.adapters.postgres.embedded import embedded_server_status, stop_embedded_server

    home = _runtime.home()
    if args.action == "stop":
        stopped = stop_embedded_server(home)
        print(f"stopped the embedded PostgreSQL under {home}" if stopped else
              f"the embedded PostgreSQL under {home} was not running")
    else:
        url = embedded_server_status(home)
        print(f"running at {url} (under {home})" if url else f"not running (its folder: {home})")
    return EXIT_OK


COMMANDS = {"apply": cmd_apply, "backfill": cmd_backfill, "run": cmd_run, "runs": cmd_runs, "status": cmd_status,
            "db": cmd_db}
