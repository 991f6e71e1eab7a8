"""Structural diff of two resolved projects: added, modified, removed, cosmetic and metadata changes.

Two versions of a model are compared by content hash (canonical SQL plus data-affecting header
fields, one scheme for both sides). Identical bytes with identical ref resolution (and the same
project default `start`) are unchanged without parsing anything; only models whose bytes differ are
analyzed.
"""

from __future__ import annotations

from shared_core.core.planning.plan import ModelChange
from shared_core.core.project.models import Model, Project
from shared_core.core.sql.analysis import QueryAnalyzer
from shared_core.core.sql.canonical import QueryAnalysis, resolve_canonical

__all__ = ["diff_projects"]


def diff_projects(
    base: Project, target: Project, analyzer: QueryAnalyzer
) -> tuple[list[ModelChange], dict[str, QueryAnalysis]]:
    """Classify every model that differs between `base` and `target`.

    Returns:
        The changes sorted by model name, and the analyses computed (by content key) for reuse.

    Raises:
        ModelError: a changed model's SQL fails to parse or is unsafe.
    """
    names = sorted(set(base.models) | set(target.models))
    to_analyze: list[Model] = []
    candidates: list[str] = []
    for name in names:
        old, new = base.models.get(name), target.models.get(name)
        if old is not None and new is not None and _same_version(old, new):
            continue
        candidates.append(name)
        to_analyze.extend(m for m in (new, old) if m is not None)
    analyses = analyzer.analyze_many([(m.key, m.path, m.text) for m in to_analyze])
    changes: list[ModelChange] = []
    for name in candidates:
        old, new = base.models.get(name), target.models.get(name)
        old_hash = old.content_hash(analyses[old.key]) if old else None
        new_hash = new.content_hash(analyses[new.key]) if new else None
        if old is None:
            changes.append(ModelChange(name, "added", None, new_hash, f"new model ({new.header.kind})"))  # type: ignore[union-attr]
        elif new is None:
            changes.append(ModelChange(name, "removed", old_hash, None, "removed; its table is left in place"))
        elif old_hash != new_hash:
            reason = _modified_reason(old, new, analyses[old.key], analyses[new.key])
            changes.append(ModelChange(name, "modified", old_hash, new_hash, reason))
        else:
            meta_old, meta_new = old.header.meta_fields(), new.header.meta_fields()
            changed_keys = sorted(k for k in set(meta_old) | set(meta_new) if meta_old.get(k) != meta_new.get(k))
            if changed_keys:
                reason = f"metadata only ({', '.join(changed_keys)}); no rebuild"
                changes.append(ModelChange(name, "metadata", old_hash, new_hash, reason))
            else:
                reason = "formatting, comments or spelling only; canonical SQL unchanged, no rebuild"
                changes.append(ModelChange(name, "cosmetic", old_hash, new_hash, reason))
    return changes, analyses


def _same_version(old: Model, new: Model) -> bool:
    """Same bytes, same ref resolution and the same project default `start`: the same model, nothing to parse."""
    return old.key == new.key and old.ref_targets == new.ref_targets and old.header.start == new.header.start


def _modified_reason(old: Model, new: Model, old_sql: QueryAnalysis, new_sql: QueryAnalysis) -> str:
    parts = []
    if resolve_canonical(old_sql, old.ref_targets) != resolve_canonical(new_sql, new.ref_targets):
        parts.append("SQL logic changed")
    old_fields, new_fields = old.header.data_fields(), new.header.data_fields()
    for key in sorted(old_fields):
        if old_fields[key] != new_fields[key]:
            parts.append(f"{key}: {old_fields[key] or '(none)'} -> {new_fields[key] or '(none)'}")
    return "; ".join(parts)
