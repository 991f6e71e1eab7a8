"""`ironlayer demo`: build the example repository (two commits), then plan and apply both of them.

The example lives in `examples/shop`: `v1/` is the first commit; `v2/` holds files that replace or
add to it, and `v2/changes.txt` the moves and removals of the second commit. Commits have fixed
authors and times, so the demo's plans have the same IDs on every machine.

Everything lives in the demo's folder (default `.ironlayer/demo`): the repository, the plans, the
warehouse, and the state store, which like any project's is in the repository's git directory
(`repo/.git/ironlayer`, unless IRONLAYER_HOME or IRONLAYER_DATABASE_URL say otherwise). Each demo starts
from nothing: the repository is rebuilt (its embedded PostgreSQL stopped first) and the warehouse
removed. The demo prints every command it runs, exactly as it runs it, so each can be pasted as printed.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
from collections.abc import Callable
from pathlib import Path

from shared_core.adapters.git_writer import commit_files, init_repo, read_tree
from shared_core.adapters.postgres.embedded import stop_embedded_server
from shared_core.cli import _runtime
from shared_core.core.errors import SourceError

V1_TIME = "2024-01-08T06:00:00+00:00"
V2_TIME = "2024-01-10T06:00:00+00:00"
_MARKER = ".ironlayer-demo"


def default_examples_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "examples" / "shop"


def build_demo_repo(examples: Path, repo: Path) -> tuple[str, str]:
    """(Re)create the demo repository at `repo`; returns the SHAs of its two commits.

    Raises:
        SourceError: the examples folder is missing, or `repo` exists and was not made by the demo.
    """
    if not (examples / "v1").is_dir():
        raise SourceError(f"{examples}: no example project here (expected v1/ and v2/); pass --examples")
    if repo.exists():
        if not (repo / _MARKER).exists():
            raise SourceError(f"{repo}: exists and is not a demo repository; choose another --dir")
        stop_embedded_server(repo / ".git" / "ironlayer")  # its data is about to go with the repository
        shutil.rmtree(repo)
    init_repo(repo)
    first = read_tree(examples / "v1")
    first[_MARKER] = "made by `ironlayer demo`; safe to delete\n"
    v1 = commit_files(repo, first, "Shop models: bronze, silver, gold", V1_TIME)
    second: dict[str, str | None] = dict(read_tree(examples / "v2" / "models").items())
    second = {f"models/{path}": text for path, text in second.items()}
    for line in (examples / "v2" / "changes.txt").read_text("utf-8").splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0] == "move" and len(words) == 3:
            second[words[2]] = (repo / words[1]).read_text("utf-8")
            second[words[1]] = None
        elif words[0] == "remove" and len(words) == 2:
            second[words[1]] = None
        else:
            raise SourceError(f"{examples / 'v2' / 'changes.txt'}: cannot read line '{line}'; use move/remove")
    v2 = commit_files(repo, second, "Exclude cancelled orders; add top customers; tidy up", V2_TIME)
    return v1, v2


_FACTS = {
    "cancelled orders in silver.orders": "SELECT count(*) FROM silver.orders WHERE status = 'cancelled'",
    "orders in silver.orders": "SELECT count(*) FROM silver.orders",
    "revenue in gold.daily_revenue": "SELECT CAST(sum(revenue) AS VARCHAR) FROM gold.daily_revenue",
    "days in gold.daily_revenue": "SELECT count(*) FROM gold.daily_revenue",
    "rows in gold.top_customers": "SELECT count(*) FROM gold.top_customers",
    "lifetime value in gold.customer_ltv": "SELECT CAST(sum(lifetime_value) AS VARCHAR) FROM gold.customer_ltv",
}


def _facts(warehouse: Path) -> dict[str, str]:
    """A few figures of the demo warehouse ('-' where a table does not exist yet)."""
    import duckdb

    facts = dict.fromkeys(_FACTS, "-")
    if not warehouse.exists():
        return facts
    conn = duckdb.connect(str(warehouse), read_only=True)
    try:
        for label, sql in _FACTS.items():
            try:
                row = conn.execute(sql).fetchone()
            except duckdb.CatalogException:
                continue
            facts[label] = str(row[0]) if row else "-"
    finally:
        conn.close()
    return facts


def run_demo(args: argparse.Namespace, main: Callable[[list[str]], int]) -> int:
    """Build the repo, then plan, show and apply each commit; print what changed in the warehouse.

    Each command is printed as `$ ironlayer ...` and then run from exactly that text, so what is printed
    is what works when pasted (short SHAs, the all-zero one included, and the paths used).
    """
    from rich.console import Console
    from rich.table import Table

    folder = Path(args.dir)
    repo = folder / "repo"
    warehouse = folder / "warehouse.duckdb"
    examples = Path(args.examples) if args.examples else default_examples_dir()
    v1, v2 = build_demo_repo(examples, repo)
    warehouse.unlink(missing_ok=True)  # the demo's warehouse starts empty, like its repository
    Path(f"{warehouse}.wal").unlink(missing_ok=True)
    console = Console(highlight=False, soft_wrap=True)

    def run(*words: str | Path) -> int:
        line = shlex.join(["ironlayer", *map(str, words)])
        console.print(f"$ {line}\n", markup=False)
        return main(shlex.split(line)[1:])

    steps = (
        ("1. First deployment: from nothing to the first commit", "0" * 7, v1[:7], folder / "plan-1.json"),
        ("2. The second commit: a logic change, a cosmetic edit, a metadata edit, a new model, a move, a removal",
         v1[:7], v2[:7], folder / "plan-2.json"),
    )
    before: dict[str, str] = {}
    for title, base, target, out in steps:
        console.rule(f"[bold]{title}")
        code = run("plan", repo, base, target, "--out", out)
        if code != 0:
            return code
        console.print()
        before = _facts(warehouse)
        code = run("apply", out, "--repo", repo, "--warehouse", warehouse, "--auto-approve")
        if code != 0:
            return code
        console.print()
    after = _facts(warehouse)
    table = Table("", "before", "after", box=None, title="What the second apply changed in the warehouse")
    for label in _FACTS:
        table.add_row(label, before[label], after[label], style="bold" if before[label] != after[label] else "dim")
    console.print(table)
    console.print(
        "The second commit excludes cancelled orders in silver.orders (rebuilt from its start) and the apply also "
        "ran the two days that became complete since; gold.daily_revenue and gold.customer_ltv were rebuilt "
        "downstream (customer_ltv's own edit was cosmetic), gold.top_customers is new, and gold.country_revenue "
        "left the repository while its view stays in place."
    )
    settings = _runtime.settings()  # those of the last command, which named the demo repository
    state = "the PostgreSQL of IRONLAYER_DATABASE_URL" if settings.database_url else str(settings.home)
    console.print(f"\nRepository {repo}, warehouse {warehouse}, state in {state}. Try:", markup=False)
    for words in (["runs", repo, "--limit", "10"], ["status", repo], ["show", folder / "plan-2.json"],
                  ["lineage", repo, "gold.daily_revenue"], ["db", "stop", repo]):
        console.print("  " + shlex.join(["ironlayer", *map(str, words)]), markup=False)
    return 0
