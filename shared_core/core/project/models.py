"""Load model files into a resolved project: headers, refs, the DAG and content hashes.

Loading is cheap on purpose: only headers and `{{ ... }}` expressions are read (no SQL parsing), which
is all the DAG needs. The expensive SQL analysis is asked for later, and only for the models a plan
touches, through a `QueryAnalyzer` (see `ports.py`). A model's identity is its `name`, never its path.
The DAG's nodes are models; a model's declared external `sources` (`-- sources: raw.orders`) are leaves
outside it, read but never built, so they add no edge and no step, and a source may not name a model.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from shared_core.core.errors import CycleError, ModelError, RefError
from shared_core.core.planning.dag import Graph
from shared_core.core.project.headers import Header, aligned, format_instant, header_line, parse_header
from shared_core.core.project.templating import render_template
from shared_core.core.sql.canonical import CANONICALIZER_VERSION, QueryAnalysis, content_key, resolve_canonical


@dataclass(frozen=True)
class ModelSource:
    """A model file as handed to the core: repository-relative path and decoded text."""

    path: str
    text: str


@dataclass(frozen=True)
class Model:
    """A loaded model: validated header, refs resolved to model names, upstreams."""

    header: Header
    path: str
    text: str
    key: str  # content key: SHA-256 of the bytes with the canonicalizer version
    refs: tuple[str, ...]  # refs as written (lower-cased), by token number
    ref_targets: tuple[str, ...]  # the model each ref resolves to, by token number
    upstream: tuple[str, ...]  # resolved refs and `dependencies`, sorted, distinct

    @property
    def name(self) -> str:
        return self.header.name

    def content_hash(self, analysis: QueryAnalysis) -> str:
        """SHA-256 of everything that decides this model's data: canonical SQL and data fields.

        Metadata (owner, tags, tests, cron, ...) is excluded, so editing it never triggers a rebuild.
        """
        payload = {
            "canonicalizer": CANONICALIZER_VERSION,
            "fields": self.header.data_fields(),
            "sql": resolve_canonical(analysis, self.ref_targets),
        }
        return sha256_json(payload)


def sha256_json(value: object) -> str:
    """SHA-256 (hex) of the canonical JSON of `value`: sorted keys, compact, UTF-8."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()


def canonical_json(value: object) -> str:
    """The one canonical JSON text of `value`.

    >>> canonical_json({"b": 1, "a": [1, "é"]})
    '{"a":[1,"é"],"b":1}'
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


class Project:
    """All models of one commit, resolved: name lookup, the DAG and its topological order."""

    def __init__(self, models: Mapping[str, Model]) -> None:
        self.models: dict[str, Model] = dict(sorted(models.items()))
        self.graph = Graph({name: model.upstream for name, model in self.models.items()})
        try:
            self.order = self.graph.topological_order()
        except CycleError:  # only then look for the cycle to report (a full walk of the graph)
            cycle = self.graph.find_cycle()
            if cycle:
                raise CycleError(cycle, path=self.models[cycle[0]].path) from None
            raise
        self.position = {name: index for index, name in enumerate(self.order)}

    def __len__(self) -> int:
        return len(self.models)

    def __contains__(self, name: object) -> bool:
        return name in self.models

    def __getitem__(self, name: str) -> Model:
        return self.models[name]

    def resolve_name(self, name: str) -> str:
        """The full model name for a full or unambiguous short name (for CLI arguments).

        Raises:
            RefError: no such model, or the short name is ambiguous.
        """
        return _Resolver(self.models).resolve(name.lower(), path="", line=0, context="argument")


@dataclass(frozen=True)
class ScannedSource:
    """What loading reads from one file: header, refs with their lines, and the content key.

    It depends on the file's text alone (the path only names the file in error messages), so one
    scan serves every file, commit and run with the same bytes.
    """

    header: Header
    refs: tuple[str, ...]  # refs as written (lower-cased), by token number
    ref_lines: tuple[int, ...]  # 1-based line of each ref's first appearance
    key: str  # content key (see `content_key`)


def scan_source(source: ModelSource) -> ScannedSource:
    """Parse the header and template expressions of one file (no SQL parsing).

    Raises:
        ModelError: a header or template error (naming the file).
    """
    header = parse_header(source.text, source.path)
    template = render_template(source.text, source.path)
    return ScannedSource(header, template.refs, template.ref_lines, content_key(source.text))


def load_project(
    sources: Sequence[ModelSource], *, scan: Callable[[ModelSource], ScannedSource] = scan_source,
    default_start: datetime | None = None,
) -> Project:
    """Parse headers and refs of every file and resolve them into a `Project`.

    Args:
        sources: the model files.
        scan: `scan_source`, or a function returning the same result (e.g. reusing the scans of
            files with the same bytes).
        default_start: the project's `[defaults] start`, for incremental models without `start`.

    Raises:
        ModelError: a header or template error, a duplicate name, an unresolved or ambiguous ref,
            a declared source that is a model, or a cycle (each naming the file).
    """
    scanned: dict[str, tuple[ScannedSource, ModelSource]] = {}
    for source in sorted(sources, key=lambda s: s.path):
        found = scan(source)
        name = found.header.name
        if name in scanned:
            other = scanned[name][1].path
            raise ModelError(
                f"duplicate model name '{name}' (also defined in {other}); model names must be unique",
                path=source.path,
            )
        scanned[name] = (found, source)
    resolver = _Resolver({name: entry[0] for name, entry in scanned.items()})
    models = {name: _resolve(found, source, resolver, default_start) for name, (found, source) in scanned.items()}
    return Project(models)


def resolve_leniently(
    scanned: Sequence[tuple[ModelSource, ScannedSource]], *, unreadable: Collection[str] = (),
    default_start: datetime | None = None,
) -> tuple[Project | None, list[ModelError]]:
    """Resolve what can be resolved and collect every problem, for `check` (planning uses `load_project`).

    Args:
        scanned: the files whose header and template are valid, with their scans.
        unreadable: names of models whose files are invalid: refs to them are not reported again.
        default_start: as for `load_project`.

    Returns:
        The project of the models whose refs all resolve to valid models (None when they form a cycle),
        and the problems: duplicate names, unresolved or ambiguous refs, sources that are models, cycles.
    """
    errors: list[ModelError] = []
    first: dict[str, tuple[ScannedSource, ModelSource]] = {}
    for source, found in sorted(scanned, key=lambda item: item[0].path):
        name = found.header.name
        if name in first:
            errors.append(ModelError(f"duplicate model name '{name}' (also defined in {first[name][1].path}); model "
                                     "names must be unique", path=source.path))
        else:
            first[name] = (found, source)
    resolver = _Resolver({**dict.fromkeys(unreadable), **first})
    models: dict[str, Model] = {}
    for found, source in first.values():
        try:
            models[found.header.name] = _resolve(found, source, resolver, default_start)
        except ModelError as exc:
            errors.append(exc)
    while True:  # a model above an invalid one cannot be built: it stays out of the project (without an error)
        blocked = [name for name, model in models.items() if not all(up in models for up in model.upstream)]
        if not blocked:
            break
        for name in blocked:
            del models[name]
    try:
        return Project(models), errors
    except CycleError as exc:
        return None, [*errors, exc]


def _resolve(found: ScannedSource, source: ModelSource, resolver: _Resolver, default_start: datetime | None) -> Model:
    """One model with its refs and `dependencies` resolved and the project's defaults applied.

    Raises:
        RefError: a ref or dependency names no model, or an ambiguous short name.
        ModelError: a declared source is a model, or the default start does not fit the model's batch;
            CycleError: the model reads itself.
    """
    header = apply_defaults(found.header, default_start, source)
    refs, name = found.refs, header.name
    full = resolver.full  # a full name resolves to itself: skip the call for the common case
    targets = tuple(
        ref if ref in full else resolver.resolve(ref, path=source.path, line=line, context="ref")
        for ref, line in zip(refs, found.ref_lines, strict=True)
    )
    extra = tuple(resolver.resolve(dep, path=source.path, line=1, context="dependencies")
                  for dep in header.dependencies) if header.dependencies else ()
    upstream = tuple(sorted(set(targets).union(extra)))
    for declared in header.sources:
        if declared in full:
            raise ModelError(
                f"source '{declared}' is a model of this project; read it with {{{{ ref('{declared}') }}}} "
                "instead of declaring it", path=source.path, line=header_line(source.text, "sources"),
            )
    if name in upstream:
        raise CycleError([name, name], path=source.path)
    return Model(header, source.path, source.text, found.key, refs, targets, upstream)


def apply_defaults(header: Header, default_start: datetime | None, source: ModelSource) -> Header:
    """`header` with the project's default `start` when it is incremental and names none itself.

    The default is the model's start as if its header said it, hashed with its data fields: changing the
    default rebuilds the models that use it. Without a default, the planner finds the start (see
    `shared_core.core.planning.planner.window_start`).

    Raises:
        ModelError: the default start is not on a boundary of the model's batch.
    """
    if default_start is None or header.start is not None or not header.is_incremental:
        return header
    if not aligned(default_start, header.batch):
        raise ModelError(
            f"the project's default start {format_instant(default_start)} ([defaults] start) is not on a "
            f"{header.batch} boundary; give {header.name} its own '-- start:' or align the default",
            path=source.path, line=header_line(source.text, "kind"),
        )
    return replace(header, start=default_start)


class _Resolver:
    """Resolves full and unambiguous short model names, with did-you-mean suggestions."""

    def __init__(self, names: Mapping[str, object]) -> None:
        self.full = set(names)
        self.short: dict[str, list[str]] = {}
        for name in sorted(names):
            self.short.setdefault(name.rsplit(".", 1)[-1], []).append(name)

    def resolve(self, name: str, *, path: str, line: int, context: str) -> str:
        if name in self.full:
            return name
        candidates = self.short.get(name, []) if "." not in name else []
        if len(candidates) == 1:
            return candidates[0]
        if len(candidates) > 1:
            raise RefError(
                f"{context} '{name}' is ambiguous: it matches {', '.join(candidates)}; use the full name",
                path=path, line=line,
            )
        close = difflib.get_close_matches(name, sorted(self.full | set(self.short)), n=1, cutoff=0.6)
        hint = f"; did you mean '{close[0]}'?" if close else "; check the model name"
        raise RefError(f"{context} '{name}' matches no model{hint}", path=path, line=line)
