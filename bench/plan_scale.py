"""Benchmark `ironlayer plan` on generated repositories of 500, 2,000 and 10,000 models.

For each size it builds (deterministically, from a fixed seed) a git repository of layered models
with two commits: the first holds every model, the second changes the SQL logic of one model in the
middle of the DAG with a few hundred models downstream of it. It then runs the real CLI as a
subprocess (`ironlayer plan REPO BASE TARGET --out FILE` with a fixed `--as-of`, an empty watermark
ledger and its own `--cache-dir`) and prints, next to the targets, the wall time, CPU time and peak
RSS of: the first plan (from the all-zero SHA, everything added, empty cache), the one-change plan
with an empty cache, and the same plan again with the cache the previous run filled. With
`--repeat N` each figure is the best of N runs. The plans of every run must be byte-identical.

Run it with `python bench/plan_scale.py [--sizes 500,2000] [--work DIR] [--repeat N]`; the repositories,
caches and plans stay in the work folder (default `bench/.work/`, ignored by git).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from shared_core.adapters.git_writer import commit_files, init_repo
from shared_core.core.planning.plan import Plan
from shared_core.core.planning.plan_codec import load_plan

SEED = 20240601
SPREAD = 0.12  # standard deviation of a ref's position, as a share of the layer it reads
ZERO_SHA = "0" * 40
AS_OF = "2024-03-01"
V1_TIME = "2024-02-01T06:00:00+00:00"
V2_TIME = "2024-02-02T06:00:00+00:00"
DEFAULT_SIZES = (500, 2_000, 10_000)
DEFAULT_WORK = Path(__file__).resolve().parent / ".work"
_DOMAINS = ("orders", "events", "accounts", "payments", "sessions", "invoices", "shipments", "refunds")
_COLUMNS = ("id", "account_id", "event_ts", "amount", "status", "region", "score")
_STAGE_LINES, _TAIL_LINES, _MAX_LINES = 12, 25, 80

# Targets on a 2-core machine: seconds by (size, scenario), peak RSS by size.
TIME_TARGETS: dict[tuple[int, str], float] = {
    (2_000, "first"): 4.0,
    (2_000, "cold"): 1.0,
    (10_000, "first"): 15.0,
    (10_000, "cold"): 2.5,
    (10_000, "warm"): 0.5,
}
RSS_TARGETS_MB: dict[int, float] = {10_000: 1_536.0}


# --------------------------------------------------------------------------------------------------
# Project generation
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """One generated model: where it sits in the DAG and what it reads."""

    name: str
    path: str
    layer: int
    kind: str
    refs: tuple[str, ...]
    seed: str


@dataclass(frozen=True)
class Generated:
    """A generated project: both commits' files and facts about the change."""

    files: dict[str, str]
    changed_path: str
    changed_name: str
    changed_text: str
    downstream: int
    layers: int


def _layer_count(size: int) -> int:
    return 10 + min(10, size // 1_000)


def generate_specs(size: int, seed: int = SEED) -> list[Spec]:
    """Lay `size` models out in layers; each model refs 1-4 models of earlier layers, mostly nearby."""
    rng = random.Random(f"{seed}:{size}:dag")
    layers = _layer_count(size)
    counts = [size // layers + (1 if layer < size % layers else 0) for layer in range(layers)]
    by_layer: list[list[str]] = []
    specs: list[Spec] = []
    number = 0
    for layer, count in enumerate(counts):
        names: list[str] = []
        for index in range(count):
            table = f"{_DOMAINS[number % len(_DOMAINS)]}_{number:05d}"
            name = f"layer{layer:02d}.{table}"
            refs: list[str] = []
            if layer > 0:
                position = (index + 0.5) / count
                wanted = rng.choices((1, 2, 3, 4), weights=(35, 30, 20, 15))[0]
                for _ in range(wanted * 3):  # a few tries to find distinct upstreams
                    if len(refs) == wanted:
                        break
                    back = rng.choices((1, 2, 3), weights=(60, 25, 15))[0]
                    source = by_layer[max(0, layer - back)]
                    spot = int(position * len(source) + rng.gauss(0.0, SPREAD * len(source)))
                    pick = source[min(len(source) - 1, max(0, spot))]
                    if pick not in refs:
                        refs.append(pick)
            roll = rng.random()
            kind = "INCREMENTAL_BY_TIME_RANGE" if roll < 0.12 else "MERGE_BY_KEY" if roll < 0.22 else "FULL_REFRESH"
            specs.append(Spec(name, f"models/layer{layer:02d}/{table}.sql", layer, kind, tuple(refs), f"{seed}:{name}"))
            names.append(name)
            number += 1
        by_layer.append(names)
    return specs


def downstream_counts(specs: list[Spec]) -> dict[str, int]:
    """Number of transitive downstream models of every model."""
    children: dict[str, list[str]] = {spec.name: [] for spec in specs}
    for spec in specs:
        for ref in spec.refs:
            children[ref].append(spec.name)
    reach: dict[str, set[str]] = {}
    for spec in reversed(specs):  # specs are in layer order, so children come later
        seen: set[str] = set()
        for child in children[spec.name]:
            seen.add(child)
            seen |= reach[child]
        reach[spec.name] = seen
    return {name: len(seen) for name, seen in reach.items()}


def choose_changed(specs: list[Spec], target: int) -> tuple[Spec, int]:
    """The middle-layer model whose downstream count is closest to `target` (ties by name)."""
    counts = downstream_counts(specs)
    layers = max(spec.layer for spec in specs) + 1
    middle = [spec for spec in specs if layers // 3 <= spec.layer <= (2 * layers) // 3]
    best = min(middle, key=lambda spec: (abs(counts[spec.name] - target), spec.name))
    return best, counts[best.name]


def model_text(spec: Spec, *, variant: int = 0) -> str:
    """The file of one model: header and a 20-80 line query (CTEs, joins, windows, CASE)."""
    rng = random.Random(spec.seed)
    lines = [f"-- name: {spec.name}", f"-- kind: {spec.kind}"]
    incremental = spec.kind == "INCREMENTAL_BY_TIME_RANGE"
    if incremental:
        start = ("2023-11-01", "2023-12-01", "2024-01-01")[rng.randrange(3)]
        lines += ["-- time_column: event_ts", f"-- start: {start}", "-- batch: day"]
        if rng.random() < 0.3:
            lines.append(f"-- lookback: {rng.randrange(1, 4)}")
    elif spec.kind == "MERGE_BY_KEY":
        lines += ["-- materialization: MERGE", "-- unique_key: id"]
    lines += [f"-- owner: team_{spec.layer % 5}", f"-- tags: bench, layer{spec.layer:02d}"]
    if rng.random() < 0.3:
        lines.append("-- tests: not_null(id), unique(id)")

    threshold = rng.randrange(0, 50) + 7 * variant
    source = f"{{{{ ref('{spec.refs[0]}') }}}}" if spec.refs else f"raw.source_{rng.randrange(40):02d}"
    lines += ["WITH src AS (", "    SELECT"]
    lines += [f"        s.{column}," for column in _COLUMNS[:-1]] + [f"        s.{_COLUMNS[-1]}"]
    lines += [f"    FROM {source} AS s", f"    WHERE s.amount > {threshold}"]
    if incremental:
        lines += ["      AND s.event_ts >= '{{ start_date }}'", "      AND s.event_ts < '{{ end_date }}'"]
    lines.append("),")
    current = "src"
    for number, ref in enumerate(spec.refs[1:], start=1):
        lines += [
            f"dim_{number} AS (",
            "    SELECT d.account_id, SUM(d.amount) AS total_amount, MAX(d.score) AS max_score, COUNT(*) AS row_count",
            f"    FROM {{{{ ref('{ref}') }}}} AS d",
            f"    WHERE d.status <> '{('cancelled', 'void', 'test')[rng.randrange(3)]}'",
            "    GROUP BY d.account_id",
            "),",
        ]
    if len(spec.refs) > 1:
        lines += ["joined AS (", "    SELECT", "        c.id,", "        c.account_id,", "        c.event_ts,"]
        bonus = " + ".join(f"COALESCE(dim_{n}.total_amount, 0)" for n in range(1, len(spec.refs)))
        lines += [f"        c.amount + ({bonus}) * 0.01 AS amount,", "        c.status,", "        c.region,"]
        best = ", ".join(f"COALESCE(dim_{n}.max_score, 0)" for n in range(1, len(spec.refs)))
        lines += [f"        GREATEST(c.score, {best}) AS score", f"    FROM {current} AS c"]
        for n in range(1, len(spec.refs)):
            join = "LEFT JOIN" if rng.random() < 0.7 else "INNER JOIN"
            lines.append(f"    {join} dim_{n} ON dim_{n}.account_id = c.account_id")
        lines.append("),")
        current = "joined"
    stages = rng.randrange(0, 4)
    for stage in range(stages):
        if len(lines) + _STAGE_LINES + _TAIL_LINES > _MAX_LINES:
            break  # keep every file within 80 lines
        factor = rng.randrange(2, 9)
        lines += [
            f"stage_{stage} AS (",
            "    SELECT",
            "        t.id,",
            "        t.account_id,",
            "        t.event_ts,",
            f"        CASE WHEN t.amount > {factor * 100} THEN t.amount * 0.9{factor} ELSE t.amount END AS amount,",
            "        t.status,",
            "        LOWER(TRIM(t.region)) AS region,",
            f"        (t.score * {factor} + 1) / ({factor} + 1) AS score",
            f"    FROM {current} AS t",
            f"    WHERE t.id IS NOT NULL AND (t.region <> 'zz' OR t.score > 0.{factor})",
            "),",
        ]
        current = f"stage_{stage}"
    partition = ("account_id", "region")[rng.randrange(2)]
    lines += [
        "windowed AS (",
        "    SELECT",
        "        w.*,",
        f"        ROW_NUMBER() OVER (PARTITION BY w.{partition} ORDER BY w.event_ts DESC) AS rn,",
        "        SUM(w.amount) OVER (",
        "            PARTITION BY w.region ORDER BY w.event_ts ROWS BETWEEN 6 PRECEDING AND CURRENT ROW",
        "        ) AS rolling_amount,",
        "        LAG(w.score) OVER (PARTITION BY w.account_id ORDER BY w.event_ts) AS prev_score",
        f"    FROM {current} AS w",
        ")",
        "SELECT",
        "    x.id,",
        "    x.account_id,",
        "    x.event_ts,",
        "    ROUND(x.amount + COALESCE(x.rolling_amount, 0) * 0.001, 2) AS amount,",
        "    CASE",
        "        WHEN x.score >= 0.9 THEN 'platinum'",
        f"        WHEN x.score >= 0.{rng.randrange(4, 8)} THEN 'gold'",
        "        WHEN x.status = 'cancelled' THEN 'void'",
        "        ELSE x.status",
        "    END AS status,",
        "    UPPER(x.region) AS region,",
        "    COALESCE(x.score, x.prev_score, 0) AS score",
        "FROM windowed AS x",
        f"WHERE x.rn <= {rng.randrange(1, 20)}",
    ]
    return "\n".join(lines) + "\n"


def generate_project(size: int, seed: int = SEED) -> Generated:
    """Both commits of a generated project of `size` models."""
    specs = generate_specs(size, seed)
    changed, downstream = choose_changed(specs, min(300, size // 4))
    files = {spec.path: model_text(spec) for spec in specs}
    files["ironlayer.toml"] = 'models_path = "models"\n'
    return Generated(files, changed.path, changed.name, model_text(changed, variant=1), downstream,
                     _layer_count(size))


def build_repo(folder: Path, size: int) -> tuple[Path, str, str, Generated]:
    """(Re)create the repository of `size` models under `folder`; returns it, both SHAs and the project."""
    project = generate_project(size)
    repo = folder / f"repo-{size}"
    if repo.exists():
        shutil.rmtree(repo)
    init_repo(repo)
    first = commit_files(repo, project.files, f"{size} generated models", V1_TIME)
    second = commit_files(repo, {project.changed_path: project.changed_text}, f"Change {project.changed_name}",
                          V2_TIME)
    # Pack the objects, as in any cloned repository: reading thousands of loose objects is git's cost,
    # and not one a real repository pays.
    subprocess.run(["git", "-C", str(repo), "repack", "-a", "-d", "-q"], check=True)
    return repo, first, second, project


# --------------------------------------------------------------------------------------------------
# Measurement
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One CLI run: wall seconds, peak RSS (MB) of the process and its children, the plan written."""

    seconds: float
    cpu_seconds: float  # user + system time of the CLI and the processes it waited for
    rss_mb: float
    plan: Plan
    digest: str


# Runs one command and reports its wall time and peak RSS. It is a separate small process because on
# Linux a child's ru_maxrss starts from its parent's size at fork (kept across exec), and this
# benchmark holds every generated file in memory; forked from this helper, the CLI starts small.
_MEASURE = """
import json, os, subprocess, sys, time
started = time.perf_counter()
process = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(process.pid, 0)
seconds = time.perf_counter() - started
print(json.dumps({"code": os.waitstatus_to_exitcode(status), "seconds": seconds, "maxrss_kb": usage.ru_maxrss,
                  "cpu": usage.ru_utime + usage.ru_stime}))
"""

# The speed of this machine, next to the figures the targets assume: a fresh process importing
# sqlglot (~0.17 s), and parsing plus canonicalizing one generated model (~3 ms).
_CALIBRATE = """
import json, sys, time
started = time.perf_counter()
import sqlglot
imported = time.perf_counter() - started
from shared_core.core.sql.canonical import analyze_query
text = sys.stdin.read()
analyze_query(text, "m.sql")
times = []
for _ in range(7):
    started = time.perf_counter()
    for _ in range(10):
        analyze_query(text, "m.sql")
    times.append((time.perf_counter() - started) / 10)
print(json.dumps({"import": imported, "analyze": sorted(times)[len(times) // 2]}))
"""


def default_cli() -> str:
    """The `ironlayer` script next to this interpreter (the venv's), else the one on PATH."""
    candidate = Path(sys.executable).with_name("ironlayer")
    return str(candidate) if candidate.exists() else (shutil.which("ironlayer") or "ironlayer")


def cli_environment(work: Path, bytecode_cache: bool) -> dict[str, str]:
    """The environment of the measured CLI runs.

    With `bytecode_cache`, Python may keep compiled modules (under `<work>/pycache`, not beside the
    sources) even where PYTHONDONTWRITEBYTECODE is set, as for any installed package; they are
    compiled once here, so that no measured run pays for compiling.
    """
    env = dict(os.environ)
    if bytecode_cache:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
        package = Path(__file__).resolve().parents[1] / "shared_core"
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], env=env, check=False,
                       capture_output=True)
    return env


def run_plan(cli: str, repo: Path, base: str, target: str, out: Path, cache: Path, env: dict[str, str]) -> Run:
    """Run `ironlayer plan` once and measure it with `os.wait4` (wall time and peak RSS).

    An empty watermark ledger is passed explicitly, so the plan never depends on (or waits for) a
    state store that happens to be configured or running.
    """
    ledger = out.parent / "empty-ledger.json"
    if not ledger.exists():
        ledger.write_text("{}\n", encoding="utf-8")
    command = [cli, "plan", str(repo), base, target, "--out", str(out), "--as-of", AS_OF, "--cache-dir", str(cache),
               "--watermarks", str(ledger)]
    result = subprocess.run([sys.executable, "-c", _MEASURE, *command], capture_output=True, check=False, env=env)
    if result.returncode != 0:
        raise SystemExit(f"measuring failed: {result.stderr.decode(errors='replace').strip()}")
    figures = json.loads(result.stdout)
    if figures["code"] != 0:
        raise SystemExit(f"ironlayer plan failed ({figures['code']}): {result.stderr.decode(errors='replace').strip()}")
    data = out.read_bytes()
    return Run(figures["seconds"], figures["cpu"], figures["maxrss_kb"] / 1024.0, load_plan(data.decode(), str(out)),
               hashlib.sha256(data).hexdigest())


def calibrate() -> str:
    """One line on this machine's speed, to read the figures against the targets' machine."""
    spec = generate_specs(2_000)[1_000]
    result = subprocess.run([sys.executable, "-c", _CALIBRATE], input=model_text(spec).encode(),
                            capture_output=True, check=False)
    if result.returncode != 0:
        return "machine speed: unknown (calibration failed)"
    figures = json.loads(result.stdout)
    return (f"machine speed: import sqlglot {figures['import']:.2f} s (targets assume ~0.17 s), "
            f"analyze one {model_text(spec).count(chr(10))}-line model {figures['analyze'] * 1000:.1f} ms (~3 ms)")


def _fresh(folder: Path) -> Path:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder


def bench_size(cli: str, work: Path, size: int, repeat: int, env: dict[str, str]) -> list[str]:
    """Build the repository of `size` models, run the three plans `repeat` times, return table rows.

    Each figure is the best wall time (and the largest peak RSS) of the repetitions; every repetition
    of a scenario must write the same plan bytes.
    """
    started = time.perf_counter()
    repo, first_sha, second_sha, project = build_repo(work, size)
    built = time.perf_counter() - started
    plans = _fresh(work / f"plans-{size}")
    runs: dict[str, list[Run]] = {"first": [], "cold": [], "warm": []}
    for _ in range(repeat):
        first_cache = _fresh(work / f"cache-{size}-first")
        runs["first"].append(run_plan(cli, repo, ZERO_SHA, first_sha, plans / "first.json", first_cache, env))
        cache = _fresh(work / f"cache-{size}")
        runs["cold"].append(run_plan(cli, repo, first_sha, second_sha, plans / "change-cold.json", cache, env))
        runs["warm"].append(run_plan(cli, repo, first_sha, second_sha, plans / "change-warm.json", cache, env))
    digests = {scenario: {run.digest for run in done} for scenario, done in runs.items()}
    if any(len(found) != 1 for found in digests.values()) or digests["cold"] != digests["warm"]:
        raise SystemExit(f"{size} models: plans differ between runs or between cold and warm cache: {digests}")
    cold = runs["cold"][0]
    summary = cold.plan.summary
    print(
        f"{size:>6} models: {project.layers} layers, repo built in {built:.1f} s; changed {project.changed_name} "
        f"({project.downstream} downstream) -> {summary.models_to_run} models to run in {summary.steps} steps, "
        f"{summary.waves} waves",
        flush=True,
    )
    print(f"        plan sha256: first {runs['first'][0].digest[:16]}, one change {cold.digest[:16]}", flush=True)
    labels = {"first": "first plan", "cold": "one change, cold", "warm": "one change, warm"}
    rows = []
    for scenario, done in runs.items():
        best = min(done, key=lambda run: run.seconds)
        rows.append(_row(size, scenario, labels[scenario], best.seconds, best.cpu_seconds,
                         max(run.rss_mb for run in done)))
    return rows


def _row(size: int, scenario: str, label: str, seconds: float, cpu_seconds: float, rss_mb: float) -> str:
    time_target = TIME_TARGETS.get((size, scenario))
    rss_target = RSS_TARGETS_MB.get(size)
    time_cell = f"< {time_target:.1f} s" if time_target else "-"
    rss_cell = f"< {rss_target:.0f} MB" if rss_target else "-"
    ok = (time_target is None or seconds < time_target) and (rss_target is None or rss_mb < rss_target)
    verdict = "ok" if ok else "MISSED"
    if time_target is None and rss_target is None:
        verdict = ""
    return (f"| {size:>6} | {label:<17} | {seconds:>8.2f} | {time_cell:>9} | {cpu_seconds:>6.2f} | {rss_mb:>8.0f} "
            f"| {rss_cell:>10} "
            f"| {verdict:<6} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sizes", default=",".join(str(s) for s in DEFAULT_SIZES),
                        help="comma list of model counts (default 500,2000,10000)")
    parser.add_argument("--work", default=str(DEFAULT_WORK), help="work folder (default bench/.work)")
    parser.add_argument("--cli", default=default_cli(), help="the ironlayer executable to measure")
    parser.add_argument("--repeat", type=int, default=1, help="runs per figure; the best wall time is shown")
    parser.add_argument("--no-bytecode-cache", action="store_true",
                        help="let the CLI compile its modules on every run (honour PYTHONDONTWRITEBYTECODE)")
    args = parser.parse_args(argv)
    sizes = [int(part) for part in args.sizes.split(",") if part.strip()]
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    print(f"ironlayer plan benchmark: {os.cpu_count()} CPUs, as of {AS_OF}, best of {max(1, args.repeat)}, "
          f"CLI {args.cli}", flush=True)
    print(calibrate(), flush=True)
    env = cli_environment(work, not args.no_bytecode_cache)
    if not args.no_bytecode_cache:
        print(f"bytecode cache: {work / 'pycache'} (compiled modules kept, as an installed package has them)")
    rows = []
    for size in sizes:
        rows.extend(bench_size(args.cli, work, size, max(1, args.repeat), env))
    print()
    print("| models | plan              |   wall s |    target |  CPU s |   RSS MB | RSS target | result |")
    print("|-------:|:------------------|---------:|----------:|-------:|---------:|-----------:|:-------|")
    for row in rows:
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
