"""Same inputs, same plan bytes: across processes and hash seeds, file order and layout, runs and caches.

The scenarios come from the golden fixtures (`tests/fixtures/golden/`), so these tests exercise the
same histories whose plans are pinned byte for byte there.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared_core.adapters.caches.analysis import CachedAnalyzer
from shared_core.adapters.git_writer import read_tree
from shared_core.core.planning.intervals import floor_batch
from shared_core.core.planning.plan_codec import load_plan, plan_to_json
from shared_core.core.planning.planner import build_plan
from shared_core.core.planning.watermarks import parse_watermarks
from shared_core.core.project.config import PlannerSettings
from shared_core.core.project.headers import format_instant, parse_instant
from shared_core.core.project.models import ModelSource, Project, load_project
from shared_core.ports import InlineAnalyzer

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "golden"
ENTRY = "from shared_core.cli import main; raise SystemExit(main())"
MakeRepo = Callable[..., tuple[Path, list[str]]]
RunPlan = Callable[..., bytes]


def _scenario(name: str) -> tuple[dict[str, str], dict[str, str], list[str]]:
    """Base tree, target tree and the extra CLI arguments (ledger, as_of) of a golden scenario."""
    folder = GOLDEN / name
    extra: list[str] = []
    if (folder / "watermarks.json").exists():
        extra += ["--watermarks", str(folder / "watermarks.json")]
    if (folder / "as_of.txt").exists():
        extra += ["--as-of", (folder / "as_of.txt").read_text("utf-8").strip()]
    return read_tree(folder / "base"), read_tree(folder / "target"), extra


def _subprocess_plan(repo: Path, base: str, target: str, out: Path, extra: list[str], seed: str, cwd: Path) -> bytes:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IRONLAYER_", "PYTHONHASHSEED"))}
    env["PYTHONHASHSEED"] = seed
    if "--watermarks" not in extra:  # never fall back to a state store the machine may have
        (cwd / "empty-ledger.json").write_text("{}\n", encoding="utf-8")
        extra = [*extra, "--watermarks", str(cwd / "empty-ledger.json")]
    args = [sys.executable, "-c", ENTRY, "plan", str(repo), base, target, "--out", str(out), "--no-cache", *extra]
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 0, result.stderr
    return out.read_bytes()


@pytest.mark.parametrize("scenario", ["incremental_gaps", "logic_change"])
def test_same_bytes_from_processes_with_different_hash_seeds(scenario: str, make_repo: MakeRepo, tmp_path: Path) -> None:
    base_tree, target_tree, extra = _scenario(scenario)
    repo, (base, target) = make_repo([base_tree, target_tree])
    (tmp_path / "cwd_a").mkdir()
    (tmp_path / "cwd_b").mkdir()
    first = _subprocess_plan(repo, base, target, tmp_path / "a.json", extra, "0", tmp_path / "cwd_a")
    second = _subprocess_plan(repo, base, target, tmp_path / "b.json", extra, "12345", tmp_path / "cwd_b")
    assert first == second
    assert first == (GOLDEN / scenario / "plan.json").read_bytes(), "a separate process gives the golden bytes"


def test_same_bytes_on_repeated_in_process_runs(make_repo: MakeRepo, run_plan: RunPlan) -> None:
    base_tree, target_tree, extra = _scenario("incremental_gaps")
    repo, (base, target) = make_repo([base_tree, target_tree])
    runs = {run_plan(repo, base, target, *extra) for _ in range(3)}
    assert len(runs) == 1
    assert load_plan(runs.pop().decode(), "plan").steps, "the scenario plans real work"


def test_cold_and_warm_cache_give_the_same_plan(make_repo: MakeRepo, run_plan: RunPlan, tmp_path: Path) -> None:
    base_tree, target_tree, extra = _scenario("cosmetic_change")
    repo, (base, target) = make_repo([base_tree, target_tree])
    cache = tmp_path / "cache"
    cold = run_plan(repo, base, target, "--cache-dir", str(cache), *extra)
    entries = sorted(cache.rglob("*.json"))
    assert len(entries) >= 10, "the cold run filled the cache (both sides of 5 changed files)"
    warm = run_plan(repo, base, target, "--cache-dir", str(cache), *extra)
    uncached = run_plan(repo, base, target, "--no-cache", *extra)
    assert cold == warm == uncached
    assert sorted(cache.rglob("*.json")) == entries, "a warm run adds nothing"
    assert cold == (GOLDEN / "cosmetic_change" / "plan.json").read_bytes()


def _relayout(tree: dict[str, str]) -> dict[str, str]:
    """The same model files under another models folder, with other folder and file names."""
    moved = {"ironlayer.toml": 'models_path = "dbt/warehouse"\n'}
    for index, (path, text) in enumerate(sorted(tree.items(), reverse=True)):
        if path.endswith(".sql"):
            folder = ["zz", "aa/deep/er", "mm"][index % 3]
            moved[f"dbt/warehouse/{folder}/{index:02d}_{Path(path).stem.upper()}.sql"] = text
        elif path != "ironlayer.toml":
            moved[path] = text
    return moved


def _without_commit_ids(plan_bytes: bytes) -> dict[str, Any]:
    plan = json.loads(plan_bytes)
    return {k: v for k, v in plan.items() if k not in ("base", "target", "inputs_hash", "plan_id")}


def test_same_plan_whatever_file_order_and_layout(make_repo: MakeRepo, run_plan: RunPlan) -> None:
    base_tree, target_tree, extra = _scenario("incremental_gaps")
    repo_a, (base_a, target_a) = make_repo([base_tree, target_tree], "plain")

    # Repository B: the files arrive one per commit in reverse order, under other folders and names.
    moved_base, moved_target = _relayout(base_tree), _relayout(target_tree)
    order = sorted(moved_base, reverse=True)
    growing = [dict((p, moved_base[p]) for p in order[: i + 1]) for i in range(len(order))]
    times = [f"2024-02-{day:02d}T00:00:00+00:00" for day in range(1, len(growing) + 2)]
    repo_b, shas_b = make_repo([*growing, moved_target], "relaid", times)
    base_b, target_b = shas_b[-2], shas_b[-1]
    assert (base_b, target_b) != (base_a, target_a)

    plan_a = run_plan(repo_a, base_a, target_a, *extra)
    plan_b = run_plan(repo_b, base_b, target_b, *extra)
    assert _without_commit_ids(plan_a) == _without_commit_ids(plan_b)
    steps_a, steps_b = load_plan(plan_a.decode(), "a").steps, load_plan(plan_b.decode(), "b").steps
    assert [s.step_id for s in steps_a] == [s.step_id for s in steps_b] != []


def _project(tree: dict[str, str], rng: random.Random, *, rename: bool) -> Project:
    sources = [
        ModelSource(f"x/{rng.randrange(10**6)}/{index}_{Path(p).name}" if rename else p, text)
        for index, (p, text) in enumerate(tree.items())
        if p.endswith(".sql")
    ]
    rng.shuffle(sources)
    return load_project(sources)


def _ledger_text(rng: random.Random) -> str:
    """The incremental_gaps ledger in shuffled order, with ranges split in two and overlapped."""
    document = json.loads((GOLDEN / "incremental_gaps" / "watermarks.json").read_text("utf-8"))
    noisy: dict[str, list[list[str]]] = {}
    for model in rng.sample(sorted(document), len(document)):
        ranges: list[list[str]] = []
        for start, end in document[model]:
            low, high = parse_instant(start), parse_instant(end)
            if high - low < timedelta(days=2) or rng.random() < 0.3:
                ranges.append([start, end])
                continue
            middle = floor_batch(low + (high - low) / 2, "day")
            ranges += [[start, format_instant(middle)], [format_instant(middle), end]]
            if rng.random() < 0.5:
                ranges.append([format_instant(low), format_instant(middle + timedelta(days=1))])
        rng.shuffle(ranges)
        noisy[model] = ranges
    return json.dumps(noisy)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_pure_plan_bytes_ignore_file_order_paths_and_ledger_order(seed: int) -> None:
    base_tree, target_tree, _ = _scenario("incremental_gaps")
    as_of = datetime(2024, 3, 10, 12, tzinfo=UTC)

    def plan(rng: random.Random, *, rename: bool) -> str:
        return plan_to_json(
            build_plan(
                _project(base_tree, rng, rename=rename),
                _project(target_tree, rng, rename=rename),
                base_sha="a" * 40,
                target_sha="b" * 40,
                as_of=as_of,
                ledger=parse_watermarks(_ledger_text(rng), "w.json"),
                settings=PlannerSettings(),
                analyzer=InlineAnalyzer(),
            )
        )

    reference = plan(random.Random(0), rename=False)
    assert plan(random.Random(seed), rename=True) == reference
    assert json.loads(reference)["inputs"]["watermarks"]["mart.engagement"] == [
        ["2024-01-01T00:00:00Z", "2024-01-20T00:00:00Z"],
        ["2024-01-25T00:00:00Z", "2024-02-10T00:00:00Z"],
        ["2024-02-12T00:00:00Z", "2024-03-05T00:00:00Z"],
    ]


def test_parallel_and_serial_analysis_give_the_same_plan() -> None:
    """A new branch of 60 models is analyzed in worker processes or inline; the plan is the same."""
    tree = {}
    for i in range(60):
        source = (
            "landing.numbers" if i < 3
            else f"{{{{ ref('wide.m{i // 2:02d}') }}}} AS a JOIN {{{{ ref('wide.m{i // 3:02d}') }}}} AS b USING (id)"
        )
        tree[f"models/m{i:02d}.sql"] = (
            f"-- name: wide.m{i:02d}\n-- kind: FULL_REFRESH\nSELECT id, {i} * 2 AS v{i} FROM {source}\n"
        )
    empty = load_project([])
    target = load_project([ModelSource(p, t) for p, t in tree.items()])
    as_of = datetime(2024, 3, 15, tzinfo=UTC)

    def plan(analyzer: Any) -> str:
        return plan_to_json(
            build_plan(empty, target, base_sha="0" * 40, target_sha="c" * 40, as_of=as_of, ledger={},
                       settings=PlannerSettings(), analyzer=analyzer)
        )

    serial = plan(CachedAnalyzer(None, workers=1))
    assert plan(CachedAnalyzer(None, workers=2)) == serial
    assert plan(InlineAnalyzer()) == serial
    assert load_plan(serial, "serial").summary.steps == 60
