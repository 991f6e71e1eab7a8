"""Review regenerated golden plans: everything but IDs, hashes and the canonicalizer version must stay the same.

A canonicalizer change (a new `CANONICALIZER_VERSION`) changes every content hash, so every `model_hash`,
`old_hash`/`new_hash`, `step_id`, `depends_on` entry, `inputs_hash` and `plan_id`; it must change nothing
else: no change classification or reason, no step, range, batch count, reset flag, order or wave.
`masked_plan` replaces each ID and hash by a label that keeps its identity inside the plan (the same hash
gets the same label, a step's ID becomes its position), so two plans compare equal exactly when they agree
on everything else.

Run it after `IRONLAYER_UPDATE_GOLDEN=1 pytest tests/golden`, against the commit before the change:

    python -m tests.golden.compare main

It prints each scenario that differs in more than IDs and hashes, and exits with 1 if there is one.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "golden"
ROOT = Path(__file__).resolve().parents[2]


def masked_plan(plan: dict[str, Any]) -> dict[str, Any]:
    """`plan` with its IDs, hashes and canonicalizer version replaced by labels that keep their identity.

    >>> a = {"plan_id": "p", "inputs_hash": "i", "inputs": {"canonicalizer": "v1"}, "models": [], "steps": [
    ...     {"step_id": "x", "model_hash": "h", "depends_on": []},
    ...     {"step_id": "y", "model_hash": "h", "depends_on": ["x"]}]}
    >>> masked_plan(a)["steps"][1]
    {'step_id': 'step 1', 'model_hash': 'hash 1', 'depends_on': ['step 0']}
    """
    hashes: dict[str, str] = {}

    def label(value: str | None) -> str | None:
        if value is None:
            return None
        return hashes.setdefault(value, f"hash {len(hashes) + 1}")

    steps = {step["step_id"]: f"step {index}" for index, step in enumerate(plan["steps"])}
    masked: dict[str, Any] = json.loads(json.dumps(plan))
    masked["plan_id"] = "plan"
    masked["inputs_hash"] = "inputs"
    masked["inputs"]["canonicalizer"] = "canonicalizer"
    for change in masked["models"]:
        change["old_hash"], change["new_hash"] = label(change["old_hash"]), label(change["new_hash"])
    for step in masked["steps"]:
        step["step_id"] = steps[step["step_id"]]
        step["model_hash"] = label(step["model_hash"])
        step["depends_on"] = sorted(steps[dep] for dep in step["depends_on"])  # sorted by ID in the plan
    return masked


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The top-level keys (and steps or models) where the masked plans differ."""
    a, b = masked_plan(old), masked_plan(new)
    found = [key for key in sorted(set(a) | set(b)) if key not in ("models", "steps") and a.get(key) != b.get(key)]
    for key in ("models", "steps"):
        if len(a[key]) != len(b[key]):
            found.append(f"{key}: {len(a[key])} -> {len(b[key])} entries")
            continue
        found += [f"{key}[{i}]: {x} -> {y}" for i, (x, y) in enumerate(zip(a[key], b[key], strict=True)) if x != y]
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """Compare every golden plan with its version at a git ref (default `main`); 1 when one differs."""
    ref = (list(argv) if argv is not None else sys.argv[1:] or ["main"])[0]
    failed = 0
    for folder in sorted(p for p in GOLDEN.iterdir() if p.is_dir()):
        path = (folder / "plan.json").relative_to(ROOT).as_posix()
        old = json.loads(subprocess.run(["git", "-C", str(ROOT), "show", f"{ref}:{path}"], capture_output=True,
                                        check=True).stdout)
        new = json.loads((folder / "plan.json").read_text("utf-8"))
        found = differences(old, new)
        ids = "same IDs" if old["plan_id"] == new["plan_id"] else "new IDs and hashes only"
        print(f"{folder.name}: {'DIFFERS: ' + '; '.join(found) if found else ids}")
        failed += bool(found)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
