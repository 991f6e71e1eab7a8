"""The `ironlayer` CLI: exit codes, one-line errors, nothing written on failure, and the read commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shared_core.adapters.git_writer import commit_files, init_repo
from shared_core.cli.main import main
from shared_core.core.planning.plan_codec import load_plan

GOOD_A = "-- name: s.a\n-- kind: FULL_REFRESH\nSELECT 1 AS x\n"
GOOD_B = "-- name: s.b\n-- kind: FULL_REFRESH\nSELECT x FROM {{ ref('s.a') }}\n"


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(args)
    except SystemExit as exc:  # argparse usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def repo(tmp_path: Path) -> tuple[Path, str, str]:
    path = init_repo(tmp_path / "repo")
    first = commit_files(path, {"models/a.sql": GOOD_A}, "one", "2024-01-01T00:00:00+00:00")
    second = commit_files(path, {"models/b.sql": GOOD_B}, "two", "2024-01-02T00:00:00+00:00")
    return path, first, second


def commit_bad(repo: Path, files: dict[str, str | None]) -> str:
    return commit_files(repo, files, "bad", "2024-01-03T00:00:00+00:00")


def test_plan_json_equals_the_saved_file(repo: tuple[Path, str, str], tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    path, first, second = repo
    out = tmp_path / "plan.json"
    code, stdout, _ = run(["plan", str(path), first, second, "--json", "--out", str(out), "--no-cache"], capsys)
    assert code == 0
    assert stdout == out.read_text("utf-8")
    plan = load_plan(stdout, "stdout")
    assert plan.as_of == "2024-01-02T00:00:00Z"  # the target commit's time, never the wall clock
    assert [s.model for s in plan.steps] == ["s.b"]


def test_plan_and_show_print_a_readable_summary(repo: tuple[Path, str, str], tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    path, _, second = repo
    out = tmp_path / "p.json"
    code, stdout, _ = run(["plan", str(path), "0" * 40, second, "--out", str(out),
                           "--cache-dir", str(tmp_path / "cache")], capsys)
    assert code == 0
    assert "+ s.a" in stdout and "+ s.b" in stdout and "2 to add" in stdout
    code, shown, _ = run(["show", str(out)], capsys)
    assert code == 0 and "base (nothing deployed)" in shown and "wave 1" in shown
    assert any((tmp_path / "cache").rglob("*.json"))


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"models/b.sql": GOOD_B.replace("FULL_REFRESH", "SNAPSHOT")}, "models/b.sql:2: unknown kind 'SNAPSHOT'"),
        ({"models/b.sql": GOOD_B.replace("s.a", "s.aa")}, "models/b.sql:3: ref 's.aa' matches no model; did you mean 's.a'?"),
        ({"models/c.sql": GOOD_B}, "duplicate model name 's.b'"),
        ({"models/b.sql": GOOD_B + ";\nDROP TABLE s.a\n"}, "models/b.sql:5: DROP statement is not allowed"),
        ({"models/b.sql": GOOD_B.replace("SELECT x FROM", "SELECT (x FROM")}, "models/b.sql:3:"),
        ({"models/a.sql": GOOD_A.replace("SELECT 1", "SELECT * FROM {{ ref('s.b') }}")}, "dependency cycle"),
        ({"models/b.sql": "-- kind: FULL_REFRESH\nSELECT 1\n"}, "models/b.sql:1: missing required header '-- name"),
        ({"ironlayer.toml": "models_path = 3\n"}, "ironlayer.toml: models_path must be a relative folder"),
    ],
)
def test_bad_models_exit_2_with_one_line_and_write_nothing(
    repo: tuple[Path, str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str],
    files: dict[str, str | None], message: str,
) -> None:
    path, first, _ = repo
    bad = commit_bad(path, files)
    out = tmp_path / "plan.json"
    code, stdout, stderr = run(["plan", str(path), first, bad, "--out", str(out), "--no-cache"], capsys)
    assert code == 2
    assert message in stderr
    assert stderr.startswith("error: ") and stderr.count("\n") == 1
    assert "Traceback" not in stderr and stdout == ""
    assert not out.exists() and list(tmp_path.glob(".plan.json*")) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["plan", "{missing}", "a", "b"], "no such directory"),
        (["plan", "{plain}", "a", "b"], "not a git repository"),
        (["plan", "{repo}", "nope", "HEAD"], "unknown git ref 'nope'"),
        (["plan", "{repo}", "HEAD~1", "HEAD", "--as-of", "yesterday"], "--as-of 'yesterday' is not a date"),
        (["plan", "{repo}", "HEAD~1", "HEAD", "--watermarks", "{badjson}"], "not valid JSON"),
        (["plan", "{repo}", "HEAD~1", "HEAD", "--watermarks", "{missingfile}"], "No such file"),
        (["show", "{badjson}"], "not a plan file"),
        (["lineage", "{repo}", "s.zz"], "argument 's.zz' matches no model"),
        (["plan", "{repo}"], "the following arguments are required"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_input_exits_2(repo: tuple[Path, str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str],
                           args: list[str], message: str) -> None:
    (tmp_path / "plain").mkdir()
    (tmp_path / "bad.json").write_text("{nope", "utf-8")
    names = {"missing": str(tmp_path / "missing"), "plain": str(tmp_path / "plain"), "repo": str(repo[0]),
             "badjson": str(tmp_path / "bad.json"), "missingfile": str(tmp_path / "none.json")}
    code, _, stderr = run([a.format(**names) for a in args], capsys)
    assert code == 2
    assert message in stderr
    assert "Traceback" not in stderr


def test_check_reports_every_problem_and_exits_1(repo: tuple[Path, str, str], capsys: pytest.CaptureFixture[str]) -> None:
    path, _, _ = repo
    commit_bad(path, {
        "models/c.sql": "-- name: s.c\n-- kind: FULL_REFRESH\nDELETE FROM s.a\n",
        "models/d.sql": "-- name: s.d\n-- kind: FULL_REFRESH\nSELECT FROM WHERE\n",
    })
    code, _, stderr = run(["check", str(path), "--no-cache"], capsys)
    assert code == 1
    assert "models/c.sql:3: DELETE statement is not allowed" in stderr
    assert "models/d.sql:3:" in stderr
    assert "2 problems in 4 model files" in stderr


def test_check_ok(repo: tuple[Path, str, str], capsys: pytest.CaptureFixture[str]) -> None:
    code, stdout, _ = run(["check", str(repo[0]), "--no-cache"], capsys)
    assert code == 0 and "ok: 2 models" in stdout


def test_models_and_lineage(repo: tuple[Path, str, str], capsys: pytest.CaptureFixture[str]) -> None:
    path = str(repo[0])
    code, stdout, _ = run(["models", path, "--json"], capsys)
    assert code == 0
    assert [(m["name"], m["upstream"]) for m in json.loads(stdout)] == [("s.a", []), ("s.b", ["s.a"])]
    code, stdout, _ = run(["lineage", path, "a", "--downstream"], capsys)
    assert code == 0 and stdout == "downstream of s.a (1):\n  s.b\n"
    code, stdout, _ = run(["lineage", path, "s.b"], capsys)
    assert stdout == "upstream of s.b (1):\n  s.a\ndownstream of s.b (0):\n"


def test_plan_reads_a_bare_repository_without_a_work_tree(repo: tuple[Path, str, str], tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    import subprocess

    path, first, second = repo
    bare = tmp_path / "bare.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(path), str(bare)], check=True)
    code, from_bare, _ = run(["plan", str(bare), first, second, "--json", "--no-cache"], capsys)
    code2, from_work, _ = run(["plan", str(path), first, second, "--json", "--no-cache"], capsys)
    assert code == code2 == 0 and from_bare == from_work
