"""Projects for the documentation site's tests: the demo project's two versions and generated large DAGs."""

from __future__ import annotations

import random
from pathlib import Path

from shared_core.core.project.models import ModelSource, Project, load_project

EXAMPLES = Path(__file__).parents[1] / "examples" / "shop"


def shop_project(version: str) -> Project:
    """The demo project's v1, or v2 laid over it (v2's files replace v1's; the removed model is left out)."""
    files = {p.relative_to(EXAMPLES / "v1").as_posix(): p.read_text("utf-8") for p in (EXAMPLES / "v1").rglob("*.sql")}
    if version == "v2":
        files.update({p.relative_to(EXAMPLES / "v2").as_posix(): p.read_text("utf-8")
                      for p in (EXAMPLES / "v2").rglob("*.sql")})
        del files["models/gold/country_revenue.sql"]
    return load_project([ModelSource(path, text) for path, text in sorted(files.items())])


def generated_project(count: int, seed: int) -> Project:
    """`count` models, each reading up to three of the 40 models before it (so many edges span columns)."""
    rng = random.Random(seed)
    sources = []
    for number in range(count):
        name = f"s{number % 7}.model_{number:04d}"
        parents = sorted({rng.randrange(max(0, number - 40), number) for _ in range(rng.choice((0, 1, 1, 2, 3)))}
                         if number else set())
        reads = " JOIN ".join(f"{{{{ ref('s{p % 7}.model_{p:04d}') }}}} AS t{p}" for p in parents)
        kind = rng.choice(("FULL_REFRESH", "FULL_REFRESH", "MERGE_BY_KEY"))
        key = "-- unique_key: id\n" if kind == "MERGE_BY_KEY" else ""
        sources.append(ModelSource(f"models/{number:04d}.sql", f"-- name: {name}\n-- kind: {kind}\n{key}"
                                   f"SELECT 1 AS id{' FROM ' + reads if reads else ''}\n"))
    return load_project(sources)
