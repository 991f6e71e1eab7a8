"""`ironlayer init [DIR]`: scaffold a project (ironlayer.toml, models/, one example model, .gitignore entries).

The example is an incremental model with a daily schedule, starting on the first day of the current month,
so that `check`, `plan`, `apply` and `run` all have something to show within the first minutes. Existing
files are never overwritten; `.gitignore` only gains the lines it lacks. A folder that is not inside a
git repository becomes one (`git init`): IronLayer reads models from commits.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared_core.cli import _runtime
from shared_core.core.errors import InputError
from shared_core.settings import repository_state_dir

EXIT_OK = 0
PROJECT_FILE = """\
# IronLayer project settings (README: "Models" and "How a plan is decided").
models_path = "models"              # folder searched recursively for *.sql model files

[planner]
max_batches_per_step = 366          # contiguous batches grouped into one step, at most
# max_batches_per_plan = 100000     # refuse a plan holding more batches than this
"""
EXAMPLE_PATH = "models/example/daily_signups.sql"
EXAMPLE_MODEL = """\
-- name: example.daily_signups
-- kind: INCREMENTAL_BY_TIME_RANGE
-- time_column: day
-- start: {start}
-- batch: day
-- cron: 0 3 * * *
-- owner: you
-- tests: not_null(day), unique(day)
SELECT CAST(signed_up_at AS DATE) AS day, count(*) AS signups
FROM VALUES
  (TIMESTAMP '{start} 09:30:00'), (TIMESTAMP '{start} 17:05:00'), (TIMESTAMP '{second} 11:45:00')
  AS signups(signed_up_at)
WHERE signed_up_at >= '{{{{ start_date }}}}' AND signed_up_at < '{{{{ end_date }}}}'
GROUP BY CAST(signed_up_at AS DATE)
"""
GITIGNORE_LINES = ("# IronLayer (its own state lives in .git/ironlayer)", ".ironlayer/", "*.duckdb", "*.duckdb.wal")


def add_commands(commands: Any) -> None:
    """Register `init` on the `ironlayer` sub-command parser."""
    init = commands.add_parser(
        "init", help="scaffold a project: ironlayer.toml, models/ with an example model, .gitignore entries",
        epilog=_runtime.examples("ironlayer init my-project", "ironlayer init .   # in an existing repository"))
    init.add_argument("dir", nargs="?", default=".", help="the project folder (default: the current directory)")


def cmd_init(args: argparse.Namespace) -> int:
    """Write the project files that are missing; say what was written and what to run next."""
    folder = Path(args.dir)
    if (folder / "ironlayer.toml").exists():
        raise InputError(f"{folder / 'ironlayer.toml'} exists: {folder} is already an IronLayer project")
    folder.mkdir(parents=True, exist_ok=True)
    made: list[str] = []
    if repository_state_dir(folder) is None:
        from shared_core.adapters.git_writer import init_repo

        init_repo(folder)
        made.append("a git repository (git init)")
    today = datetime.now(UTC).date()
    start = today.replace(day=1)
    files = {"ironlayer.toml": PROJECT_FILE,
             EXAMPLE_PATH: EXAMPLE_MODEL.format(start=start.isoformat(), second=start.replace(day=2).isoformat())}
    for relative, text in files.items():
        path = folder / relative
        if path.exists():
            print(f"kept {path} (it exists)")
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        made.append(relative)
    ignore = folder / ".gitignore"
    present = ignore.read_text("utf-8").splitlines() if ignore.exists() else []
    missing = [line for line in GITIGNORE_LINES if line not in present]
    if missing:
        prefix = "\n" if present and present[-1].strip() else ""
        with ignore.open("a", encoding="utf-8") as out:
            out.write(prefix + "\n".join(missing) + "\n")
        made.append(".gitignore entries")
    where = "" if folder.resolve() == Path.cwd().resolve() else f"cd {args.dir}\n  "
    print(f"created in {folder}: {', '.join(made) if made else 'nothing (every file was there)'}")
    print("next:\n"
          f"  {where}git add -A && git commit -m 'IronLayer project'\n"
          "  ironlayer check .\n"
          "  ironlayer plan . 0000000 HEAD --out plan.json\n"
          "  ironlayer apply plan.json --repo . --auto-approve\n"
          "  ironlayer run --auto-approve      # later: what the daily schedule has made due")
    return EXIT_OK


COMMANDS = {"init": cmd_init}
