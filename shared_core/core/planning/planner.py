"""Build a plan from two resolved projects, the watermark ledger, `as_of` and the planner settings.

What runs: every model whose data changed (added or modified) and everything downstream of one,
nothing else. A changed MERGE_BY_KEY model is rebuilt from an empty table. How much of an
incremental model runs:

- its own data changed (or it is new): a `backfill` of `[start, as_of)` from an empty table;
- INCREMENTAL_BY_TIME_RANGE below an upstream that rewrote everything (a non-incremental model, or an
  incremental one rebuilt from empty): a `backfill` of `[start, as_of)` over the existing table;
- other INCREMENTAL_BY_TIME_RANGE: `incremental` runs of the ranges its upstreams re-ran, plus every
  range the ledger lacks (gaps and the tail up to `as_of`), plus `lookback` batches before the tail;
- APPEND_ONLY: `incremental` runs of only the ranges the ledger lacks; history is never re-appended.

Only `incremental` steps read the ledger, and the backfills of models without a `start` (see
`window_start`); only those models' ledgers enter the plan's inputs. A ledger range counts only for the
whole batches it covers.

Only complete batches before `as_of` are planned. Contiguous batches are grouped into steps of at
most `max_batches_per_step`; the steps of one model run in order, each after its upstreams' steps. A
plan that would hold more than `max_batches_per_plan` batches is refused before it is built (a limit,
not a plan field: it never changes the bytes of a plan it allows).

A requested backfill (`build_backfill_plan`) plans exactly its range of one model, as `backfill` steps
(applied, they replace that range's rows); with `downstream` the same plan also refreshes what reads it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from shared_core.core.errors import ModelError, PlanLimitError
from shared_core.core.planning.dag import Graph
from shared_core.core.planning.diff import diff_projects
from shared_core.core.planning.intervals import (
    Range,
    add_batches,
    align_ranges,
    ceil_batch,
    chunk_ranges,
    count_batches,
    floor_batch,
    intersect_ranges,
    merge_ranges,
    subtract_ranges,
)
from shared_core.core.planning.plan import (
    DATA_CHANGES,
    ModelChange,
    Plan,
    PlanInputs,
    RunType,
    Step,
    WatermarkRange,
    new_plan,
)
from shared_core.core.planning.watermarks import Ledger, snapshot
from shared_core.core.project.config import PlannerSettings
from shared_core.core.project.headers import Header, format_instant
from shared_core.core.project.models import Model, Project
from shared_core.core.sql.analysis import QueryAnalyzer
from shared_core.core.sql.canonical import CANONICALIZER_VERSION

ZERO_SHA = "0" * 40
_EARLIEST = datetime(1, 1, 1, tzinfo=UTC)  # the first instant a date can hold
_ALL = None  # an upstream effect of "every row may have changed"
#: How far back the first backfill of an incremental model without `start` (and without history) reaches.
DEFAULT_HISTORY = timedelta(days=30)


def build_plan(
    base: Project,
    target: Project,
    *,
    base_sha: str,
    target_sha: str,
    as_of: datetime,
    ledger: Ledger,
    settings: PlannerSettings,
    analyzer: QueryAnalyzer,
) -> Plan:
    """Plan the rebuild of what changed between `base` and `target`.

    Args:
        base: the project at the base commit (empty for a new branch).
        target: the project at the target commit.
        base_sha: the base commit SHA (all zeros for "nothing deployed yet").
        target_sha: the target commit SHA.
        as_of: the instant up to which (exclusive) incremental batches are complete.
        ledger: completed ranges per model.
        settings: planner settings from the project file.
        analyzer: turns model files into canonical SQL (may cache and parallelize).

    Returns:
        The plan, its ID derived from its content.

    Raises:
        ModelError: a model the plan needs fails to parse or is unsafe.
    """
    changes, analyses = diff_projects(base, target, analyzer)
    roots = {c.name: c for c in changes if c.change in DATA_CHANGES}
    affected = target.graph.closure_downstream(roots)
    missing = [target[n] for n in sorted(affected) if target[n].key not in analyses]
    analyses.update(analyzer.analyze_many([(m.key, m.path, m.text) for m in missing]))
    known = {c.name: c.new_hash for c in changes if c.new_hash is not None}  # hashed by the diff already
    hashes = {name: known.get(name) or target[name].content_hash(analyses[target[name].key]) for name in affected}
    steps, consulted = _plan_steps(target, roots, affected, hashes, as_of, ledger, settings)
    return _assemble(
        base_sha=base_sha,
        target_sha=target_sha,
        as_of=as_of,
        settings=settings,
        watermarks=snapshot(ledger, consulted),
        changes=changes,
        steps=steps,
    )


def _plan_steps(
    target: Project,
    roots: Mapping[str, ModelChange],
    affected: set[str],
    hashes: Mapping[str, str],
    as_of: datetime,
    ledger: Ledger,
    settings: PlannerSettings,
) -> tuple[list[Step], list[str]]:
    steps: list[Step] = []
    last_step: dict[str, str] = {}
    effect: dict[str, list[Range] | None] = {}
    consulted: list[str] = []
    limit = _BatchLimit(settings, as_of)
    for name in target.order:
        if name not in affected:
            continue
        model = target[name]
        changed_parents = [p for p in model.upstream if p in affected]
        upstream_steps = sorted(last_step[p] for p in changed_parents if p in last_step)
        reason = roots[name].reason if name in roots else "upstream changed: " + ", ".join(changed_parents)
        header = model.header
        if not header.is_incremental:
            run_type: RunType = "merge" if header.kind == "MERGE_BY_KEY" else "full_refresh"
            reset = name in roots and header.kind == "MERGE_BY_KEY"  # a changed merge model starts from empty
            step = _step(model, hashes[name], run_type, None, 0, reset, tuple(upstream_steps), reason)
            steps.append(step)
            last_step[name] = step.step_id
            effect[name] = _ALL
            continue
        ranges, run_type, reads_ledger = _incremental_ranges(
            model, name in roots, changed_parents, effect, as_of, ledger
        )
        if reads_ledger:
            consulted.append(name)
        limit.add(name, ranges, header.batch)
        effect[name] = _ALL if run_type == "backfill" else ranges
        previous: str | None = None
        chunks = chunk_ranges(ranges, header.batch, settings.max_batches_per_step)
        for index, (chunk, batches) in enumerate(chunks):
            depends = tuple(upstream_steps + ([previous] if previous else []))
            reset = name in roots and index == 0
            step = _step(model, hashes[name], run_type, chunk, batches, reset, depends, reason)
            steps.append(step)
            previous = step.step_id
        if previous:
            last_step[name] = previous
    return _order_steps(steps), consulted


def _incremental_ranges(
    model: Model,
    own_change: bool,
    changed_parents: list[str],
    effect: Mapping[str, list[Range] | None],
    as_of: datetime,
    ledger: Ledger,
) -> tuple[list[Range], RunType, bool]:
    """The ranges to run, the run type, and whether the ledger decided them.

    `backfill` ranges do not depend on the ledger (the whole window runs) unless the model has no `start`
    (the ledger says where the window starts); `incremental` ones do.
    """
    header = model.header
    unit = header.batch
    done = complete_batches(merge_ranges(ledger.get(model.name, ())), unit)
    window = (window_start(header, done, as_of), floor_batch(as_of, unit))
    from_ledger = header.start is None  # the ledger decided where the window starts
    if window[1] <= window[0]:
        return [], "incremental", from_ledger
    if own_change:
        return [window], "backfill", from_ledger
    if header.kind == "INCREMENTAL_BY_TIME_RANGE" and any(effect.get(p, []) is _ALL for p in changed_parents):
        return [window], "backfill", from_ledger
    todo = subtract_ranges(window, done)
    if header.kind == "APPEND_ONLY":
        return todo, "incremental", True
    dirty = [r for p in changed_parents for r in (effect.get(p) or [])]
    if header.lookback and todo and todo[-1][1] == window[1] and todo[-1][0] > window[0]:
        tail_start = todo[-1][0]
        back = min(header.lookback, count_batches(window[0], tail_start, unit))  # never before the model's start
        dirty.append((add_batches(tail_start, unit, -back), tail_start))
    return merge_ranges(todo + intersect_ranges(align_ranges(dirty, unit), window)), "incremental", True


def window_start(header: Header, done: Sequence[Range], as_of: datetime) -> datetime:
    """Where an incremental model's data starts: its `start`, else its ledger's, else `DEFAULT_HISTORY` back.

    A model without `start` (the open-source IronLayer format allows it; the project's `[defaults] start`
    fills it in when set) starts where its table's history starts: the first complete batch of its ledger,
    so rebuilding it never drops history it has. A model with no history yet starts `DEFAULT_HISTORY` before
    the batch that holds `as_of`, on a batch boundary; once that is applied, the ledger holds the start.
    Both come from the plan's inputs (the ledger snapshot and `as_of`), so the plan stays deterministic.

    Args:
        header: the model's header.
        done: its ledger's complete batches, merged and sorted.
        as_of: the plan's `as_of`.

    >>> from shared_core.core.project.headers import parse_instant as p, format_instant as f
    >>> h = type("H", (), {"start": None, "batch": "day"})()
    >>> f(window_start(h, [], p("2024-03-15T06:00:00Z")))
    '2024-02-14T00:00:00Z'
    >>> f(window_start(h, [(p("2024-01-05"), p("2024-02-01"))], p("2024-03-15")))
    '2024-01-05T00:00:00Z'
    """
    if header.start is not None:
        return header.start
    if done:
        return done[0][0]
    latest = floor_batch(as_of, header.batch)
    if latest - _EARLIEST < DEFAULT_HISTORY:  # an as_of in the first weeks of year 1: history from its start
        return _EARLIEST
    return floor_batch(latest - DEFAULT_HISTORY, header.batch)


class _BatchLimit:
    """Counts the batches a plan takes on, model by model, and refuses past `max_batches_per_plan`."""

    def __init__(self, settings: PlannerSettings, as_of: datetime | None) -> None:
        self.limit = settings.max_batches_per_plan
        self.as_of = as_of
        self.total = 0

    def add(self, model: str, ranges: Sequence[Range], unit: str) -> None:
        """Count `model`'s ranges (batches of `unit`).

        Raises:
            PlanLimitError: the plan now holds more batches than the limit; names the number and the setting.
        """
        batches = sum(count_batches(start, end, unit) for start, end in ranges)
        self.total += batches
        if self.total > self.limit:
            moment = f"as_of {format_instant(self.as_of)}" if self.as_of is not None else "this range"
            raise PlanLimitError(
                f"{moment} would plan more than {self.limit:,} batches ({model} alone: {batches:,} {unit} "
                f"batches from {format_instant(ranges[0][0])}), the limit planner.max_batches_per_plan = "
                f"{self.limit}; give an earlier as_of or a narrower range, or raise max_batches_per_plan under "
                "[planner] in ironlayer.toml"
            )


def complete_batches(ranges: list[Range], unit: str) -> list[Range]:
    """Shrink completed ranges inward to whole batches: a half-done batch is not done."""
    shrunk = ((ceil_batch(s, unit), floor_batch(e, unit)) for s, e in ranges)
    return [(s, e) for s, e in shrunk if s < e]


def _step(
    model: Model,
    model_hash: str,
    run_type: RunType,
    window: Range | None,
    batches: int,
    reset: bool,
    depends_on: tuple[str, ...],
    reason: str,
) -> Step:
    header = model.header
    return Step(
        model=model.name,
        kind=header.kind,
        materialization=header.materialization,
        run_type=run_type,
        start=format_instant(window[0]) if window else None,
        end=format_instant(window[1]) if window else None,
        batch=header.batch if header.is_incremental else None,
        batches=batches,
        reset=reset,
        model_hash=model_hash,
        depends_on=tuple(sorted(depends_on)),
        reason=reason,
    )


def _order_steps(steps: list[Step]) -> list[Step]:
    """Topological order (ties by model name, then range start) with each step's wave."""
    by_id = {step.step_id: step for step in steps}
    graph = Graph({sid: step.depends_on for sid, step in by_id.items()})
    waves = graph.waves()
    order = graph.topological_order(key=lambda sid: (by_id[sid].model, by_id[sid].start or "", sid))
    return [replace(by_id[sid], parallel_group=waves[sid]) for sid in order]


def _assemble(
    *,
    base_sha: str,
    target_sha: str,
    as_of: datetime,
    settings: PlannerSettings,
    watermarks: Mapping[str, tuple[WatermarkRange, ...]],
    changes: list[ModelChange],
    steps: list[Step],
) -> Plan:
    inputs = PlanInputs(canonicalizer=CANONICALIZER_VERSION, planner=settings, watermarks=watermarks)
    return new_plan(base=base_sha, target=target_sha, as_of=format_instant(as_of), inputs=inputs, models=changes,
                    steps=steps)


def build_backfill_plan(
    target: Project,
    model_name: str,
    start: datetime,
    end: datetime,
    *,
    target_sha: str,
    settings: PlannerSettings,
    analyzer: QueryAnalyzer,
    downstream: bool = False,
    ledger: Ledger | None = None,
) -> Plan:
    """Plan exactly the batches of `[start, end)` (widened to whole batches) of one incremental model.

    With `downstream`, the same plan then refreshes, in dependency order, every model downstream of it that
    reads what re-ran (`_downstream_steps`); `ledger` says which batches of those models exist.

    Raises:
        ModelError: the model is not incremental, or the range is empty or before the model's start.
    """
    model = target[model_name]
    header = model.header
    if not header.is_incremental:
        raise ModelError(f"backfill takes an incremental model; {model_name} is {header.kind}", path=model.path)
    first = header.start or start  # without a start of its own, the model's data starts where it is asked to
    window = align_ranges([(max(start, first), end)], header.batch)
    if not window or start >= end:
        raise ModelError(
            f"backfill range [{format_instant(start)}, {format_instant(end)}) of {model_name} is empty or before its "
            f"start {format_instant(first)}",
            path=model.path,
        )
    _BatchLimit(settings, None).add(model_name, window, header.batch)
    analysis = analyzer.analyze_many([(model.key, model.path, model.text)])[model.key]
    model_hash = model.content_hash(analysis)
    reason = f"backfill requested for {format_instant(window[0][0])} to {format_instant(window[-1][1])}"
    steps: list[Step] = []
    previous: str | None = None
    for chunk, batches in chunk_ranges(window, header.batch, settings.max_batches_per_step):
        step = _step(model, model_hash, "backfill", chunk, batches, False, (previous,) if previous else (), reason)
        steps.append(step)
        previous = step.step_id
    watermarks: dict[str, tuple[WatermarkRange, ...]] = {}
    if downstream:
        assert previous is not None  # the window is not empty
        more, read = _downstream_steps(target, model_name, window, previous, ledger or {}, settings, analyzer)
        steps += more
        watermarks = snapshot(ledger or {}, read)
    return _assemble(
        base_sha=target_sha, target_sha=target_sha, as_of=window[-1][1], settings=settings, watermarks=watermarks,
        changes=[], steps=_order_steps(steps),
    )


def _downstream_steps(
    target: Project,
    root: str,
    window: list[Range],
    root_step: str,
    ledger: Ledger,
    settings: PlannerSettings,
    analyzer: QueryAnalyzer,
) -> tuple[list[Step], list[str]]:
    """The refresh of everything downstream of `root` after `window` of it re-ran, and the models whose ledger
    decided it.

    Walking the DAG in order, a model runs when an upstream it reads re-ran something: a non-incremental
    model rebuilds (full refresh, or merge); an incremental model re-runs the batches of its ledger (what
    exists) that overlap what its upstreams re-ran, widened to its batch, or all of them below a model that
    was rebuilt whole. Those are `backfill` steps: they replace their ranges, never append them twice.
    """
    order = [n for n in target.order if n in target.graph.closure_downstream([root]) and n != root]
    models = [target[n] for n in order]
    analyses = analyzer.analyze_many([(m.key, m.path, m.text) for m in models])
    effect: dict[str, list[Range] | None] = {root: window}
    last_step = {root: root_step}
    steps: list[Step] = []
    read: list[str] = []
    for model in models:
        header = model.header
        parents = [p for p in model.upstream if p in effect and effect[p] != []]
        if not parents:
            continue
        reason = f"downstream of the backfill of {root}: upstream re-ran ({', '.join(parents)})"
        upstream_steps = tuple(sorted(last_step[p] for p in parents if p in last_step))
        model_hash = model.content_hash(analyses[model.key])
        if not header.is_incremental:
            run_type: RunType = "merge" if header.kind == "MERGE_BY_KEY" else "full_refresh"
            step = _step(model, model_hash, run_type, None, 0, False, upstream_steps, reason)
            steps.append(step)
            last_step[model.name], effect[model.name] = step.step_id, _ALL
            continue
        read.append(model.name)
        built = complete_batches(merge_ranges(ledger.get(model.name, ())), header.batch)
        if any(effect[p] is _ALL for p in parents):
            ranges = built
        else:
            dirty = align_ranges([r for p in parents for r in effect[p] or []], header.batch)
            ranges = merge_ranges(piece for done in built for piece in intersect_ranges(dirty, done))
        effect[model.name] = ranges
        previous: str | None = None
        for chunk, batches in chunk_ranges(ranges, header.batch, settings.max_batches_per_step):
            depends = upstream_steps + ((previous,) if previous else ())
            step = _step(model, model_hash, "backfill", chunk, batches, False, depends, reason)
            steps.append(step)
            previous = step.step_id
        if previous:
            last_step[model.name] = previous
    return steps, read


def build_catchup_plan(
    target: Project,
    model_names: Sequence[str],
    *,
    target_sha: str,
    as_of: datetime,
    ledger: Ledger,
    settings: PlannerSettings,
    analyzer: QueryAnalyzer,
) -> Plan:
    """Plan exactly the missing batches (gaps, the tail and `lookback`) of scheduled incremental models.

    Models run in dependency order among themselves; nothing else is planned.
    """
    selected = set(model_names)
    models = [target[name] for name in target.order if name in selected]
    analyses = analyzer.analyze_many([(m.key, m.path, m.text) for m in models])
    steps: list[Step] = []
    last_step: dict[str, str] = {}
    limit = _BatchLimit(settings, as_of)
    for model in models:
        ranges, run_type, _ = _incremental_ranges(model, False, [], {}, as_of, ledger)
        limit.add(model.name, ranges, model.header.batch)
        batches_total = sum(count_batches(s, e, model.header.batch) for s, e in ranges)
        reason = f"schedule {model.header.cron}: {batches_total} missing batch{'es' if batches_total != 1 else ''}"
        upstream_steps = [last_step[p] for p in model.upstream if p in last_step]
        previous: str | None = None
        model_hash = model.content_hash(analyses[model.key])
        for chunk, batches in chunk_ranges(ranges, model.header.batch, settings.max_batches_per_step):
            depends = tuple(sorted(upstream_steps + ([previous] if previous else [])))
            step = _step(model, model_hash, run_type, chunk, batches, False, depends, reason)
            steps.append(step)
            previous = step.step_id
        if previous:
            last_step[model.name] = previous
    return _assemble(
        base_sha=target_sha, target_sha=target_sha, as_of=as_of, settings=settings,
        watermarks=snapshot(ledger, [m.name for m in models]), changes=[], steps=_order_steps(steps),
    )
