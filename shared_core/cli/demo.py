"""`ironlayer demo`: build the example repository (two commits) and plan both of them.

The example lives in `examples/shop`: `v1/` is the first commit; `v2/` holds files that replace or
add to it, and `v2/changes.txt` the moves and removals of the second commit. Commits have fixed
authors and times, so the demo's plans have the same IDs on every machine.
"""

from __future__ import annotations

import argparse
import shutil
from collections.abc import Callable
from pathlib import Path

from shared_core.adapters.git_writer import commit_files, init_repo, read_tree
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
    """Build the repo, then plan, show and apply each commit; print what changed in the warehouse."""
    from rich.console import Console
    from rich.table import Table

    folder = Path(args.dir)
    repo = folder / "repo"
    warehouse = folder / "warehouse.duckdb"
    examples = Path(args.examples) if args.examples else default_examples_dir()
    v1, v2 = build_demo_repo(examples, repo)
    warehouse.unlink(missing_ok=True)  # the demo's warehouse starts empty, like its repository
    console = Console(highlight=False, soft_wrap=True)
    zero = "0" * 40
    steps = (
        ("1. First deployment: from nothing to the first commit", zero, v1, folder / "plan-1.json"),
        ("2. The second commit: a logic change, a cosmetic edit, a metadata edit, a new model, a move, a removal",
         v1, v2, folder / "plan-2.json"),
    )
    before: dict[str, str] = {}
    for title, base, target, out in steps:
        console.rule(f"[bold]{title}")
        console.print(f"$ ironlayer plan {repo} {base[:12]} {target[:12]} --out {out}\n")
        code = main(["plan", str(repo), base, target, "--out", str(out)])
        if code != 0:
            return code
        console.print(f"\n$ ironlayer apply {out} --repo {repo} --auto-approve\n")
        before = _facts(warehouse)
        code = main(["apply", str(out), "--repo", str(repo), "--warehouse", str(warehouse), "--auto-approve"])
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
    console.print(f"\nRepository {repo}, warehouse {warehouse}. Try: ironlayer runs, ironlayer status, "
                  f"ironlayer show {folder / 'plan-2.json'}")
    return 0
