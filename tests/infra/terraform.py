"""infra/terraform as data for the tests: every block of every .tf file, parsed with python-hcl2.

Values come back as python-hcl2 gives them with string quotes stripped: literals as Python values
(`"TLS1_2"`, `True`, `90`), anything else as its Terraform expression text (`"${var.name}"`). Blocks are
lists of bodies, as Terraform allows a block to repeat. No Terraform binary is needed (none can be installed
here), so what the tests check is the configuration as written, with variables at their defaults.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import hcl2
from hcl2.utils import SerializationOptions

ROOT = Path(__file__).parents[2]
TERRAFORM = ROOT / "infra" / "terraform"
_OPTIONS = SerializationOptions(with_comments=False, explicit_blocks=False, strip_string_quotes=True)
_REFERENCE = re.compile(r"^\$\{([a-z_][a-z_0-9]*(?:\.[a-z_0-9\[\]]+)+)\}$")


@dataclass
class Terraform:
    """The blocks of one Terraform folder, indexed by kind and name."""

    resources: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # type -> name -> body
    data: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    locals: dict[str, Any] = field(default_factory=dict)
    terraform: list[dict[str, Any]] = field(default_factory=list)
    providers: dict[str, dict[str, Any]] = field(default_factory=dict)

    def resource(self, address: str) -> dict[str, Any]:
        """The body of `type.name`, e.g. `azurerm_key_vault.main`."""
        kind, name = address.split(".")
        return self.resources[kind][name]

    def default(self, variable: str) -> Any:
        """The default of `var.<variable>`."""
        return self.variables[variable]["default"]

    def local(self, expression: str) -> Any:
        """The value of `${local.<name>}` (the expression text itself when it is not exactly a local)."""
        match = re.fullmatch(r"\$\{local\.([a-z_0-9]+)\}", expression)
        return self.locals[match.group(1)] if match else expression


def block(body: dict[str, Any], name: str) -> dict[str, Any]:
    """The one `name` block of `body` (a block that Terraform allows to repeat, used once here)."""
    blocks = body[name]
    assert isinstance(blocks, list) and len(blocks) == 1, f"expected one {name} block, found {blocks!r}"
    result: dict[str, Any] = blocks[0]
    return result


def referenced(expression: str) -> str | None:
    """`type.name` (or `var.x`, `local.x`) that a whole-value reference such as `${a.b.id}` points into.

    >>> referenced("${azurerm_storage_container.plans.id}")
    'azurerm_storage_container.plans'
    >>> referenced("${var.name}")
    'var.name'
    >>> referenced("x-${var.name}") is None
    True
    """
    match = _REFERENCE.match(expression) if isinstance(expression, str) else None
    if not match:
        return None
    return ".".join(match.group(1).split(".")[:2])


@cache
def load(folder: Path = TERRAFORM) -> Terraform:
    """Parse every .tf file of `folder` (cached: the files do not change during a test run)."""
    model = Terraform()
    for path in sorted(folder.glob("*.tf")):
        with path.open(encoding="utf-8") as handle:
            parsed = hcl2.load(handle, serialization_options=_OPTIONS)
        for entry in parsed.get("resource", []):
            for kind, named in entry.items():
                model.resources.setdefault(kind, {}).update(named)
        for entry in parsed.get("data", []):
            for kind, named in entry.items():
                model.data.setdefault(kind, {}).update(named)
        for entry in parsed.get("variable", []):
            model.variables.update(entry)
        for entry in parsed.get("output", []):
            model.outputs.update(entry)
        for entry in parsed.get("locals", []):
            model.locals.update(entry)
        for entry in parsed.get("provider", []):
            model.providers.update(entry)
        model.terraform.extend(parsed.get("terraform", []))
    return model


def load_tfvars(path: Path) -> dict[str, Any]:
    """The assignments of a .tfvars file."""
    with path.open(encoding="utf-8") as handle:
        parsed: dict[str, Any] = hcl2.load(handle, serialization_options=_OPTIONS)
    return parsed


def app_settings(model: Terraform) -> dict[str, Any]:
    """The function app's `app_settings`, as written: `merge(...)` of the locals it names, in order.

    Raises:
        AssertionError: `app_settings` is not a merge of whole locals (the tests would no longer see it).
    """
    expression = model.resource("azurerm_function_app_flex_consumption.main")["app_settings"]
    match = re.fullmatch(r"\$\{merge\(((?:local\.[a-z_]+(?:, )?)+)\)\}", expression)
    assert match, f"app_settings should merge whole locals, found {expression}"
    merged: dict[str, Any] = {}
    for name in match.group(1).split(", "):
        value = model.locals[name.removeprefix("local.")]
        if isinstance(value, str):  # a `for` expression: the Key Vault references, keyed like its source map
            source = re.search(r"in local\.([a-z_]+) :", value)
            assert source, f"local.{name} should be a for expression over a local map, found {value}"
            value = {key: value for key in model.locals[source.group(1)]}
        merged.update(value)
    return merged


def settings_at_defaults(model: Terraform) -> dict[str, str]:
    """The environment the app gets from `app_settings` with every variable at its default.

    Literals stay as written and `${var.x}` or `${tostring(var.x)}` become the variable's default. What Azure
    resolves at run time gets a non-empty stand-in: a Key Vault reference `from-key-vault:<secret>`, a whole
    other expression (a required variable, a resource attribute) `resolved:<setting>`, and an interpolation
    inside a literal the word `resolved` (so `https://login.microsoftonline.com/resolved/v2.0` keeps its shape).
    """
    secrets = model.locals["key_vault_secrets"]
    environment = {}
    for name, value in app_settings(model).items():
        text = str(value)
        variable = re.fullmatch(r"\$\{(?:tostring\()?var\.([a-z_0-9]+)\)?\}", text)
        if name in secrets:
            environment[name] = f"from-key-vault:{secrets[name]}"
        elif variable and "default" in model.variables[variable.group(1)]:
            environment[name] = str(model.default(variable.group(1)))
        elif re.fullmatch(r"\$\{[^{}]*\}", text):
            environment[name] = f"resolved:{name.lower()}"
        elif isinstance(value, str):
            environment[name] = re.sub(r"\$\{[^{}]*\}", "resolved", text)
        else:
            environment[name] = text.lower() if isinstance(value, bool) else text
    return environment
