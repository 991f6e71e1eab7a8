"""IronLayer's core: load SQL models, diff two commits and build a deterministic plan.

The pure modules (headers, templating, canonical, models, dag, diff, intervals, watermarks, planner,
plan) take values and return values; they never read the environment or the clock and do no I/O.
Adapters (`shared_core.adapters`) and the CLI (`shared_core.cli`) sit around them.
"""

from shared_core.canonical import CANONICALIZER_VERSION, QueryAnalysis, analyze_query
from shared_core.config import PlannerSettings, ProjectConfig, parse_project_config
from shared_core.dag import Graph
from shared_core.diff import ModelChange, diff_projects
from shared_core.errors import (
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
from shared_core.models import Model, ModelSource, Project, canonical_json, load_project, sha256_json
from shared_core.plan import load_plan, plan_to_canonical, plan_to_json
from shared_core.planner import build_plan
from shared_core.ports import GitSource, InlineAnalyzer, QueryAnalyzer
from shared_core.watermarks import parse_watermarks

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
