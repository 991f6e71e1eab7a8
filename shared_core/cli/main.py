"""`ironlayer` commands: plan, show, check, models, lineage.

Exit codes: 0 success, 1 `check` found problems, 2 bad input or usage (one line on stderr naming the
file, field or value and what to do). Nothing is written unless the command succeeds.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from shared_core.core.errors import CoreError

EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_BAD_INPUT, f"error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ironlayer", description="Plan SQL model changes exactly and reproducibly.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    plan = commands.add_parser("plan", help="plan the rebuild of what changed between two commits")
    plan.add_argument("repo", help="path of a git repository (bare or not)")
    plan.add_argument("base", help="base commit (all zeros = nothing deployed yet)")
    plan.add_argument("target", help="target commit")
    plan.add_argument("--as-of", help="UTC date/time incremental batches run up to (default: target commit time)")
    plan.add_argument("--out", help="write the plan JSON to this file")
    plan.add_argument("--watermarks", help="JSON ledger of completed ranges per model")
    plan.add_argument("--json", action="store_true", help="print the plan JSON instead of the summary")
    _cache_options(plan)

    show = commands.add_parser("show", help="show a plan file as a readable summary")
    show.add_argument("plan", help="plan JSON file")

    check = commands.add_parser("check", help="validate every model at a commit")
    check.add_argument("repo")
    check.add_argument("ref", nargs="?", default="HEAD")
    _cache_options(check)

    models = commands.add_parser("models", help="list the models at a commit")
    models.add_argument("repo")
    models.add_argument("--ref", default="HEAD")
    models.add_argument("--json", action="store_true")

    lineage = commands.add_parser("lineage", help="upstream and downstream models of a model")
    lineage.add_argument("repo")
    lineage.add_argument("model")
    lineage.add_argument("--ref", default="HEAD")
    direction = lineage.add_mutually_exclusive_group()
    direction.add_argument("--upstream", action="store_true", help="only upstream models")
    direction.add_argument("--downstream", action="store_true", help="only downstream models")
    commands.add_parser("migrate", help="create or upgrade the state store schema")
    from shared_core.cli.execution import add_commands
    from shared_core.cli.security import add_commands as add_security_commands

    add_commands(commands)
    add_security_commands(commands)

    demo = commands.add_parser("demo", help="build the example repository, plan and apply both of its commits")
    demo.add_argument("--dir", default=".ironlayer/demo", help="where to build the demo (default .ironlayer/demo)")
    demo.add_argument("--examples", help="example project folder (default: examples/shop of this checkout)")
    return parser


def _cache_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache-dir", help="analysis cache folder (default: inside the repository's git dir)")
    parser.add_argument("--no-cache", action="store_true", help="analyze every model again, cache nothing")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit code."""
    args = build_parser().parse_args(argv)
    logging.getLogger("sqlglot").setLevel(logging.ERROR)
    try:
        if args.command in _COMMANDS:
            return _COMMANDS[args.command](args)
        from shared_core.cli.execution import COMMANDS
        from shared_core.cli.security import COMMANDS as SECURITY_COMMANDS

        return {**COMMANDS, **SECURITY_COMMANDS}[args.command](args)
    except CoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:
        print(f"error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted; nothing was written", file=sys.stderr)
        return 130


def _analyzer(args: argparse.Namespace, source: Any) -> Any:
    from shared_core.adapters.caches.analysis import CachedAnalyzer

    return CachedAnalyzer(_cache_dir(args, source))


def _cache_dir(args: argparse.Namespace, source: Any) -> Path | None:
    """The cache folder (analyses, scans): --cache-dir, IRONLAYER_CACHE_DIR or the git dir; None for --no-cache."""
    if args.no_cache:
        return None
    cache = args.cache_dir or os.environ.get("IRONLAYER_CACHE_DIR")
    return Path(cache) if cache else Path(source.git_dir) / "ironlayer" / "cache"


def _cmd_plan(args: argparse.Namespace) -> int:
    # A plan builds a few hundred thousand long-lived objects and hardly any garbage cycles, so the
    # cyclic collector would only rescan them again and again (about a tenth of a warm plan's time).
    gc.disable()
    try:
        return _plan(args)
    finally:
        gc.enable()


def _plan(args: argparse.Namespace) -> int:
    from shared_core.adapters.caches.analysis import PARALLEL_MIN_FILES
    from shared_core.adapters.caches.scan import ScanCache
    from shared_core.adapters.local_git import LocalGitSource
    from shared_core.core.errors import SourceError
    from shared_core.core.planning.plan import plan_to_json
    from shared_core.core.planning.planner import build_plan
    from shared_core.core.planning.watermarks import parse_watermarks
    from shared_core.core.project.headers import parse_instant
    from shared_core.core.project.loading import load_commits, read_config

    source = LocalGitSource(args.repo, prefetch=True)  # listing files starts reading them in the background
    analyzer = _analyzer(args, source)
    scans = ScanCache(_cache_dir(args, source))
    try:
        base_sha, target_sha = source.resolve(args.base), source.resolve(args.target)
        if target_sha == "0" * 40:
            raise SourceError("TARGET is the all-zero SHA (a deleted branch); there is nothing to plan")
        if args.as_of:
            try:
                as_of = parse_instant(args.as_of)
            except ValueError:
                raise SourceError(
                    f"--as-of '{args.as_of}' is not a date; use YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ"
                ) from None
        else:
            as_of = source.commit_time(target_sha)
        ledger: Any = {}
        if args.watermarks:
            ledger = parse_watermarks(Path(args.watermarks).read_text("utf-8"), args.watermarks)
        else:
            from shared_core.cli.execution import store_urls, tenant, with_store

            urls = store_urls(start=False)  # the configured store, or the embedded one if it is running
            if urls:
                ledger = with_store(lambda store: store.load_ledger(tenant()), urls=urls)
        if analyzer.is_cold() and len(source.list_files(target_sha, read_config(source, target_sha).models_path,
                                                        ".sql")) >= PARALLEL_MIN_FILES:
            analyzer.start_workers()  # nothing cached: the workers load the SQL parser while loading runs
        target, base = load_commits(source, [target_sha, base_sha], scans=scans)  # shared files: read, scanned once
        analyzer.prefetch(_likely_analyses(base.project, target.project))  # workers fork before the saver starts
        scans.save(background=True)
        if not args.json and analyzer.has_workers:  # load the renderer while waiting for the workers
            threading.Thread(target=_import_renderer, name="ironlayer-import-rich", daemon=True).start()
        plan = build_plan(
            base.project,
            target.project,
            base_sha=base_sha,
            target_sha=target_sha,
            as_of=as_of,
            ledger=ledger,
            settings=target.config.planner,
            analyzer=analyzer,
        )
    finally:
        analyzer.close()
        scans.join()
    text = plan_to_json(plan)
    if args.out:
        _write_atomic(Path(args.out), text)
    if args.json:
        sys.stdout.write(text)
    else:
        from shared_core.cli.render import render_plan

        console: Any = _BatchedConsole(_console())
        render_plan(plan, console)
        console.flush()
        if args.out:
            print(f"\nSaved plan {plan['plan_id']} to {args.out}")
    return EXIT_OK


def _import_renderer() -> None:
    import shared_core.cli.render  # noqa: F401  (imports rich)


def _likely_analyses(base: Any, target: Any) -> list[tuple[str, str, str]]:
    """The files a plan from `base` to `target` will probably analyze, as `(key, path, text)`.

    That is both versions of every model whose bytes or refs differ, and in the target everything
    downstream of one; handed to the analyzer ahead of time so that it analyzes them all in one batch.
    It is only a hint: the planner asks for exactly what it needs either way.
    """
    old_models, new_models = base.models, target.models
    changed = [
        name for name, new in new_models.items()
        if (old := old_models.get(name)) is None or old.key != new.key or old.ref_targets != new.ref_targets
    ]
    models = [model for name in changed for model in (new_models[name], old_models.get(name)) if model is not None]
    models += [model for name, model in old_models.items() if name not in new_models]
    models += [new_models[name] for name in sorted(target.graph.closure_downstream(changed))]
    return [(model.key, model.path, model.text) for model in models]


class _BatchedConsole:
    """Collects `print(text)` calls and hands them to a rich console as one text when flushed.

    rich renders each line of a multi-line text exactly as it renders that line printed alone, and
    one call costs a fraction of thousands (a 10,000-model plan prints 20,000 lines). Anything other
    than a plain `print(str)` flushes first and goes straight to the console.
    """

    def __init__(self, console: Any) -> None:
        self._console = console
        self._lines: list[str] = []

    def print(self, *objects: Any, **options: Any) -> None:
        if not options and len(objects) <= 1 and all(isinstance(item, str) for item in objects):
            self._lines.append(objects[0] if objects else "")
            return
        self.flush()
        self._console.print(*objects, **options)

    def flush(self) -> None:
        if self._lines:
            text, self._lines = "\n".join(self._lines), []
            self._console.print(text)

    def __getattr__(self, name: str) -> Any:
        self.flush()
        return getattr(self._console, name)


def _cmd_migrate(args: argparse.Namespace) -> int:
    import asyncio

    from shared_core.adapters.postgres.store import PostgresStateStore
    from shared_core.cli.execution import migration_url, tenant

    url = migration_url()

    async def run() -> list[int]:
        store = PostgresStateStore(url)
        try:
            applied = await store.migrate()
            await store.ensure_tenant(tenant(), tenant())
            return applied
        finally:
            await store.close()

    applied = asyncio.run(run())
    print(f"applied migrations {', '.join(map(str, applied))}" if applied else "state store schema is up to date")
    return EXIT_OK


def _cmd_show(args: argparse.Namespace) -> int:
    from shared_core.cli.render import render_plan
    from shared_core.core.planning.plan import load_plan

    plan = load_plan(Path(args.plan).read_text("utf-8"), args.plan)
    render_plan(plan, _console())
    return EXIT_OK


def _cmd_check(args: argparse.Namespace) -> int:
    from shared_core.adapters.local_git import LocalGitSource
    from shared_core.core.project.check import check_sources
    from shared_core.core.project.loading import read_config
    from shared_core.core.project.models import ModelSource

    source = LocalGitSource(args.repo)
    sha = source.resolve(args.ref)
    config = read_config(source, sha)
    files = source.list_files(sha, config.models_path, ".sql")
    blobs = source.read_blobs([blob for _, blob in files])
    sources = [ModelSource(path, blobs[blob].decode("utf-8", errors="replace")) for path, blob in files]
    project, errors = check_sources(sources, _analyzer(args, source))
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    if errors:
        print(f"{len(errors)} problem{'s' if len(errors) != 1 else ''} in {len(files)} model files", file=sys.stderr)
        return EXIT_CHECK_FAILED
    count = len(project) if project else 0
    print(f"ok: {count} models at {sha[:12]} are valid (headers, refs, DAG, SQL and safety)")
    return EXIT_OK


def _cmd_models(args: argparse.Namespace) -> int:
    from shared_core.adapters.local_git import LocalGitSource
    from shared_core.core.project.loading import load_commit

    source = LocalGitSource(args.repo)
    project = load_commit(source, source.resolve(args.ref)).project
    rows: list[dict[str, Any]] = [
        {
            "name": m.name,
            "kind": m.header.kind,
            "materialization": m.header.materialization,
            "batch": m.header.batch if m.header.is_incremental else None,
            "upstream": list(m.upstream),
            "path": m.path,
        }
        for m in (project[name] for name in project.order)
    ]
    if args.json:
        print(json.dumps(rows, indent=2, sort_keys=True))
        return EXIT_OK
    from rich.table import Table

    table = Table("model", "kind", "materialization", "batch", "upstream", "path", box=None)
    for row in rows:
        table.add_row(row["name"], row["kind"], row["materialization"], row["batch"] or "",
                      ", ".join(row["upstream"]), row["path"])
    _console().print(table)
    return EXIT_OK


def _cmd_lineage(args: argparse.Namespace) -> int:
    from shared_core.adapters.local_git import LocalGitSource
    from shared_core.core.project.loading import load_commit

    source = LocalGitSource(args.repo)
    project = load_commit(source, source.resolve(args.ref)).project
    name = project.resolve_name(args.model)
    graph = project.graph
    if not args.downstream:
        upstream = graph.upstream(name)
        print(f"upstream of {name} ({len(upstream)}):")
        for node in sorted(upstream, key=project.position.__getitem__):
            print(f"  {node}")
    if not args.upstream:
        downstream = graph.downstream(name)
        print(f"downstream of {name} ({len(downstream)}):")
        for node in sorted(downstream, key=project.position.__getitem__):
            print(f"  {node}")
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from shared_core.cli.demo import run_demo

    return run_demo(args, main)


def _console() -> Any:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def _write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file, so a failure never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


_COMMANDS = {
    "plan": _cmd_plan,
    "show": _cmd_show,
    "check": _cmd_check,
    "models": _cmd_models,
    "lineage": _cmd_lineage,
    "demo": _cmd_demo,
    "migrate": _cmd_migrate,
}

