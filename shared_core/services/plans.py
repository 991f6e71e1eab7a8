"""Planning use cases: plan two commits, catch up scheduled models, backfill a range, store and read plans.

`ironlayer plan`, `ironlayer backfill`, the Functions' `build_plan_activity` and the benchmarks all plan
through these functions, so a plan of the same inputs has the same bytes wherever it is made. They take
the git source, analyzer, state store and blob store as arguments and build none of them. Beside a plan
the Functions keep its review data (`plans/<id>.review.json`: the SQL of its added and modified models,
the changes of tests and contracts) and, in the state store, its base (`services.bases`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, TypedDict

from shared_core.core.errors import CheckFailedError, PlanError, SourceError, StateError
from shared_core.core.planning.plan import Plan
from shared_core.core.planning.plan_codec import load_plan, plan_to_json
from shared_core.core.planning.planner import build_backfill_plan, build_catchup_plan, build_plan
from shared_core.core.planning.review import CheckChanges, check_changes, deployed_tests
from shared_core.core.planning.watermarks import Ledger
from shared_core.core.project.loading import CommitProject, load_commit, load_commits, read_config
from shared_core.core.project.models import Model, Project, ScannedSource
from shared_core.core.sql.canonical import resolve_canonical
from shared_core.ports import BatchAnalyzer, BlobStore, GitSource, PlanStore, QueryAnalyzer, StateStore
from shared_core.services.messages import PlanRef

if TYPE_CHECKING:
    from shared_core.services.jobs import JobInput

ZERO_SHA = "0" * 40


class ReviewDoc(TypedDict):
    """The review data stored beside a plan for the approval page (`plans/<id>.review.json`)."""

    sql: dict[str, tuple[str | None, str]]  # model -> (old canonical SQL, None for an added model; new SQL)
    checks: CheckChanges  # model -> {"tests" | "contract": [old, new]}


@dataclass(frozen=True)
class CommitsPlan:
    """A plan of two commits and the projects it was made from."""

    plan: Plan
    base: CommitProject
    target: CommitProject


def plan_commits(
    source: GitSource,
    base_ref: str,
    target_ref: str,
    *,
    ledger: Ledger,
    analyzer: BatchAnalyzer,
    as_of: datetime | None = None,
    scans: MutableMapping[str, ScannedSource] | None = None,
    on_loaded: Callable[[], None] | None = None,
) -> CommitsPlan:
    """Plan the rebuild of what changed from `base_ref` to `target_ref` (a push, or `ironlayer plan`).

    Both commits are read in one go; the analyses the plan will probably need start in the background
    while the rest loads. The caller closes `analyzer` (its workers) when done.

    Args:
        source: the repository.
        base_ref: the base commit (all zeros: nothing deployed yet).
        target_ref: the target commit.
        ledger: completed ranges per model.
        analyzer: turns model files into canonical SQL.
        as_of: the instant incremental batches run up to (default: the target commit's time).
        scans: header/ref scans by blob id, reused and filled in.
        on_loaded: called once both commits are loaded, before planning (e.g. to save `scans`).

    Returns:
        The plan and both commits' projects.

    Raises:
        SourceError: an unknown ref, or the target is the all-zero SHA.
        ModelError, ProjectError: a model or the project file of either commit is invalid.
    """
    base_sha, target_sha = source.resolve(base_ref), source.resolve(target_ref)
    if target_sha == ZERO_SHA:
        raise SourceError("TARGET is the all-zero SHA (a deleted branch); there is nothing to plan")
    moment = as_of if as_of is not None else source.commit_time(target_sha)
    if analyzer.is_cold():
        files = source.list_files(target_sha, read_config(source, target_sha).models_path, ".sql")
        if len(files) >= analyzer.parallel_min_files:
            analyzer.start_workers()  # nothing cached: the workers load the SQL parser while loading runs
    target, base = load_commits(source, [target_sha, base_sha], scans=scans)  # shared files: read, scanned once
    analyzer.prefetch(likely_analyses(base.project, target.project))
    if on_loaded is not None:
        on_loaded()
    plan = build_plan(
        base.project, target.project, base_sha=base_sha, target_sha=target_sha, as_of=moment, ledger=ledger,
        settings=target.config.planner, analyzer=analyzer,
    )
    return CommitsPlan(plan, base, target)


def likely_analyses(base: Project, target: Project) -> list[tuple[str, str, str]]:
    """The files a plan from `base` to `target` will probably analyze, as `(key, path, text)`.

    That is both versions of every model whose bytes or refs differ, and in the target everything
    downstream of one; handed to the analyzer ahead of time so that it analyzes them all in one batch.
    It is only a hint: the planner asks for exactly what it needs either way.
    """
    old_models, new_models = base.models, target.models
    changed = [
        name for name, new in new_models.items()
        if (old := old_models.get(name)) is None or old.key != new.key or old.ref_targets != new.ref_targets
        or old.header.start != new.header.start
    ]
    models = [model for name in changed for model in (new_models[name], old_models.get(name)) if model is not None]
    models += [model for name, model in old_models.items() if name not in new_models]
    models += [new_models[name] for name in sorted(target.graph.closure_downstream(changed))]
    return [(model.key, model.path, model.text) for model in models]


def sql_diffs(plan: Plan, base: Project, target: Project,
              analyzer: QueryAnalyzer) -> dict[str, tuple[str | None, str]]:
    """The old and new canonical SQL of every modified model of `plan`, and the SQL of every added one (old None)."""
    shown = [(m.name, m.change) for m in plan.models if m.change in ("added", "modified")]
    models = [model for name, change in shown for model in (target[name], base[name] if change == "modified" else None)
              if model is not None]
    analyses = analyzer.analyze_many([(m.key, m.path, m.text) for m in models])

    def canonical(model: Model) -> str:
        return resolve_canonical(analyses[model.key], model.ref_targets)

    return {name: (canonical(base[name]) if change == "modified" else None, canonical(target[name]))
            for name, change in shown}


def review_of(plan: Plan, base: Project, target: Project, analyzer: QueryAnalyzer) -> ReviewDoc:
    """The review data of a plan, stored beside it for the approval page: `sql` (`sql_diffs`) and `checks`
    (the models whose tests or contract change, `core.planning.review.check_changes`)."""
    return ReviewDoc(checks=check_changes(plan, base, target), sql=sql_diffs(plan, base, target, analyzer))


def plan_catchup(
    source: GitSource, target_ref: str, models: Sequence[str], *, as_of: datetime, ledger: Ledger,
    analyzer: QueryAnalyzer,
) -> Plan:
    """Plan the missing batches of scheduled incremental `models` at `target_ref`, up to `as_of`.

    Raises:
        SourceError, ModelError, ProjectError: the commit cannot be read or loaded.
    """
    target = load_commit(source, source.resolve(target_ref))
    return build_catchup_plan(
        target.project, models, target_sha=target.sha, as_of=as_of, ledger=ledger, settings=target.config.planner,
        analyzer=analyzer,
    )


def plan_backfill(
    source: GitSource, ref: str, model: str, start: datetime, end: datetime, *, analyzer: QueryAnalyzer,
    downstream: bool = False, ledger: Ledger | None = None,
) -> tuple[Plan, CommitProject]:
    """Plan exactly `[start, end)` of one incremental model at `ref`; returns the plan and the commit's project.

    With `downstream`, the plan also refreshes every model downstream of it that reads what re-ran, in
    dependency order (`ledger`: the completed ranges, which say which batches of those models exist).

    Raises:
        ModelError: the model is unknown, not incremental, or the range is empty.
        SourceError: the ref cannot be read.
    """
    commit = load_commit(source, source.resolve(ref))
    plan = build_backfill_plan(
        commit.project, commit.project.resolve_name(model), start, end, target_sha=commit.sha,
        settings=commit.config.planner, analyzer=analyzer, downstream=downstream, ledger=ledger,
    )
    return plan, commit


async def plan_job(job: JobInput, instance: str, *, store: StateStore, blobs: BlobStore, source: GitSource,
                   analyzer: BatchAnalyzer) -> PlanRef:
    """Plan a job (a push: its two commits; a schedule: the catch-up of its models), store the plan with its
    review data and its base (the deployed versions it is built against), link the job.

    A push is checked first, in full (`ironlayer check --ref` of its target): a commit whose models `check`
    refuses (including a relation read without a `sources` declaration) is never planned, since `apply`
    would refuse it.

    Returns:
        The plan's ID, its steps as positions in the plan (never the body, not even step IDs: each wave's
        positions, and each step's upstream positions) and whether tests or contracts change (then it needs
        approval even with no step), for the orchestrator.

    Raises:
        CheckFailedError: the pushed commit's models have problems (every one is in the error).
        CoreError: the commits cannot be read or planned, or a store refuses.
    """
    from shared_core.core.project.headers import parse_instant
    from shared_core.services.apply import step_positions
    from shared_core.services.bases import record_plan_base
    from shared_core.services.project import check_commit

    ledger = await store.load_ledger(job.tenant_id)
    review = ReviewDoc(checks={}, sql={})
    if job.kind == "schedule":
        plan = await asyncio.to_thread(plan_catchup, source, job.target, job.models or (),
                                       as_of=parse_instant(job.as_of or ""), ledger=ledger, analyzer=analyzer)
    else:
        report = await asyncio.to_thread(check_commit, source, job.target, analyzer)
        if report.errors:
            raise CheckFailedError(report.errors, where=report.where)
        planned = await asyncio.to_thread(plan_commits, source, job.base, job.target, ledger=ledger,
                                          analyzer=analyzer)
        plan = planned.plan
        review = await asyncio.to_thread(review_of, plan, planned.base.project, planned.target.project, analyzer)
    await store_plan(store, blobs, job.tenant_id, plan, review=review)
    await record_plan_base(store, job.tenant_id, plan, tests=deployed_tests(plan, review["checks"]))
    await store.upsert_job(job.tenant_id, instance, plan_id=plan.plan_id, kind=job.kind,
                           repository=job.repository, target=job.target)
    waves, depends_on = step_positions(plan)
    return PlanRef(status="planned", plan_id=plan.plan_id, waves=waves, depends_on=depends_on,
                   checks_changed=bool(review["checks"]))


def plan_key(plan_id: str) -> str:
    """The blob key of a plan's exact bytes."""
    return f"plans/{plan_id}.json"


def review_key(plan_id: str) -> str:
    """The blob key of a plan's review data (`review_of`)."""
    return f"plans/{plan_id}.review.json"


async def store_plan(store: PlanStore, blobs: BlobStore, tenant_id: str, plan: Plan, *,
                     review: ReviewDoc | None = None) -> None:
    """Keep a plan: its bytes (and its review data) in the blob store by plan ID, then its row in the state store."""
    text = await asyncio.to_thread(plan_to_json, plan)
    await asyncio.to_thread(blobs.put, plan_key(plan.plan_id), text.encode(), content_type="application/json")
    await asyncio.to_thread(blobs.put, review_key(plan.plan_id),
                            json.dumps(review or ReviewDoc(checks={}, sql={}), sort_keys=True).encode(),
                            content_type="application/json")
    await store.save_plan(tenant_id, plan, text)


async def read_review(blobs: BlobStore, plan_id: str) -> ReviewDoc:
    """The review data stored beside a plan (empty parts when none was stored).

    Raises:
        PlanError: the stored review data is not what `store_plan` writes.
    """
    data = await asyncio.to_thread(blobs.get, review_key(plan_id))
    stored: object = json.loads(data) if data else {}
    sql = stored.get("sql", {}) if isinstance(stored, dict) else None
    checks = stored.get("checks", {}) if isinstance(stored, dict) else None
    if not (isinstance(sql, dict) and all(
            isinstance(pair, list) and len(pair) == 2 and (pair[0] is None or isinstance(pair[0], str))
            and isinstance(pair[1], str) for pair in sql.values())
            and isinstance(checks, dict) and all(
            isinstance(parts, dict) and all(isinstance(v, list) and all(isinstance(t, str) for t in v)
                                            for v in parts.values()) for parts in checks.values())):
        raise PlanError(f"the review data of plan {plan_id[:12]} is malformed; re-plan")
    return ReviewDoc(checks=checks, sql={name: (old, new) for name, (old, new) in sql.items()})


async def read_stored_plan(blobs: BlobStore, plan_id: str) -> Plan | None:
    """The plan stored under `plan_id`, integrity-checked (`load_plan`), or None when it is not stored.

    Raises:
        PlanError: the stored bytes are not the plan they claim to be.
    """
    data = await asyncio.to_thread(blobs.get, plan_key(plan_id))
    # checking a big plan's IDs is CPU work: off the event loop, like the read
    return None if data is None else await asyncio.to_thread(load_plan, data.decode(), plan_key(plan_id))


async def require_stored_plan(blobs: BlobStore, plan_id: str) -> Plan:
    """`read_stored_plan`, for a plan that must be there.

    Raises:
        PlanError: the plan is missing from the blob store, or its bytes do not check out.
    """
    plan = await read_stored_plan(blobs, plan_id)
    if plan is None:
        raise PlanError(f"plan {plan_id[:12]} is missing from the blob store")
    return plan


async def find_plan_id(store: PlanStore, tenant_id: str, prefix: str) -> str:
    """The one plan ID of the tenant that starts with `prefix` (a whole ID is returned as it is).

    Raises:
        StateError: no plan, or more than one, starts with `prefix`.
    """
    if len(prefix) >= 64:
        return prefix
    matches = [p["plan_id"] for p in await store.list_plans(tenant_id, 1000) if p["plan_id"].startswith(prefix)]
    if len(matches) != 1:
        raise StateError(f"--plan {prefix} matches {len(matches)} plans; give more of the plan ID")
    return matches[0]
