"""IronLayer's core: load SQL models, diff two commits and build a deterministic plan.

The pure modules (headers, templating, canonical, models, dag, diff, intervals, watermarks, planner,
plan) take values and return values; they never read the environment or the clock and do no I/O.
Adapters (`shared_core.adapters`) and the CLI (`shared_core.cli`) sit around them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the names as mypy sees them; at run time `__getattr__` imports each on first use
    from shared_core.core.errors import (
        CoreError,
        CycleError,
        ModelError,
        PlanError,
        ProjectError,
        RefError,
        SourceError,
        UnsafeSqlError,
        WatermarkError,
    )
    from shared_core.core.planning.dag import Graph
    from shared_core.core.planning.diff import diff_projects
    from shared_core.core.planning.plan import ModelChange, Plan, Step
    from shared_core.core.planning.plan_codec import load_plan, plan_to_canonical, plan_to_json
    from shared_core.core.planning.planner import build_plan
    from shared_core.core.planning.watermarks import parse_watermarks
    from shared_core.core.project.config import PlannerSettings, ProjectConfig, parse_project_config
    from shared_core.core.project.models import Model, ModelSource, Project, canonical_json, load_project, sha256_json
    from shared_core.core.sql.analysis import InlineAnalyzer, QueryAnalyzer
    from shared_core.core.sql.canonical import CANONICALIZER_VERSION, QueryAnalysis, analyze_query
    from shared_core.ports import GitSource

_EXPORTS = {
    "CANONICALIZER_VERSION": "shared_core.core.sql.canonical",
    "CoreError": "shared_core.core.errors",
    "CycleError": "shared_core.core.errors",
    "GitSource": "shared_core.ports",
    "Graph": "shared_core.core.planning.dag",
    "InlineAnalyzer": "shared_core.core.sql.analysis",
    "Model": "shared_core.core.project.models",
    "ModelChange": "shared_core.core.planning.plan",
    "ModelError": "shared_core.core.errors",
    "ModelSource": "shared_core.core.project.models",
    "Plan": "shared_core.core.planning.plan",
    "PlanError": "shared_core.core.errors",
    "PlannerSettings": "shared_core.core.project.config",
    "Project": "shared_core.core.project.models",
    "ProjectConfig": "shared_core.core.project.config",
    "ProjectError": "shared_core.core.errors",
    "QueryAnalysis": "shared_core.core.sql.canonical",
    "QueryAnalyzer": "shared_core.core.sql.analysis",
    "RefError": "shared_core.core.errors",
    "SourceError": "shared_core.core.errors",
    "Step": "shared_core.core.planning.plan",
    "UnsafeSqlError": "shared_core.core.errors",
    "WatermarkError": "shared_core.core.errors",
    "analyze_query": "shared_core.core.sql.canonical",
    "build_plan": "shared_core.core.planning.planner",
    "canonical_json": "shared_core.core.project.models",
    "diff_projects": "shared_core.core.planning.diff",
    "load_plan": "shared_core.core.planning.plan_codec",
    "load_project": "shared_core.core.project.models",
    "parse_project_config": "shared_core.core.project.config",
    "parse_watermarks": "shared_core.core.planning.watermarks",
    "plan_to_canonical": "shared_core.core.planning.plan_codec",
    "plan_to_json": "shared_core.core.planning.plan_codec",
    "sha256_json": "shared_core.core.project.models",
}


def __getattr__(name: str) -> object:
    """Load re-exported names on first use, so importing one submodule never imports them all."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'shared_core' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "CANONICALIZER_VERSION",
    "CoreError",
    "CycleError",
    "GitSource",
    "Graph",
    "InlineAnalyzer",
    "Model",
    "ModelChange",
    "ModelError",
    "ModelSource",
    "Plan",
    "PlanError",
    "PlannerSettings",
    "Project",
    "ProjectConfig",
    "ProjectError",
    "QueryAnalysis",
    "QueryAnalyzer",
    "RefError",
    "SourceError",
    "Step",
    "UnsafeSqlError",
    "WatermarkError",
    "analyze_query",
    "build_plan",
    "canonical_json",
    "diff_projects",
    "load_plan",
    "load_project",
    "parse_project_config",
    "parse_watermarks",
    "plan_to_canonical",
    "plan_to_json",
    "sha256_json",
]
