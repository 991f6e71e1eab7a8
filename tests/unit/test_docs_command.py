"""`ironlayer docs`: the site of a commit written whole into a folder, one-line errors, nothing half-written."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared_core.adapters.git_writer import commit_files, init_repo
from shared_core.adapters.site_folder import write_site
from shared_core.cli.main import main
from shared_core.core.errors import InputError

A = "-- name: s.a\n-- kind: FULL_REFRESH\n-- owner: team\nSELECT 1 AS x\n"
B = "-- name: s.b\n-- kind: FULL_REFRESH\nSELECT x FROM {{ ref('a') }}\n"
C = "-- name: s.c\n-- kind: FULL_REFRESH\nSELECT x FROM {{ ref('b') }}\n"


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = main(args)
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture()
def repo(tmp_path: Path) -> tuple[Path, str, str]:
    path = init_repo(tmp_path / "shop")
    first = commit_files(path, {"models/a.sql": A, "models/b.sql": B, "models/c.sql": C}, "one",
                         "2024-01-01T00:00:00+00:00")
    second = commit_files(path, {"models/c.sql": None}, "two", "2024-01-02T00:00:00+00:00")
    return path, first, second


def listing(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_writes_the_site_of_a_commit_and_prints_the_index(repo: tuple[Path, str, str], tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    path, first, _ = repo
    code, out, err = run(["docs", str(path), "--ref", first, "--out", str(tmp_path / "site")], capsys)
    assert (code, err) == (0, "")
    assert out == f"{tmp_path / 'site' / 'index.html'}\n"
    assert listing(tmp_path / "site") == ["index.html", "models/s.a.html", "models/s.b.html", "models/s.c.html"]
    index = (tmp_path / "site" / "index.html").read_text("utf-8")
    assert "<h1>shop</h1>" in index and first in index and "2024-01-01" in index


def test_a_second_run_replaces_the_site_whole_and_the_same_commit_gives_the_same_bytes(
    repo: tuple[Path, str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, first, _ = repo
    out = tmp_path / "site"
    assert run(["docs", str(path), "--ref", first, "--out", str(out)], capsys)[0] == 0
    before = {name: (out / name).read_bytes() for name in listing(out)}
    assert run(["docs", str(path), "--out", str(out), "--title", "Shop"], capsys)[0] == 0
    assert listing(out) == ["index.html", "models/s.a.html", "models/s.b.html"]  # s.c's page is gone
    assert "<h1>Shop</h1>" in (out / "index.html").read_text("utf-8")
    assert run(["docs", str(path), "--ref", first, "--out", str(out)], capsys)[0] == 0
    assert {name: (out / name).read_bytes() for name in listing(out)} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shop", "site"]  # no staging folder left behind


def test_the_default_folder_is_under_the_local_state_home(repo: tuple[Path, str, str], tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("IRONLAYER_HOME", str(tmp_path / "home"))
    code, out, _ = run(["docs", str(repo[0])], capsys)
    assert code == 0 and out.strip() == str(tmp_path / "home" / "docs" / "index.html")
    assert (tmp_path / "home" / "docs" / "models" / "s.b.html").is_file()


def test_a_folder_that_is_not_a_site_is_never_replaced(repo: tuple[Path, str, str], tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me", "utf-8")
    code, out, err = run(["docs", str(repo[0]), "--out", str(mine)], capsys)
    assert (code, out) == (2, "")
    assert err == f"error: {mine}: folder exists and is not a site written by ironlayer docs; choose another --out\n"
    assert listing(mine) == ["notes.txt"]
    (tmp_path / "file").write_text("x", "utf-8")
    code, _, err = run(["docs", str(repo[0]), "--out", str(tmp_path / "file")], capsys)
    assert code == 2 and err.count("\n") == 1 and "is a file" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run(["docs", str(repo[0]), "--out", str(empty)], capsys)[0] == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ref", "nope"], "unknown git ref 'nope'"),
        (["--ref", "bad"], "models/bad.sql"),
    ],
)
def test_errors_are_one_line_and_write_nothing(repo: tuple[Path, str, str], tmp_path: Path, args: list[str],
                                               message: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = repo[0]
    bad = commit_files(path, {"models/bad.sql": "-- name: s.bad\nSELECT 1\n"}, "bad", "2024-01-03T00:00:00+00:00")
    args = [bad if a == "bad" else a for a in args]
    code, out, err = run(["docs", str(path), *args, "--out", str(tmp_path / "site")], capsys)
    assert (code, out) == (2, "")
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err
    assert not (tmp_path / "site").exists()


def test_a_missing_repository_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["docs", str(tmp_path / "nowhere")], capsys)
    assert code == 2 and err == f"error: {tmp_path / 'nowhere'}: no such directory; give the path of a git repository\n"


@pytest.mark.parametrize("bad", ["../escape.html", "/abs.html", "a/../../b.html", ""])
def test_unsafe_site_paths_are_refused_and_nothing_is_left(tmp_path: Path, bad: str) -> None:
    with pytest.raises(InputError) as caught:
        write_site({"index.html": b"ok", bad: b"x"}, tmp_path / "site")
    assert "is not a plain relative path" in str(caught.value)
    assert list(tmp_path.iterdir()) == []
