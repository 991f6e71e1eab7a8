"""The CLI a newcomer meets: help with examples, --version, "did you mean", plural wording, `init`, JSON reads,
full-width tables off a terminal, the all-zero SHA abbreviated, shallow clones, and no traceback for any input.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared_core.adapters.git_writer import commit_files, init_repo
from shared_core.cli.main import build_parser, main

ROOT = Path(__file__).resolve().parents[2]
GOOD_A = "-- name: s.a\n-- kind: FULL_REFRESH\nSELECT 1 AS x\n"
DAILY = ("-- name: s.daily\n-- kind: INCREMENTAL_BY_TIME_RANGE\n-- time_column: d\n-- start: 2024-01-01\n"
         "SELECT CAST('2024-01-01' AS DATE) AS d\n")


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(args)
    except SystemExit as exc:  # argparse: --help, --version, usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    path = init_repo(tmp_path / "repo")
    commit_files(path, {"models/a.sql": GOOD_A, "models/daily.sql": DAILY}, "one", "2024-01-05T00:00:00+00:00")
    return path


def subcommands() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_command_has_help_with_an_example_of_itself() -> None:
    commands = subcommands()
    assert {"plan", "apply", "run", "init", "runs", "status", "check", "lineage", "audit", "db"} <= set(commands)
    for name, parser in commands.items():
        _, found, examples = parser.format_help().partition("\nexample")
        assert found and f"ironlayer {name}" in examples, name


def test_version_and_did_you_mean(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["--version"], capsys)
    assert code == 0 and out.startswith("ironlayer ") and out.strip() != "ironlayer"
    code, _, err = run(["pln", "repo", "a", "b"], capsys)
    assert code == 2 and "invalid choice: 'pln'; did you mean 'plan'?" in err and err.count("\n") == 1
    code, _, err = run(["db", "stauts"], capsys)
    assert code == 2 and "did you mean 'status'?" in err
    code, _, err = run(["frobnicate"], capsys)  # nothing close: the choices are listed
    assert code == 2 and "invalid choice: 'frobnicate' (choose from" in err and "did you mean" not in err


def test_wording_is_plural_aware(repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["plan", str(repo), "0000000", "HEAD", "--no-cache", "--watermarks",
                        str(write(tmp_path / "w.json", "{}"))], capsys)
    assert code == 0
    assert "(2 in 1 wave, 4 batches)" in out and "2 models to run in 2 steps." in out
    code, out, _ = run(["plan", str(repo), "0000000", "HEAD", "--as-of", "2024-01-02", "--no-cache", "--watermarks",
                        str(tmp_path / "w.json")], capsys)
    assert "(1 day batch, from empty)" in out and "(2 in 1 wave, 1 batch)" in out
    commit_files(repo, {"models/daily.sql": None, "models/a.sql": "-- name: s.a\nSELECT 1\n"}, "bad",
                 "2024-01-06T00:00:00+00:00")
    code, _, err = run(["check", str(repo), "--no-cache"], capsys)
    assert code == 1 and "1 problem in 1 model file (the working tree of " in err
    commit_files(repo, {"models/a.sql": GOOD_A}, "fixed", "2024-01-07T00:00:00+00:00")
    code, out, _ = run(["check", str(repo), "--no-cache"], capsys)
    assert code == 0 and "ok: 1 model in the working tree of " in out and " is valid" in out
    code, out, _ = run(["check", str(repo), "--ref", "HEAD", "--no-cache"], capsys)
    assert code == 0 and "ok: 1 model in commit " in out and " is valid" in out


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, "utf-8")
    return path


def test_the_abbreviated_all_zero_sha_means_nothing_deployed(repo: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    ledger = str(write(tmp_path / "w.json", "{}"))
    plans = []
    for zero in ("0" * 40, "0000000", "0000"):
        code, out, err = run(["plan", str(repo), zero, "HEAD", "--json", "--no-cache", "--watermarks", ledger], capsys)
        assert code == 0, err
        plans.append(out)
    assert plans[0] == plans[1] == plans[2] and json.loads(plans[0])["base"] == "0" * 40
    code, _, err = run(["plan", str(repo), "000", "HEAD", "--no-cache", "--watermarks", ledger], capsys)
    assert code == 2 and "unknown git ref '000'" in err


def test_a_shallow_clone_gets_a_hint_to_fetch_more_history(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    origin = init_repo(tmp_path / "origin")
    first = commit_files(origin, {"models/a.sql": GOOD_A}, "one", "2024-01-01T00:00:00+00:00")
    commit_files(origin, {"models/a.sql": GOOD_A.replace("1", "2")}, "two", "2024-01-02T00:00:00+00:00")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--depth", "1", f"file://{origin}", str(clone)], check=True)
    for base in (first, "HEAD~1"):
        code, _, err = run(["plan", str(clone), base, "HEAD", "--no-cache"], capsys)
        assert code == 2 and err.count("\n") == 1
        assert f"unknown git ref '{base}'; this is a shallow clone" in err and "git fetch --unshallow" in err
    code, _, err = run(["plan", str(origin), "nope", "HEAD", "--no-cache"], capsys)  # a full clone: no such hint
    assert code == 2 and "this is a shallow clone" not in err


def test_init_scaffolds_a_project_that_checks_plans_and_ignores_its_files(tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    project = tmp_path / "my-project"
    code, out, _ = run(["init", str(project)], capsys)
    assert code == 0
    assert "created in" in out and "git repository" in out and "ironlayer check ." in out
    assert (project / ".git").is_dir() and (project / "ironlayer.toml").is_file()
    example = project / "models" / "example" / "daily_signups.sql"
    assert "-- cron: 0 3 * * *" in example.read_text()
    assert (project / ".gitignore").read_text().splitlines()[1:] == [".ironlayer/", "*.duckdb", "*.duckdb.wal"]
    commit_files(project, {}, "IronLayer project", "2099-01-01T00:00:00+00:00")
    code, out, err = run(["check", str(project), "--no-cache"], capsys)
    assert code == 0, err
    code, out, err = run(["plan", str(project), "0000000", "HEAD", "--json", "--no-cache", "--watermarks",
                          str(write(tmp_path / "w.json", "{}"))], capsys)
    assert code == 0, err
    assert [m["name"] for m in json.loads(out)["models"]] == ["example.daily_signups"]
    code, _, err = run(["init", str(project)], capsys)
    assert code == 2 and "is already an IronLayer project" in err

    existing = init_repo(tmp_path / "existing")
    write(existing / ".gitignore", "node_modules/\n*.duckdb")
    code, out, _ = run(["init", str(existing)], capsys)
    assert code == 0 and "git repository" not in out
    assert (existing / ".gitignore").read_text() == (
        "node_modules/\n*.duckdb\n# IronLayer (its own state lives in .git/ironlayer)\n.ironlayer/\n*.duckdb.wal\n")


def test_check_and_lineage_answer_in_json(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["check", str(repo), "--json", "--no-cache"], capsys)
    report = json.loads(out)
    assert code == 0 and report["ok"] is True and report["models"] == 2 and report["problems"] == []
    commit_files(repo, {"models/b.sql": "-- name: s.b\n-- kind: FULL_REFRESH\nSELECT x FROM {{ ref('s.zz') }}\n"},
                 "bad", "2024-01-06T00:00:00+00:00")
    code, out, _ = run(["check", str(repo), "--json", "--no-cache"], capsys)
    report = json.loads(out)
    assert code == 1 and report["ok"] is False
    assert [(p["file"], p["line"]) for p in report["problems"]] == [("models/b.sql", 3)]
    assert "matches no model" in report["problems"][0]["message"]
    commit_files(repo, {"models/b.sql": "-- name: s.b\n-- kind: FULL_REFRESH\nSELECT x FROM {{ ref('s.a') }}\n"},
                 "fixed", "2024-01-07T00:00:00+00:00")
    code, out, _ = run(["lineage", str(repo), "s.a", "--json"], capsys)
    assert code == 0 and json.loads(out) == {"model": "s.a", "upstream": [], "downstream": ["s.b"]}
    code, out, _ = run(["lineage", str(repo), "b", "--upstream", "--json"], capsys)
    assert json.loads(out) == {"model": "s.b", "upstream": ["s.a"]}


def test_tables_are_full_width_when_not_printed_to_a_terminal(tmp_path: Path) -> None:
    long_name = "analytics_" + "x" * 60 + ".orders_" + "y" * 40
    path = init_repo(tmp_path / "repo")
    commit_files(path, {f"models/{'deep/' * 8}orders.sql": f"-- name: {long_name}\n-- kind: FULL_REFRESH\nSELECT 1\n"},
                 "one", "2024-01-01T00:00:00+00:00")
    done = subprocess.run([sys.executable, "-m", "shared_core.cli", "models", str(path)], capture_output=True,
                          text=True, cwd=ROOT, env={**os.environ, "COLUMNS": ""}, check=True)
    row = next(line for line in done.stdout.splitlines() if long_name in line)
    assert "FULL_REFRESH" in row and "models/deep/" in row and row.rstrip().endswith("orders.sql")


NOT_UTF8 = b"\xff\xfe{\"plan_version\": 1}"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "{bin}"], "{bin}: this plan file is not UTF-8 text (byte 0 is 0xff)"),
        (["apply", "{bin}", "--repo", "{repo}", "--auto-approve"], "this plan file is not UTF-8 text"),
        (["plan", "{repo}", "0000000", "HEAD", "--watermarks", "{bin}"], "this watermarks file is not UTF-8 text"),
        (["plan", "{repo}", "0000000", "HEAD", "--watermarks", "{year0}"], "with an invalid date"),
        (["plan", "{repo}", "0000000", "HEAD", "--as-of", "0000-01-01"], "--as-of '0000-01-01' is not a date"),
        (["plan", "{repo}", "0000000", "HEAD", "--as-of", "99999-01-01"], "--as-of '99999-01-01' is not a date"),
        (["plan", "{repo}", "0000000", "HEAD", "--as-of", "9999-12-31"],
         "would plan more than 100,000 batches (s.daily alone: 2,913,173 day batches"),
        (["plan", "{repo}", "0000000", "HEAD", "--as-of", "9999-12-31T23:59:59Z"], "planner.max_batches_per_plan"),
        (["backfill", "{repo}", "s.daily", "--start", "2024-01-01", "--end", "9999-12-31"],
         "this range would plan more than 100,000 batches"),
        (["backfill", "{repo}", "s.daily", "--start", "0000-01-01", "--end", "2024-02-01"], "--start '0000-01-01'"),
        (["run", "{repo}", "--now", "99999-01-01"], "--now '99999-01-01' is not a date"),
    ],
)
def test_no_input_ends_in_a_traceback(repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      args: list[str], message: str) -> None:
    names = {"repo": str(repo), "bin": str(write(tmp_path / "bin.json", NOT_UTF8)),
             "year0": str(write(tmp_path / "year0.json", '{"s.daily": [["0000-01-01", "2024-01-02"]]}'))}
    code, out, err = run([a.format(**names) for a in args] + (["--no-cache"] if args[0] == "plan" else []), capsys)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert message.format(**names) in err


def test_the_batch_limit_is_a_project_setting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = init_repo(tmp_path / "repo")
    commit_files(path, {"models/daily.sql": DAILY, "ironlayer.toml": "[planner]\nmax_batches_per_plan = 3\n"}, "one",
                 "2024-01-05T00:00:00+00:00")
    code, _, err = run(["plan", str(path), "0000000", "HEAD", "--no-cache", "--watermarks",
                        str(write(tmp_path / "w.json", "{}"))], capsys)
    assert code == 2 and "would plan more than 3 batches (s.daily alone: 4 day batches" in err
    assert "planner.max_batches_per_plan = 3" in err
