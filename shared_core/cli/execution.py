"""`ironlayer apply`, `backfill`, `runs`, `status` and `db`: execution against DuckDB and the state store.

The state store is PostgreSQL at IRONLAYER_DATABASE_URL, or else an embedded server started under
`.ironlayer/` (IRONLAYER_HOME) and reused by later commands; `ironlayer db stop` stops it. Local runs
use the tenant IRONLAYER_TENANT (default `local`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from shared_core.core.errors import PlanError, StateError

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def home() -> Path:
    return Path(os.environ.get("IRONLAYER_HOME", ".ironlayer"))


def tenant() -> str:
    return os.environ.get("IRONLAYER_TENANT", "local")


def store_urls(*, start: bool = True) -> tuple[str, str | None] | None:
    """(application URL, migration URL) of the state store, or None when none is configured or running.

    IRONLAYER_DATABASE_URL connects as the application role; IRONLAYER_MIGRATION_DATABASE_URL (the owner
    role) migrates. Without them, the embedded server: its superuser migrates, `ironlayer_app` connects.
    """
    from shared_core.adapters.postgres.store import app_url_for

    url = os.environ.get("IRONLAYER_DATABASE_URL")
    if url:
        return url, os.environ.get("IRONLAYER_MIGRATION_DATABASE_URL") or None
    from shared_core.adapters.postgres.embedded import embedded_server_status, ensure_embedded_server

    owner: str | None = ensure_embedded_server(home()) if start else embedded_server_status(home())
    return (app_url_for(owner), owner) if owner else None


def store_url(*, start: bool = True) -> str | None:
    """The application URL of the state store (see `store_urls`)."""
    urls = store_urls(start=start)
    return urls[0] if urls else None


def migration_url() -> str:
    """The URL migrations run with: the owner role, else the configured URL, else the embedded superuser."""
    url = os.environ.get("IRONLAYER_MIGRATION_DATABASE_URL") or os.environ.get("IRONLAYER_DATABASE_URL")
    if url:
        return url
    from shared_core.adapters.postgres.embedded import ensure_embedded_server

    return ensure_embedded_server(home())


def with_store(action: Callable[[Any], Awaitable[Any]], *, urls: tuple[str, str | None] | None = None) -> Any:
    """Run `action(store)` on the tenant-bound state store (migrating first when the schema is behind)."""
    import asyncio

    from shared_core.adapters.postgres.store import open_store

    resolved = urls or store_urls()
    assert resolved is not None

    async def run() -> Any:
        store = await open_store(resolved[0], resolved[1], tenant())
        try:
            return await action(store)
        finally:
            await store.close()

    return asyncio.run(run())


def add_commands(commands: Any) -> None:
    apply = commands.add_parser("apply", help="execute a plan on DuckDB, recording runs and watermarks")
    apply.add_argument("plan", help="plan JSON file (from ironlayer plan --out)")
    apply.add_argument("--repo", required=True, help="the git repository the plan was made from")
    _execution_options(apply)

    backfill = commands.add_parser("backfill", help="plan and apply exactly [start, end) of one incremental model")
    backfill.add_argument("repo")
    backfill.add_argument("model")
    backfill.add_argument("--start", required=True)
    backfill.add_argument("--end", required=True)
    backfill.add_argument("--ref", default="HEAD")
    _execution_options(backfill)

    runs = commands.add_parser("runs", help="list runs (one per step and batch)")
    runs.add_argument("--plan", help="only the runs of this plan ID (a prefix is enough)")
    commands.add_parser("status", help="plans, their status and the watermark ledger")
    db = commands.add_parser("db", help="the embedded PostgreSQL server")
    db.add_argument("action", choices=["status", "stop"])


def _execution_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--warehouse", help="DuckDB file (default .ironlayer/warehouse.duckdb)")
    parser.add_argument("--auto-approve", action="store_true", help="apply without asking for confirmation")
    parser.add_argument("--parallelism", type=int, default=4, help="steps run at once within a wave (default 4)")
    parser.add_argument("--lock-timeout", type=float, default=60.0, help="seconds to wait for a locked range")


def cmd_apply(args: argparse.Namespace) -> int:
    from shared_core.core.planning.plan import load_plan

    plan = load_plan(Path(args.plan).read_text("utf-8"), args.plan)
    return _apply(args, plan)


def cmd_backfill(args: argparse.Namespace) -> int:
    from shared_core.adapters.caches.analysis import CachedAnalyzer
    from shared_core.adapters.local_git import LocalGitSource
    from shared_core.core.errors import SourceError
    from shared_core.core.planning.planner import build_backfill_plan
    from shared_core.core.project.headers import parse_instant
    from shared_core.core.project.loading import load_commit

    source = LocalGitSource(args.repo)
    sha = source.resolve(args.ref)
    commit = load_commit(source, sha)
    try:
        start, end = parse_instant(args.start), parse_instant(args.end)
    except ValueError:
        raise SourceError(f"--start/--end '{args.start}'/'{args.end}' are not dates; use YYYY-MM-DD") from None
    plan = build_backfill_plan(
        commit.project, commit.project.resolve_name(args.model), start, end, target_sha=sha,
        settings=commit.config.planner, analyzer=CachedAnalyzer(source.git_dir / "ironlayer" / "cache"),
    )
    args.repo_source = source
    return _apply(args, plan)


def _apply(args: argparse.Namespace, plan: dict[str, Any]) -> int:
    from rich.console import Console

    from shared_core.adapters.caches.analysis import CachedAnalyzer
    from shared_core.adapters.engines.duckdb import DuckDBExecutor
    from shared_core.adapters.local_git import LocalGitSource
    from shared_core.cli.render import render_plan
    from shared_core.core.planning.plan import plan_to_json
    from shared_core.core.project.loading import load_commit
    from shared_core.core.sql.canonical import resolve_canonical
    from shared_core.services.apply import RunOptions, apply_plan

    if args.parallelism < 1:
        raise PlanError(f"--parallelism must be at least 1, got {args.parallelism}")
    console = Console(highlight=False, soft_wrap=True)
    source = getattr(args, "repo_source", None) or LocalGitSource(args.repo)
    target = load_commit(source, source.resolve(plan["target"]))
    project = target.project
    step_models = sorted({s["model"] for s in plan["steps"]})
    missing = [m for m in step_models if m not in project]
    if missing:
        raise PlanError(f"plan step model {missing[0]} is not in {args.repo} at {plan['target'][:12]}; "
                        "apply the plan to the repository it was made from")
    analyses = CachedAnalyzer(source.git_dir / "ironlayer" / "cache").analyze_many(
        [(project[m].key, project[m].path, project[m].text) for m in step_models]
    )
    canonical = {m: resolve_canonical(analyses[project[m].key], project[m].ref_targets) for m in step_models}
    for step in plan["steps"]:
        model = project[step["model"]]
        if model.content_hash(analyses[model.key]) != step["model_hash"]:
            raise PlanError(f"{model.path}: {model.name} differs from the version the plan was made from; re-plan")
    render_plan(plan, console)
    if not plan["steps"]:
        console.print("\nNothing to apply.")
        return EXIT_OK
    if not args.auto_approve:
        if not sys.stdin.isatty():
            raise PlanError("refusing to apply without confirmation: no terminal to ask; pass --auto-approve")
        answer = console.input("\nDo you want to apply these steps? Only 'yes' will be accepted: ")
        if answer.strip() != "yes":
            console.print("Apply cancelled; nothing was run.")
            return EXIT_FAILED
    warehouse = Path(args.warehouse) if args.warehouse else home() / "warehouse.duckdb"
    executor = DuckDBExecutor(warehouse, wait_seconds=args.lock_timeout)
    options = RunOptions(tenant=tenant(), parallelism=args.parallelism, lock_timeout=args.lock_timeout)
    text = plan_to_json(plan)

    async def run(store: Any) -> Any:
        from shared_core.cli.security import _actor, record_audit

        await store.save_plan(options.tenant, plan, text)
        await record_audit(store, options.tenant, actor=_actor(), role="engineer", action="apply.started",
                           target=plan["plan_id"], details={"steps": len(plan["steps"]), "target": plan["target"]})
        outcomes = await _with_progress(console, plan, lambda on_event: apply_plan(
            plan, project, store, executor, options, canonical=canonical, on_event=on_event))
        failed = sum(1 for o in outcomes if o.status in ("failed", "skipped"))
        await record_audit(store, options.tenant, actor=_actor(), role="engineer", action="apply.finished",
                           target=plan["plan_id"], details={"failed_or_skipped": failed, "steps": len(outcomes)})
        return outcomes

    try:
        outcomes = with_store(run)
    finally:
        executor.close()
    _summary(console, outcomes, warehouse)
    return EXIT_OK if all(o.status in ("success", "done") for o in outcomes) else EXIT_FAILED


async def _with_progress(console: Any, plan: dict[str, Any], start: Callable[[Any], Awaitable[Any]]) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    counts = {"done": 0, "failed": 0, "running": 0}
    with Progress(TextColumn("[bold]apply"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
                  TimeElapsedColumn(), console=console, transient=False) as progress:
        task = progress.add_task("", total=len(plan["steps"]))

        def describe() -> str:
            return f"done {counts['done']}  failed {counts['failed']}  running {counts['running']}"

        def on_event(kind: str, step: dict[str, Any], outcome: Any) -> None:
            if kind == "start":
                counts["running"] += 1
            else:
                if outcome.status not in ("skipped",) and counts["running"]:
                    counts["running"] -= 1
                counts["failed" if outcome.status in ("failed", "skipped") else "done"] += 1
                progress.advance(task)
            progress.update(task, description=describe())

        return await start(on_event)


def _summary(console: Any, outcomes: list[Any], warehouse: Path) -> None:
    from rich.table import Table

    table = Table("model", "status", "batches", "rows", "time", "tests", box=None, title="Apply summary")
    by_model: dict[str, list[Any]] = {}
    for outcome in outcomes:
        by_model.setdefault(outcome.model, []).append(outcome)
    for model, items in by_model.items():
        statuses = {o.status for o in items}
        status = next(s for s in ("failed", "skipped", "success", "done") if s in statuses)
        colour = {"failed": "red", "skipped": "yellow", "success": "green", "done": "dim"}[status]
        tests = [t for o in items for t in o.tests]
        failed = [t for t in tests if not t[2]]
        test_text = f"{len(tests) - len(failed)}/{len(tests)} passed" if tests else "-"
        table.add_row(model, f"[{colour}]{status}[/{colour}]", str(sum(o.batches for o in items)),
                      str(sum(o.rows_written for o in items)), f"{sum(o.seconds for o in items):.2f}s", test_text)
    console.print()
    console.print(table)
    for outcome in outcomes:
        for test, severity, passed, failing in outcome.tests:
            if not passed:
                label = "[yellow]warn[/yellow]" if severity == "WARN" else "[red]block[/red]"
                console.print(f"{label} {outcome.model}: {test} failed ({failing} failing)")
    for outcome in outcomes:
        if outcome.error and outcome.status == "failed":
            console.print(f"[red]error[/red] {outcome.model}: {outcome.error}")
    console.print(f"\nWarehouse: {warehouse}")


def cmd_runs(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    async def fetch(store: Any) -> Any:
        plan_id = args.plan
        if plan_id and len(plan_id) < 64:
            matches = [p["plan_id"] for p in await store.list_plans(tenant(), 1000) if p["plan_id"].startswith(plan_id)]
            if len(matches) != 1:
                raise StateError(f"--plan {plan_id} matches {len(matches)} plans; give more of the plan ID")
            plan_id = matches[0]
        return await store.list_runs(tenant(), plan_id)

    rows = with_store(fetch)
    table = Table("run", "plan", "model", "batch", "attempt", "status", "rows", "error", box=None)
    for row in rows:
        batch = ""
        if row["batch_start"]:
            batch = f"{row['batch_start']:%Y-%m-%d %H:%M} -> {row['batch_end']:%Y-%m-%d %H:%M}"
        table.add_row(str(row["run_id"]), row["plan_id"][:12], row["model"], batch, str(row["attempt"]),
                      row["status"], "" if row["rows_written"] is None else str(row["rows_written"]),
                      (row["error"] or "")[:80])
    Console(highlight=False, soft_wrap=True).print(table if rows else "No runs yet.")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from shared_core.core.project.headers import format_instant

    async def fetch(store: Any) -> Any:
        return await store.list_plans(tenant()), await store.load_ledger(tenant())

    plans, ledger = with_store(fetch)
    console = Console(highlight=False, soft_wrap=True)
    table = Table("plan", "base", "target", "as of", "status", box=None, title=f"Plans of tenant {tenant()}")
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
        print("stopped the embedded PostgreSQL" if stop_embedded_server(home()) else "the embedded PostgreSQL "
              "was not running")
    else:
        url = embedded_server_status(home())
        print(f"running at {url}" if url else "not running")
    return EXIT_OK


COMMANDS = {"apply": cmd_apply, "backfill": cmd_backfill, "runs": cmd_runs, "status": cmd_status, "db": cmd_db}
