"""IronLayer's core: load SQL models, diff two commits and build a deterministic plan.

The pure modules (headers, templating, canonical, models, dag, diff, intervals, watermarks, planner,
plan) take values and return values; they never read the environment or the clock and do no I/O.
Adapters (`shared_core.adapters`) and the CLI (`shared_core.cli`) sit around them.
"""

import importlib
from typing import Any

_EXPORTS = {
    "CANONICALIZER_VERSION": "shared_core.canonical",
    "CoreError": "shared_core.errors",
    "CycleError": "shared_core.errors",
    "GitSource": "shared_core.ports",
    "Graph": "shared_core.dag",
    "InlineAnalyzer": "shared_core.ports",
    "Model": "shared_core.models",
    "ModelChange": "shared_core.diff",
    "ModelError": "shared_core.errors",
    "ModelSource": "shared_core.models",
    "PlanError": "shared_core.errors",
    "PlannerSettings": "shared_core.config",
    "Project": "shared_core.models",
    "ProjectConfig": "shared_core.config",
    "ProjectError": "shared_core.errors",
    "QueryAnalysis": "shared_core.canonical",
    "QueryAnalyzer": "shared_core.ports",
    "RefError": "shared_core.errors",
    "SourceError": "shared_core.errors",
    "UnsafeSqlError": "shared_core.errors",
    "WatermarkError": "shared_core.errors",
    "analyze_query": "shared_core.canonical",
    "build_plan": "shared_core.planner",
    "canonical_json": "shared_core.models",
    "diff_projects": "shared_core.diff",
    "load_plan": "shared_core.plan",
    "load_project": "shared_core.models",
    "parse_project_config": "shared_core.config",
    "parse_watermarks": "shared_core.watermarks",
    "plan_to_canonical": "shared_core.plan",
    "plan_to_json": "shared_core.plan",
    "sha256_json": "shared_core.models",
}


def __getattr__(name: str) -> Any:
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
    "PlanError",
    "PlannerSettings",
    "Project",
    "ProjectConfig",
    "ProjectError",
    "QueryAnalysis",
    "QueryAnalyzer",
    "RefError",
    "SourceError",
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
