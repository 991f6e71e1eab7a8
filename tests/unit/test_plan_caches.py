"""The speed-ups of `ironlayer plan` change no byte: caches, prefetching, batching and their fallbacks.

Each test compares a fast path with the plain one it replaces: the plan with warm and cold caches and
without any, scans read back from the scan cache, the literal self-alias scan with the regex it
replaces, background blob reading with a plain `cat-file`, loading two commits at once with loading
them one by one (results and first error), and batched rendering with line-by-line rendering.
"""

from __future__ import annotations

import io
import json
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from shared_core.adapters.caches.scan import ScanCache
from shared_core.adapters.local_git import LocalGitSource
from shared_core.cli.render import BatchedConsole, render_plan
from shared_core.core.errors import CoreError, SourceError
from shared_core.core.planning.plan_codec import load_plan
from shared_core.core.project.loading import load_commit, load_commits
from shared_core.core.project.models import ModelSource, scan_source
from shared_core.core.sql.canonical import _drop_self_alias

ZERO = "0" * 40


def _model(index: int, *, threshold: int = 0) -> str:
    upstream = f"{{{{ ref('wide.m{index // 2:03d}') }}}}" if index else "raw.numbers"
    kind = ("-- kind: INCREMENTAL_BY_TIME_RANGE\n-- time_column: ts\n-- start: 2024-01-01\n"
            if index % 7 == 3 else "-- kind: FULL_REFRESH\n")
    return (f"-- name: wide.m{index:03d}\n{kind}-- tags: b, a\n-- tests: not_null(id)@warn\n"
            f"SELECT id, ts, v + {index} AS v FROM {upstream} AS m{index:03d}\nWHERE v > {threshold}\n")


@pytest.fixture
def wide_repo(make_repo: Callable[..., tuple[Path, list[str]]]) -> tuple[Path, list[str]]:
    """80 models in a binary tree; the second commit changes the root (everything is downstream)."""
    first = {f"models/m{i:03d}.sql": _model(i) for i in range(80)}
    second = {**first, "models/m000.sql": _model(0, threshold=5)}
    return make_repo([first, second])


def test_plans_are_the_same_with_warm_cold_and_no_caches(
    wide_repo: tuple[Path, list[str]], run_plan: Callable[..., bytes], tmp_path: Path
) -> None:
    repo, (v1, v2) = wide_repo
    for base, target in ((ZERO, v1), (v1, v2)):
        plain = run_plan(repo, base, target, "--no-cache", "--as-of", "2024-01-10")
        cache = ["--cache-dir", str(tmp_path / f"cache-{base[:4]}"), "--as-of", "2024-01-10"]
        assert run_plan(repo, base, target, *cache) == plain  # cold: workers, prefetch, scans written
        assert run_plan(repo, base, target, *cache) == plain  # warm: analyses and scans read back
    assert json.loads(plain)["summary"]["models_to_run"] == 80


def test_scans_read_back_from_the_cache_equal_fresh_scans(tmp_path: Path) -> None:
    texts = [
        _model(3),
        "\n-- name: a.b\n-- kind: MERGE_BY_KEY\n-- unique_key: id, K2\n-- materialization: merge\n"
        "-- contract_mode: strict\n-- contract_columns: id:INT:NOT_NULL, n:STRING\n-- dependencies: x.y\n"
        "-- partition_by: d\n-- incremental_strategy: Merge\n-- cron: 0 */2 * * *\n-- lookback: 2\n-- other: é\n"
        "-- tests: custom_sql(SELECT a, b FROM {model} WHERE c)@WARN, accepted_values(c:x|y)\n"
        "SELECT * FROM {{ ref('x.y') }} JOIN {{ ref(\"z\") }} USING (id)",
        "-- name: h.r\n-- kind: APPEND_ONLY\n-- time_column: ts\n-- start: 2024-01-01T05:00:00Z\n-- batch: hour\n"
        "SELECT * FROM s WHERE ts >= '{{ start_date }}'",
    ]
    scans = {f"blob{i}": scan_source(ModelSource(f"m{i}.sql", text)) for i, text in enumerate(texts)}
    writer = ScanCache(tmp_path)
    for blob, scan in scans.items():
        writer[blob] = scan
    writer.save()
    reader = ScanCache(tmp_path)
    for blob, scan in scans.items():
        found = reader.get(blob)
        assert found == scan and repr(found) == repr(scan) and vars(found.header) == vars(scan.header)
    assert reader.get("unknown") is None


def test_an_unreadable_scan_cache_is_ignored(tmp_path: Path) -> None:
    cache = ScanCache(tmp_path)
    assert cache.path is not None
    cache.path.parent.mkdir(parents=True)
    cache.path.write_text("{not json", encoding="utf-8")
    assert ScanCache(tmp_path).get("blob") is None


def test_drop_self_alias_matches_the_regex_it_replaces() -> None:
    pieces = ["`__il_ref_0__` AS `o`", "`__il_ref_1__` AS `o`", "`__il_ref_0__` AS `orders`", "`", "_", ".",
              "x", "2", "é", "²", " ", ",", "`__il_ref_0__`"]
    rng = random.Random(7)
    for _ in range(20_000):
        sql = "".join(rng.choice(pieces) for _ in range(rng.randrange(8)))
        token, name = rng.choice(["`__il_ref_0__`", "`__il_ref_1__`"]), rng.choice(["o", "orders"])
        expected = re.sub(re.escape(token) + r" AS `" + re.escape(name) + r"`(?![\w`.])", token, sql)
        assert _drop_self_alias(sql, token, name) == expected, sql


def test_background_blob_reads_equal_plain_reads(wide_repo: tuple[Path, list[str]]) -> None:
    repo, (_, v2) = wide_repo
    plain, fetching = LocalGitSource(repo), LocalGitSource(repo, prefetch=True)
    files = plain.list_files(v2, "models", ".sql")
    assert fetching.list_files(v2, "models", ".sql") == files
    blobs = [blob for _, blob in files]
    assert fetching.read_blobs(blobs) == plain.read_blobs(blobs)
    missing = "f" * 40
    for source in (plain, fetching):
        with pytest.raises(SourceError, match=f"git object {missing} is missing"):
            source.read_blobs([blobs[0], missing])


def _first_error(action: Callable[[], Any]) -> str:
    try:
        action()
    except CoreError as exc:
        return f"{type(exc).__name__}: {exc}"
    return "no error"


@pytest.mark.parametrize("broken", ["target model", "base config", "both", "neither"])
def test_loading_two_commits_equals_loading_each(make_repo: Callable[..., tuple[Path, list[str]]],
                                                 broken: str) -> None:
    good = {f"models/m{i:03d}.sql": _model(i) for i in range(6)}
    base = dict(good)
    target = {**good, "models/m005.sql": _model(5, threshold=1)}
    if broken in ("target model", "both"):
        target["models/m004.sql"] = "-- name: wide.m004\nSELECT 1"
    if broken in ("base config", "both"):
        base["ironlayer.toml"] = "models_path = 3\n"
    repo, (v1, v2) = make_repo([base, target])
    source = LocalGitSource(repo)

    def one_by_one() -> list[Any]:
        return [load_commit(source, sha).project.models for sha in (v2, v1)]

    def together() -> list[Any]:
        return [c.project.models for c in load_commits(LocalGitSource(repo, prefetch=True), [v2, v1], scans={})]

    assert _first_error(together) == _first_error(one_by_one)
    if broken == "neither":
        assert together() == one_by_one()


def test_batched_rendering_prints_the_same_text(wide_repo: tuple[Path, list[str]], run_plan: Callable[..., bytes]
                                                ) -> None:
    repo, (v1, _) = wide_repo
    plan = load_plan(run_plan(repo, ZERO, v1, "--no-cache", "--as-of", "2024-01-10").decode(), "plan")
    direct, batched = io.StringIO(), io.StringIO()
    render_plan(plan, Console(highlight=False, soft_wrap=True, file=direct))
    console = BatchedConsole(Console(highlight=False, soft_wrap=True, file=batched))
    render_plan(plan, console)
    console.flush()
    assert batched.getvalue() == direct.getvalue()
