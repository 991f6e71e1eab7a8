"""Hostile model files and custom_sql tests (tests/fixtures/hostile_sql.json), each refused or contained.

Every hostile case goes through:
- `ironlayer check` on a real git repository: exit 1, one error naming the file, the line and the rule (and,
  where the header and the SQL both break a rule, one for each: `also`);
- `ironlayer plan`: the same refusal (exit 2, nothing written), except a merely undeclared relation, which
  plans (a plan of an old repository keeps its bytes) but is refused by check and by the executor;
- apply: `DuckDBExecutor.run_batch` refuses the model before it runs anything (the warehouse is unchanged);
- and where the engine itself can refuse the attack, the same attack as raw SQL on the executor's own
  session (as if the guard had let it through) fails in DuckDB's sandbox, and no file appears.
Benign tricks (`;`, `{%`, `{{`, `--` inside strings and comments) pass check and run with exact results.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from shared_core.adapters.engines.duckdb import DuckDBExecutor
from shared_core.cli.main import EXIT_BAD_INPUT, EXIT_CHECK_FAILED, EXIT_OK, main
from shared_core.core.errors import ModelError
from shared_core.core.planning.markers import BatchMarker
from shared_core.core.project.models import ModelSource, load_project

pytestmark = pytest.mark.integration

CASES = json.loads((Path(__file__).parents[1] / "fixtures" / "hostile_sql.json").read_text("utf-8"))
HOSTILE: list[dict[str, Any]] = CASES["hostile"]
BENIGN: list[dict[str, Any]] = CASES["benign"]
ENGINE = [case for case in HOSTILE if case.get("engine")]
PATH = "models/hostile.sql"
NEIGHBOUR = "-- name: ok.neighbour\n-- kind: FULL_REFRESH\nSELECT 1 AS id\n"
ZERO = "0" * 40


def model_text(case: dict[str, Any], scratch: Path) -> str:
    lines = [f"-- name: {case.get('name', 'hostile.m')}", "-- kind: FULL_REFRESH", *case.get("header", []),
             case["body"]]
    return "\n".join(lines).replace("{tmp}", str(scratch)) + "\n"


def cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(args)
    return code, capsys.readouterr().err


@pytest.fixture()
def scratch(tmp_path: Path) -> Iterator[Path]:
    """A folder the attacks aim at; it must stay empty."""
    folder = tmp_path / "scratch"
    folder.mkdir()
    yield folder
    assert list(folder.iterdir()) == [], "a hostile statement wrote a file"


@pytest.fixture(scope="module")
def executor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DuckDBExecutor]:
    engine = DuckDBExecutor(tmp_path_factory.mktemp("warehouse") / "w.duckdb")
    engine.conn.execute("CREATE SCHEMA landing")
    engine.conn.execute("CREATE TABLE landing.numbers AS SELECT * FROM (VALUES (1), (2)) AS t(n)")
    yield engine
    engine.close()


def catalog(executor: DuckDBExecutor) -> list[tuple[Any, ...]]:
    """Every table and view of the warehouse, and the batch markers: what a hostile model must not change."""
    tables = executor.conn.execute(
        "SELECT schema_name, table_name, estimated_size FROM duckdb_tables() ORDER BY ALL").fetchall()
    views = executor.conn.execute("SELECT schema_name, view_name FROM duckdb_views() WHERE NOT internal "
                                  "ORDER BY ALL").fetchall()
    markers = executor.conn.execute("SELECT count(*) FROM _ironlayer.committed_batches").fetchall()
    return [*tables, *views, *markers]


@pytest.mark.parametrize("case", HOSTILE, ids=[c["id"] for c in HOSTILE])
def test_check_refuses_with_file_line_and_rule(
    case: dict[str, Any], scratch: Path, make_repo: Callable[..., tuple[Path, list[str]]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    repo, (sha,) = make_repo([{PATH: model_text(case, scratch), "models/neighbour.sql": NEIGHBOUR}])
    code, err = cli(["check", str(repo), "--ref", sha, "--no-cache"], capsys)
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert code == EXIT_CHECK_FAILED
    assert len(errors) == 1 + len(case.get("also", ())), err
    assert errors[0].startswith(f"error: {PATH}:{case['line']}:"), errors[0]
    assert case["refused"] in errors[0]
    for error, also in zip(errors[1:], case.get("also", ()), strict=True):
        assert error.startswith(f"error: {PATH}:{also}"), error


@pytest.mark.parametrize("case", HOSTILE, ids=[c["id"] for c in HOSTILE])
def test_plan_refuses_the_same_way(
    case: dict[str, Any], scratch: Path, tmp_path: Path, make_repo: Callable[..., tuple[Path, list[str]]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    repo, (sha,) = make_repo([{PATH: model_text(case, scratch), "models/neighbour.sql": NEIGHBOUR}])
    ledger = tmp_path / "ledger.json"
    ledger.write_text("{}", encoding="utf-8")
    out = tmp_path / "plan.json"
    code, err = cli(["plan", str(repo), ZERO, sha, "--out", str(out), "--no-cache", "--watermarks", str(ledger)],
                    capsys)
    if case.get("declaration"):
        assert code == EXIT_OK, err  # planned, but check refuses it and the executor will not run it
        return
    assert code == EXIT_BAD_INPUT
    assert f"{PATH}:{case['line']}" in err and case["refused"] in err, err
    assert not out.exists()


@pytest.mark.parametrize("case", HOSTILE, ids=[c["id"] for c in HOSTILE])
def test_apply_refuses_before_running_anything(case: dict[str, Any], scratch: Path, executor: DuckDBExecutor) -> None:
    source = ModelSource(PATH, model_text(case, scratch))
    try:
        project = load_project([source])
    except ModelError as exc:  # refused while loading the project: no executor ever sees this model
        assert case["refused"] in str(exc) and f"{PATH}:{case['line']}" in str(exc)
        return
    before = catalog(executor)
    with pytest.raises(ModelError) as caught:
        executor.run_batch(project["hostile.m"], start=None, end=None, reset=False, marker=BatchMarker("plan", "step", "hash"))
    assert case["refused"] in str(caught.value)
    assert f"{PATH}:{case['line']}" in str(caught.value)
    assert catalog(executor) == before


@pytest.mark.parametrize("case", ENGINE, ids=[c["id"] for c in ENGINE])
def test_the_engine_refuses_when_forced_past_the_guard(
    case: dict[str, Any], scratch: Path, executor: DuckDBExecutor,
) -> None:
    before = catalog(executor)
    with pytest.raises(duckdb.Error) as caught:
        executor.conn.execute(case["engine"].replace("{tmp}", str(scratch))).fetchall()
    assert case["engine_refuses"] in str(caught.value)
    assert catalog(executor) == before
    settings = executor.conn.execute(
        "SELECT current_setting('TimeZone'), current_setting('enable_external_access'), "
        "current_setting('lock_configuration'), current_setting('threads') > 0").fetchone()
    assert settings == ("UTC", False, True, True)


@pytest.mark.parametrize("case", BENIGN, ids=[c["id"] for c in BENIGN])
def test_string_and_comment_tricks_are_valid_sql_and_run_as_written(
    case: dict[str, Any], scratch: Path, make_repo: Callable[..., tuple[Path, list[str]]],
    executor: DuckDBExecutor, capsys: pytest.CaptureFixture[str],
) -> None:
    text = model_text(case, scratch)
    repo, (sha,) = make_repo([{PATH: text, "models/neighbour.sql": NEIGHBOUR}])
    code, err = cli(["check", str(repo), "--ref", sha, "--no-cache"], capsys)
    assert code == EXIT_OK, err
    model = load_project([ModelSource(PATH, text)])["hostile.m"]
    result = executor.run_batch(model, start=None, end=None, reset=False)
    assert result.published and all(outcome.passed for outcome in result.tests)
    assert len(result.tests) == len(model.header.tests)
    rows = executor.conn.execute("SELECT * FROM hostile.m").fetchall()
    assert sorted(rows) == sorted(tuple(row) for row in case["rows"])
