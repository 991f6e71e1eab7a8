"""The project file: where models live, defaults of model headers and the planner settings, from the text handed in.

Read from `ironlayer.toml` at the repository root, or else from `[tool.ironlayer]` in `pyproject.toml`:

```toml
models_path = "models"          # folder searched recursively for *.sql model files

[defaults]
start = "2024-01-01"            # the start of every incremental model whose header has none

[planner]
max_batches_per_step = 366      # contiguous batches grouped into one step, at most
```
The planner settings enter the plan (and so its ID); the models path does not, so moving the folder
changes nothing but the paths. A default `start` is a model's start as if its header said it: it is hashed
with the model, so changing it rebuilds the incremental models that use it.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from shared_core.core.errors import ProjectError
from shared_core.core.project.headers import parse_instant

PROJECT_FILES = ("ironlayer.toml", "pyproject.toml")


@dataclass(frozen=True)
class PlannerSettings:
    """Settings that change plan content; serialized into every plan's inputs."""

    max_batches_per_step: int = 366

    def to_dict(self) -> dict[str, int]:
        """The settings as they appear in a plan's inputs."""
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
    unknown = sorted(set(planner) - {"max_batches_per_step"})
    if unknown:
        raise ProjectError(f"{where}: unknown key 'planner.{unknown[0]}'; known: max_batches_per_step")
    max_batches = planner.get("max_batches_per_step", 366)
    if not isinstance(max_batches, int) or isinstance(max_batches, bool) or not 1 <= max_batches <= 100_000:
        raise ProjectError(
            f"{where}: planner.max_batches_per_step must be a whole number 1-100000, got {max_batches!r}"
        )
    return ProjectConfig(models_path.strip("/"), PlannerSettings(max_batches), _default_start(section, where))


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
