"""The project file: where models live and the planner settings, from the text handed in.

Read from `ironlayer.toml` at the repository root, or else from `[tool.ironlayer]` in `pyproject.toml`:

```toml
models_path = "models"          # folder searched recursively for *.sql model files

[planner]
max_batches_per_step = 366      # contiguous batches grouped into one step, at most
```
The planner settings enter the plan (and so its ID); the models path does not, so moving the folder
changes nothing but the paths.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field

from shared_core.core.errors import ProjectError

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
    unknown = sorted(set(section) - {"models_path", "planner"})
    if unknown:
        raise ProjectError(f"{where}: unknown key '{unknown[0]}'; known keys: models_path, [planner]")
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
    return ProjectConfig(models_path.strip("/"), PlannerSettings(max_batches))
