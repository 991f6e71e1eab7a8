"""`ironlayer demo`: build the example repository (two commits) and plan both of them.

The example lives in `examples/shop`: `v1/` is the first commit; `v2/` holds files that replace or
add to it, and `v2/changes.txt` the moves and removals of the second commit. Commits have fixed
authors and times, so the demo's plans have the same IDs on every machine.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from shared_core.adapters.git_writer import commit_files, init_repo, read_tree
from shared_core.errors import SourceError

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
