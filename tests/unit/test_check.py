"""`check` is the whole truth: every problem `plan` or `apply` would meet in the files, all of them in one run,
read from the working tree (what a user is editing) or, with `--ref`, from a commit."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from shared_core.adapters.git_writer import commit_files, init_repo
from shared_core.cli.main import main
from shared_core.core.project.check import check_files, check_sources
from shared_core.core.project.models import ModelSource, load_project
from shared_core.core.sql.render import render_query
from shared_core.ports import InlineAnalyzer

A = "-- name: s.a\n-- kind: FULL_REFRESH\n-- sources: raw.a\nSELECT id FROM raw.a\n"
B = "-- name: s.b\n-- kind: FULL_REFRESH\nSELECT id FROM {{ ref('s.a') }}\n"
INCREMENTAL = ("-- name: s.inc\n-- kind: INCREMENTAL_BY_TIME_RANGE\n-- time_column: d\n-- start: 2024-01-01\n"
               "-- sources: raw.a\nSELECT d FROM raw.a WHERE d >= '{{ start_date }}' AND d < '{{ end_date }}'\n")


def problems(files: dict[str, str | bytes]) -> list[str]:
    encoded = [(path, text if isinstance(text, bytes) else text.encode()) for path, text in sorted(files.items())]
    _, errors = check_files(encoded, InlineAnalyzer())
    return [str(error) for error in errors]


def test_a_valid_project_has_no_problem() -> None:
    assert problems({"models/a.sql": A, "models/b.sql": B, "models/inc.sql": INCREMENTAL}) == []


def test_a_header_error_hides_no_sql_problem_in_its_file_or_any_other() -> None:
    found = problems({
        "models/a.sql": "-- name: s.a\n-- kind: FULL_REFRESH\n-- batch: weekly\nSELECT id FROM raw.a JOIN raw.b ON\n",
        "models/b.sql": B,
        "models/c.sql": "-- name: s.c\n-- kind: FULL_REFRESH\nSELECT id FROM other.t\n",
    })
    assert found == [
        "models/a.sql:3: unknown batch 'weekly'; use one of hour, day, month",
        "models/a.sql:4:33: SQL syntax error: ON without a join condition (write the condition, or CROSS JOIN for "
        "every pair of rows) near 'ON'",
        "models/c.sql:3: undeclared relation other.t in s.c; declare it with `-- sources: other.t`",
    ]  # s.b reads s.a, whose header is invalid: reported once, at s.a, not again as "matches no model"


def test_every_kind_of_problem_in_one_run() -> None:
    found = problems({
        "models/a.sql": A,
        "models/bad_bytes.sql": b"-- name: s.x\n-- kind: FULL_REFRESH\nSELECT 'caf\xe9' AS v\n",
        "models/dup.sql": A.replace("raw.a\nSELECT", "raw.a\nSELECT 2 AS n, "),
        "models/ref.sql": "-- name: s.r\n-- kind: FULL_REFRESH\nSELECT * FROM {{ ref('s.nope') }}\n",
        "models/window.sql": "-- name: s.w\n-- kind: FULL_REFRESH\n-- sources: raw.a\nSELECT * FROM raw.a\n"
                             "WHERE d >= '{{ start_date }}'\n",
        "models/merge.sql": "-- name: s.m\n-- kind: MERGE_BY_KEY\n-- unique_key: id\n-- tests: custom_sql(SELECT * "
                            "FROM {model} WHERE d < '{{ end_date }}')\nSELECT 1 AS id\n",
        "models/dim.sql": "-- name: s.dim\n-- kind: FULL_REFRESH\nSELECT * FROM dim_users\n",
        "models/write.sql": "-- name: s.write\n-- kind: FULL_REFRESH\nDROP TABLE s.a\n",
    })
    assert found == [
        "models/bad_bytes.sql:3: not UTF-8 text (byte 0xe9); save the file as UTF-8",
        "models/dim.sql:3: undeclared relation dim_users in s.dim; a source is read by its schema: write "
        "schema.dim_users and declare it with `-- sources: schema.dim_users`",
        "models/dup.sql: duplicate model name 's.a' (also defined in models/a.sql); model names must be unique",
        "models/merge.sql:4: {{ end_date }} in s.m, a MERGE_BY_KEY model, which runs without a batch window; only "
        "INCREMENTAL_BY_TIME_RANGE and APPEND_ONLY models read start_date/end_date: make the model incremental "
        "(with a time_column) or remove the window",
        "models/ref.sql:3: ref 's.nope' matches no model; check the model name",
        "models/window.sql:5: {{ start_date }} in s.w, a FULL_REFRESH model, which runs without a batch window; "
        "only INCREMENTAL_BY_TIME_RANGE and APPEND_ONLY models read start_date/end_date: make the model "
        "incremental (with a time_column) or remove the window",
        "models/write.sql:3: DROP statement is not allowed; a model is one SELECT query and IronLayer writes the "
        "table",
    ]


def test_what_check_reports_about_the_window_is_what_the_executor_refuses() -> None:
    text = "-- name: s.w\n-- kind: FULL_REFRESH\n-- sources: raw.a\nSELECT * FROM raw.a WHERE d >= '{{ start_date }}'\n"
    model = load_project([ModelSource("models/w.sql", text)])["s.w"]
    with pytest.raises(Exception, match="runs without a batch window"):
        render_query(model, dialect="duckdb")
    assert problems({"models/w.sql": text})[0].startswith("models/w.sql:4: {{ start_date }} in s.w")


@pytest.mark.parametrize("body", [
    "SELECT id FROM raw.a WHERE name LIKE '{%' OR name = '{{x}}' OR name = '{# #}'",
    "SELECT id FROM raw.a -- {% if var('x') %} removed {{ config() }}",
    "SELECT id /* {{ old_macro() }} {% endif %} */ FROM raw.a",
])
def test_template_markers_in_strings_and_comments_are_accepted(body: str) -> None:
    assert problems({"models/a.sql": f"-- name: s.a\n-- kind: FULL_REFRESH\n-- sources: raw.a\n{body}\n"}) == []


def test_a_cycle_is_reported_with_the_other_problems() -> None:
    found = problems({
        "models/x.sql": "-- name: s.x\n-- kind: FULL_REFRESH\nSELECT * FROM {{ ref('s.y') }}\n",
        "models/y.sql": "-- name: s.y\n-- kind: FULL_REFRESH\nSELECT * FROM {{ ref('s.x') }} WHERE\n",
    })
    assert len(found) == 2
    assert "dependency cycle s.x -> s.y -> s.x" in found[0] or "dependency cycle s.y -> s.x -> s.y" in found[0]
    assert found[1].startswith("models/y.sql:3:") and "SQL syntax error" in found[1]


def test_the_project_holds_the_models_that_can_be_built() -> None:
    project, errors = check_sources([
        ModelSource("models/a.sql", A),
        ModelSource("models/b.sql", B),
        ModelSource("models/c.sql", "-- name: s.c\n-- kind: FULL_REFRESH\nSELECT * FROM {{ ref('s.missing') }}\n"),
        ModelSource("models/d.sql", "-- name: s.d\n-- kind: FULL_REFRESH\nSELECT * FROM {{ ref('s.c') }}\n"),
    ], InlineAnalyzer())
    assert project is not None and sorted(project.models) == ["s.a", "s.b"]
    assert [str(e) for e in errors] == ["models/c.sql:3: ref 's.missing' matches no model; check the model name"]


# -- the command: the working tree by default, a commit with --ref ------------------------------------------


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(args)
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def repo(tmp_path: Path) -> Path:
    path = init_repo(tmp_path / "repo")
    commit_files(path, {"models/a.sql": A, "models/b.sql": B, ".gitignore": "models/scratch/\n"}, "one",
                 "2024-01-01T00:00:00+00:00")
    return path


def test_check_reads_the_working_tree_with_uncommitted_and_untracked_files(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(["check", str(repo), "--no-cache"], capsys)
    assert code == 0 and out == f"ok: 2 models in the working tree of {repo} are valid (headers, refs, DAG, SQL and safety)\n"
    (repo / "models" / "b.sql").write_text(B.replace("}}\n", "}} WHERE\n"), "utf-8")  # an uncommitted edit
    (repo / "models" / "new.sql").write_text("-- name: s.new\n-- kind: FULL_REFRESH\nSELECT * FROM raw.n\n", "utf-8")
    (repo / "models" / "scratch").mkdir()
    (repo / "models" / "scratch" / "junk.sql").write_text("this is not sql", "utf-8")  # ignored by .gitignore
    code, _, err = run(["check", str(repo), "--no-cache"], capsys)
    assert code == 1
    assert "models/b.sql:3:" in err and "SQL syntax error" in err
    assert "models/new.sql:3: undeclared relation raw.n in s.new" in err
    assert "junk" not in err
    assert err.endswith(f"2 problems in 3 model files (the working tree of {repo})\n")
    code, out, _ = run(["check", str(repo), "--ref", "HEAD", "--no-cache"], capsys)  # the commit is still valid
    assert code == 0 and out.startswith("ok: 2 models in commit ")


def test_a_deleted_file_is_not_read_and_a_subfolder_checks_the_whole_repository(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (repo / "models" / "b.sql").unlink()
    code, out, _ = run(["check", str(repo / "models"), "--no-cache"], capsys)
    assert code == 0 and out.startswith("ok: 1 model in the working tree of ")


def test_the_positional_ref_still_works_with_a_warning(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (repo / "models" / "b.sql").write_text("broken", "utf-8")
    code, out, err = run(["check", str(repo), "HEAD", "--no-cache"], capsys)
    assert code == 0 and out.startswith("ok: 2 models in commit ")
    assert err == ("warning: 'ironlayer check REPO REF' is deprecated; use 'ironlayer check REPO --ref HEAD'\n")
    code, _, err = run(["check", str(repo), "HEAD", "--ref", "HEAD~1", "--no-cache"], capsys)
    assert code == 2 and "two refs given (HEAD and --ref HEAD~1); give one with --ref" in err


def test_a_bare_repository_has_no_working_tree(repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bare = tmp_path / "bare.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(repo), str(bare)], check=True)
    code, _, err = run(["check", str(bare), "--no-cache"], capsys)
    assert code == 2
    assert err == f"error: {bare}: a bare repository has no working tree; check a commit with --ref REF\n"
    code, out, _ = run(["check", str(bare), "--ref", "main", "--no-cache"], capsys)
    assert code == 0 and out.startswith("ok: 2 models in commit ")


def test_a_plain_folder_is_checked_as_it_is(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "project"
    (folder / "sql" / ".hidden").mkdir(parents=True)
    (folder / "ironlayer.toml").write_text('models_path = "sql"\n', "utf-8")
    (folder / "sql" / "a.sql").write_text(A, "utf-8")
    (folder / "sql" / ".hidden" / "x.sql").write_text("not sql", "utf-8")
    code, out, _ = run(["check", str(folder)], capsys)
    assert code == 0 and out == f"ok: 1 model in {folder} is valid (headers, refs, DAG, SQL and safety)\n"
