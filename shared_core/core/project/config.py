"""The project file: where models live, defaults of model headers and the planner settings, from the text handed in.

Read from `ironlayer.toml` at the repository root, or else from `[tool.ironlayer]` in `pyproject.toml`:

```toml
models_path = "models"          # folder searched recursively for *.sql model files

[defaults]
start = "2024-01-01"            # the start of every incremental model whose header has none

[planner]
max_batches_per_step = 366      # contiguous batches grouped into one step, at most
max_batches_per_plan = 100000   # a plan holding more batches is refused (e.g. an as_of in year 9999)
```
`max_batches_per_step` enters the plan (and so its ID); the models path does not, so moving the folder
changes nothing but the paths, and neither does `max_batches_per_plan`: it only refuses, so raising it
never changes the bytes of a plan it allows. The default (100,000 batches, eleven years of hourly data)
lets five years of hourly history plan in one go and refuses a mistyped as_of long before it would hang.
A default `start` is a model's start as if its header said it: it is hashed with the model, so
changing it rebuilds the incremental models that use it.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from shared_core.core.errors import ProjectError
from shared_core.core.project.headers import parse_instant

PROJECT_FILES = ("ironlayer.toml", "pyproject.toml")


DEFAULT_MAX_BATCHES_PER_PLAN = 100_000
_PLANNER_KEYS = ("max_batches_per_step", "max_batches_per_plan")


@dataclass(frozen=True)
class PlannerSettings:
    """The planner's settings: `max_batches_per_step` changes plan content, `max_batches_per_plan` only refuses."""

    max_batches_per_step: int = 366
    max_batches_per_plan: int = field(default=DEFAULT_MAX_BATCHES_PER_PLAN, compare=False)  # not part of a plan

    def to_dict(self) -> dict[str, int]:
        """What enters every plan's inputs (and so its ID): only what changes a plan's content.

        >>> PlannerSettings(max_batches_per_plan=5).to_dict()
        {'max_batches_per_step': 366}
        """
        return {"max_batches_per_step": self.max_batches_per_step}


@dataclass(frozen=True)
class ProjectConfig:
    models_path: str = "models"
    planner: PlannerSettings = field(default_factory=PlannerSettings)
    default_start: datetime | None = None  # `[defaults] start`: for incremental models without `start`


def parse_project_config(filename: str, text: str | None) -> ProjectConfig:
    """Parse the project file `filename` (one of PROJECT_FILES); `None` text means defaults.

    >>> parse_project_config("ironlayer.toml", 'models_path = "sql"').models_path
    'sql'

    Raises:
        ProjectError: invalid TOML, an unknown key or a value of the wrong type.
    """
    if text is None:
        return ProjectConfig()
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProjectError(f"{filename}: invalid TOML: {exc}") from None
    if filename == "pyproject.toml":
        section = document.get("tool", {}).get("ironlayer")
        if section is None:
            return ProjectConfig()
        where = "pyproject.toml [tool.ironlayer]"
    else:
        section, where = document, filename
    unknown = sorted(set(section) - {"models_path", "planner", "defaults"})
    if unknown:
        raise ProjectError(f"{where}: unknown key '{unknown[0]}'; known keys: models_path, [defaults], [planner]")
    models_path = section.get("models_path", "models")
    if not isinstance(models_path, str) or not models_path.strip("/") or ".." in models_path.split("/"):
        raise ProjectError(f"{where}: models_path must be a relative folder like \"models\", got {models_path!r}")
    planner = section.get("planner", {})
    if not isinstance(planner, dict):
        raise ProjectError(f"{where}: [planner] must be a table")
    unknown = sorted(set(planner) - set(_PLANNER_KEYS))
    if unknown:
        raise ProjectError(f"{where}: unknown key 'planner.{unknown[0]}'; known: {', '.join(_PLANNER_KEYS)}")
    max_batches = _whole(planner, "max_batches_per_step", 366, 100_000, where)
    max_plan = _whole(planner, "max_batches_per_plan", DEFAULT_MAX_BATCHES_PER_PLAN, 100_000_000, where)
    return ProjectConfig(models_path.strip("/"), PlannerSettings(max_batches, max_plan),
                         _default_start(section, where))


def _whole(section: Mapping[str, object], key: str, default: int, high: int, where: str) -> int:
    value = section.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= high:
        raise ProjectError(f"{where}: planner.{key} must be a whole number 1-{high}, got {value!r}")
    return value


def _default_start(section: Mapping[str, object], where: str) -> datetime | None:
    """`[defaults] start`, validated.

    >>> _default_start({"defaults": {"start": "2024-01-01"}}, "ironlayer.toml").isoformat()
    '2024-01-01T00:00:00+00:00'
    """
    defaults = section.get("defaults", {})
    if not isinstance(defaults, dict):
        raise ProjectError(f"{where}: [defaults] must be a table")
    unknown = sorted(set(defaults) - {"start"})
    if unknown:
        raise ProjectError(f"{where}: unknown key 'defaults.{unknown[0]}'; known: start")
    value = defaults.get("start")
    if value is None:
        return None
    text = value.isoformat() if hasattr(value, "isoformat") else value  # TOML dates arrive as dates
    try:
        return parse_instant(str(text))
    except ValueError:
        raise ProjectError(f"{where}: defaults.start must be a date like \"2024-01-01\", got {value!r}") from None
