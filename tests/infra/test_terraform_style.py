"""infra/terraform reads as documented and formatted Terraform: every variable and output described, the
example tfvars complete and secret-free, every file as `terraform fmt` would write it, every checkov skip
explained. No Terraform binary can be installed here, so the formatting is checked by `hcl_format`.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.infra.hcl_format import fmt_problems
from tests.infra.terraform import TERRAFORM, load, load_tfvars

FILES = sorted([*TERRAFORM.glob("*.tf"), TERRAFORM / "terraform.tfvars.example"])


def test_every_variable_and_output_is_described() -> None:
    model = load()
    for name, variable in model.variables.items():
        assert len(variable.get("description", "")) >= 20, f"variable {name} needs a description"
        assert "type" in variable, f"variable {name} needs a type"
    for name, output in model.outputs.items():
        assert len(output.get("description", "")) >= 20, f"output {name} needs a description"


def test_the_example_tfvars_sets_known_variables_and_no_secret() -> None:
    model = load()
    example = load_tfvars(TERRAFORM / "terraform.tfvars.example")
    assert set(example) <= set(model.variables)
    required = {name for name, variable in model.variables.items() if "default" not in variable}
    # the one required variable left out is the write-only password, passed as TF_VAR_postgres_admin_password
    assert required - set(example) == {"postgres_admin_password"}
    assert not any("password" in name for name in example)


@pytest.mark.parametrize("path", FILES, ids=lambda path: path.name)
def test_files_are_formatted_as_terraform_fmt_writes_them(path: Path) -> None:
    assert fmt_problems(path.read_text("utf-8")) == []


def test_every_checkov_skip_names_a_check_and_a_reason() -> None:
    skips = [(path.name, line.strip()) for path in TERRAFORM.glob("*.tf")
             for line in path.read_text("utf-8").splitlines() if "checkov:skip" in line]
    assert skips  # the scan has exceptions; each must say why
    for name, line in skips:
        match = re.fullmatch(r"#checkov:skip=(CKV2?_AZURE_\d+):(.+)", line)
        assert match and len(match.group(2).split()) >= 8, f"{name}: {line} needs a check ID and a written reason"
