"""`GitHubSource` against `httpx.MockTransport`s that answer like GitHub's REST API.

Two kinds of fake GitHub:
- `ScriptedGitHub` answers from a table of canned responses (shaped like GitHub's, with the repository
  names and SHAs of the recorded webhook payloads in `../shared/fixtures/github/`), so each test can
  assert the exact requests sent and every error mapping.
- `RepoGitHub` serves the objects of a real local repository (read with `git cat-file` / `git ls-tree`,
  blobs base64-encoded and wrapped like GitHub's), so loading a commit and planning through GitHub can be
  compared byte for byte with `LocalGitSource` and with the real `ironlayer plan` CLI.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import re
import subprocess
import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest

from shared_core.adapters.blobs import LocalBlobStore
from shared_core.adapters.git_writer import commit_files, init_repo, read_tree
from shared_core.adapters.github.source import GitHubSource
from shared_core.adapters.local_git import LocalGitSource
from shared_core.core.errors import SourceError, StateUnavailableError
from shared_core.core.planning.plan_codec import plan_to_json
from shared_core.core.planning.planner import build_plan
from shared_core.core.planning.watermarks import parse_watermarks
from shared_core.core.project.headers import parse_instant
from shared_core.core.project.loading import CommitProject, load_commit, load_commits
from shared_core.ports import BlobStore, InlineAnalyzer

API = "https://api.github.com"
CODELOAD_HOST = "codeload.github.com"
TOKEN = "ghp_TESTTOKEN0123456789abcdefABCDEF012345"  # a made-up token; must never show up in a message
ZERO_SHA = "0" * 40
GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "golden"
SCENARIOS = sorted(p.name for p in GOLDEN.iterdir() if p.is_dir())

# From ../shared/fixtures/github/push.branch-modified.json (go-playground/webhooks testdata, MIT).
REPO = "binkkatal/sample_app"
HEAD = "fd489864e7642b48eaad6e3f155c10e46810ec72"
HEAD_TREE = "55e08136e14d5168b699038f88c73e175ddffd3b"
BEFORE = "737d38c599c1b2991664dfc6155d6bf516fcce36"
HEAD_TIME = "2018-06-29T19:34:13+05:30"  # head_commit.timestamp
# From ../shared/fixtures/github/push.new-branch.json (octokit/webhooks, MIT).
HELLO_REPO = "Codertocat/Hello-World"
HELLO_HEAD = "6113728f27ae82c7b1a177c8d03f9e96e0adf246"
HELLO_TREE = "31b122c26a97cf9af023e9ddab94a82c6e77b0ea"

EXPECTED_HEADERS = {
    "accept": "application/vnd.github+json",
    "x-github-api-version": "2022-11-28",
    "authorization": f"Bearer {TOKEN}",
    "user-agent": "ironlayer (+https://github.com/ironlayer)",
}


# --- GitHub-shaped payloads -------------------------------------------------------------------------


def blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def fake_sha(label: str) -> str:
    return hashlib.sha1(label.encode()).hexdigest()


def person(date: str, name: str = "binkkatal", email: str = "binkkatal.r@gmail.com") -> dict[str, str]:
    return {"name": name, "email": email, "date": date}


def git_commit_json(repo: str, sha: str, tree: str, committed: str, authored: str | None = None,
                    parents: tuple[str, ...] = ()) -> dict[str, Any]:
    """`GET /repos/{o}/{r}/git/commits/{sha}`."""
    return {
        "sha": sha,
        "node_id": "C_kwDOAAAAAdoAKGZkNDg5ODY0ZTc2NDJiNDhlYWFkNmUzZjE1NWMxMGU0NjgxMGVjNzI",
        "url": f"{API}/repos/{repo}/git/commits/{sha}",
        "html_url": f"https://github.com/{repo}/commit/{sha}",
        "author": person(authored or committed),
        "committer": person(committed),
        "tree": {"sha": tree, "url": f"{API}/repos/{repo}/git/trees/{tree}"},
        "message": "test a push event",
        "parents": [
            {"sha": p, "url": f"{API}/repos/{repo}/git/commits/{p}", "html_url": f"https://github.com/{repo}/commit/{p}"}
            for p in parents
        ],
        "verification": {"verified": False, "reason": "unsigned", "signature": None, "payload": None,
                         "verified_at": None},
    }


def rest_commit_json(repo: str, sha: str, tree: str, committed: str, authored: str | None = None,
                     parents: tuple[str, ...] = ()) -> dict[str, Any]:
    """`GET /repos/{o}/{r}/commits/{ref}` (the files list of a real answer is left empty here)."""
    git = git_commit_json(repo, sha, tree, committed, authored, parents)
    return {
        "sha": sha,
        "node_id": git["node_id"],
        "commit": {
            "author": git["author"],
            "committer": git["committer"],
            "message": git["message"],
            "tree": git["tree"],
            "url": git["url"],
            "comment_count": 0,
            "verification": git["verification"],
        },
        "url": f"{API}/repos/{repo}/commits/{sha}",
        "html_url": git["html_url"],
        "comments_url": f"{API}/repos/{repo}/commits/{sha}/comments",
        "author": None,
        "committer": None,
        "parents": git["parents"],
        "stats": {"total": 0, "additions": 0, "deletions": 0},
        "files": [],
    }


def tree_entry(repo: str, path: str, kind: str, sha: str, mode: str | None = None, size: int | None = None) -> dict[str, Any]:
    mode = mode or {"blob": "100644", "tree": "040000", "commit": "160000"}[kind]
    entry: dict[str, Any] = {"path": path, "mode": mode, "type": kind, "sha": sha}
    if kind == "blob":
        entry["size"] = size if size is not None else 10
    if kind != "commit":
        entry["url"] = f"{API}/repos/{repo}/git/{kind}s/{sha}"
    return entry


def tree_json(repo: str, sha: str, entries: list[dict[str, Any]], truncated: bool = False) -> dict[str, Any]:
    """`GET /repos/{o}/{r}/git/trees/{sha}[?recursive=1]`."""
    return {"sha": sha, "url": f"{API}/repos/{repo}/git/trees/{sha}", "tree": entries, "truncated": truncated}


def blob_json(repo: str, data: bytes, sha: str | None = None) -> dict[str, Any]:
    """`GET /repos/{o}/{r}/git/blobs/{sha}`: base64 wrapped at 60 characters, with a trailing newline."""
    sha = sha or blob_id(data)
    encoded = base64.b64encode(data).decode()
    wrapped = "".join(encoded[i:i + 60] + "\n" for i in range(0, len(encoded), 60))
    return {"sha": sha, "node_id": "B_kwDOAAAAAdoAKA", "size": len(data), "url": f"{API}/repos/{repo}/git/blobs/{sha}",
            "content": wrapped, "encoding": "base64"}


def repository_json(repo: str) -> dict[str, Any]:
    owner, name = repo.split("/")
    return {"id": 186853002, "node_id": "MDEwOlJlcG9zaXRvcnkxODY4NTMwMDI=", "name": name, "full_name": repo,
            "private": False, "owner": {"login": owner, "type": "User"}, "default_branch": "main"}


def error_json(status: int, message: str, docs: str = "https://docs.github.com/rest") -> dict[str, Any]:
    return {"message": message, "documentation_url": docs, "status": str(status)}


NOT_FOUND = error_json(404, "Not Found", "https://docs.github.com/rest/git/blobs#get-a-blob")


# --- fake GitHubs ------------------------------------------------------------------------------------


class Recorder:
    """Keeps every request a transport saw; `sent()` gives them as 'GET /path?query' lines."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def sent(self) -> list[str]:
        return [f"{r.method} {r.url.path}" + (f"?{r.url.query.decode()}" if r.url.query else "") for r in self.requests]

    def clear(self) -> None:
        self.requests.clear()


Answer = httpx.Response | Callable[[httpx.Request], httpx.Response]


class ScriptedGitHub(Recorder):
    """Answers `GET <path>[?query]` from `routes`; anything else is GitHub's 404."""

    def __init__(self, routes: Mapping[str, Answer] | None = None) -> None:
        super().__init__()
        self.routes: dict[str, Answer] = dict(routes or {})

    def add(self, path: str, body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> None:
        self.routes[path] = httpx.Response(status, json=body, headers=dict(headers or {}))

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        key = request.url.path + (f"?{request.url.query.decode()}" if request.url.query else "")
        answer = self.routes.get(key) if request.method == "GET" else None
        if answer is None:
            return httpx.Response(404, json=NOT_FOUND)
        return answer(request) if callable(answer) else answer

    def source(self, repo: str = REPO, **kwargs: Any) -> GitHubSource:
        kwargs.setdefault("token", TOKEN)
        return GitHubSource(repo, transport=httpx.MockTransport(self.handler), **kwargs)


class RepoGitHub(Recorder):
    """Serves a local git repository's commits, trees, blobs and tarballs the way GitHub's REST API does.

    With `truncate_after`, recursive tree listings longer than that are cut and flagged `truncated`,
    as GitHub does past 100,000 entries. `/tarball/{sha}` answers 302 to `CODELOAD`, which serves
    `git archive` of the commit (gzipped, under a top folder `owner-name-<short sha>/`, like GitHub's);
    `archive_edit` may change the archive's bytes before they are sent.
    """

    def __init__(self, repo: Path, full_name: str = REPO, truncate_after: int | None = None,
                 archive_edit: Callable[[bytes], bytes] | None = None) -> None:
        super().__init__()
        self.repo = repo
        self.full_name = full_name
        self.truncate_after = truncate_after
        self.truncated = 0  # truncated listings sent
        self.archive_edit = archive_edit

    def git(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(["git", "-C", str(self.repo), *args], capture_output=True, check=False)

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        prefix = f"/repos/{self.full_name}"
        path = request.url.path
        if request.url.host == CODELOAD_HOST:
            match = re.fullmatch(rf"/{self.full_name}/legacy\.tar\.gz/([0-9a-f]{{40}})", path)
            return self.archive(match[1]) if match else httpx.Response(404, text="Not Found")
        if request.method != "GET" or not (path == prefix or path.startswith(prefix + "/")):
            return httpx.Response(404, json=NOT_FOUND)
        rest = path[len(prefix):]
        if rest == "":
            return httpx.Response(200, json=repository_json(self.full_name))
        if match := re.fullmatch(r"/commits/(.+)", rest):
            ref = unquote(match[1])
            found = self.git("rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}")
            if found.returncode != 0:
                return httpx.Response(422, json=error_json(422, f"No commit found for SHA: {ref}"))
            return httpx.Response(200, json=self.commit(found.stdout.decode().strip(), rest=True))
        if match := re.fullmatch(r"/git/commits/([0-9a-f]{40})", rest):
            if self.git("cat-file", "-e", f"{match[1]}^{{commit}}").returncode != 0:
                return httpx.Response(404, json=NOT_FOUND)
            return httpx.Response(200, json=self.commit(match[1], rest=False))
        if match := re.fullmatch(r"/git/trees/([0-9a-f]{40})", rest):
            recursive = request.url.params.get("recursive") == "1"
            return self.tree(match[1], recursive)
        if match := re.fullmatch(r"/git/blobs/([0-9a-f]{40})", rest):
            content = self.git("cat-file", "blob", match[1])
            if content.returncode != 0:
                return httpx.Response(404, json=NOT_FOUND)
            return httpx.Response(200, json=blob_json(self.full_name, content.stdout, match[1]))
        if match := re.fullmatch(r"/tarball/([0-9a-f]{40})", rest):
            return httpx.Response(302, headers={
                "location": f"https://{CODELOAD_HOST}/{self.full_name}/legacy.tar.gz/{match[1]}?token=AAAAARCHIVE"})
        return httpx.Response(404, json=NOT_FOUND)

    def archive(self, sha: str) -> httpx.Response:
        top = f"{self.full_name.replace('/', '-')}-{sha[:7]}/"
        made = self.git("archive", "--format=tar.gz", f"--prefix={top}", sha)
        if made.returncode != 0:
            return httpx.Response(404, text="Not Found")
        data = self.archive_edit(made.stdout) if self.archive_edit else made.stdout
        return httpx.Response(200, stream=Chunks(data), headers={"content-type": "application/x-gzip"})

    def commit(self, sha: str, *, rest: bool) -> dict[str, Any]:
        raw = self.git("cat-file", "commit", sha).stdout.decode()
        headers = dict(line.split(" ", 1) for line in raw.split("\n\n", 1)[0].splitlines() if " " in line)
        parents = tuple(line.split(" ", 1)[1] for line in raw.splitlines() if line.startswith("parent "))

        def date(line: str) -> str:  # "Name <email> 1710482400 -0800" -> GitHub's UTC ISO 8601
            return datetime.fromtimestamp(int(line.rsplit(" ", 2)[1]), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

        make = rest_commit_json if rest else git_commit_json
        return make(self.full_name, sha, headers["tree"], date(headers["committer"]), date(headers["author"]), parents)

    def tree(self, sha: str, recursive: bool) -> httpx.Response:
        listing = self.git("ls-tree", "-z", "-l", *(["-r", "-t"] if recursive else []), sha)
        if listing.returncode != 0:
            return httpx.Response(404, json=NOT_FOUND)
        entries = []
        for line in listing.stdout.decode().split("\0"):
            if not line:
                continue
            meta, path = line.split("\t", 1)
            mode, kind, object_id, size = meta.split()
            entries.append(tree_entry(self.full_name, path, kind, object_id, mode, None if size == "-" else int(size)))
        truncated = False
        if recursive and self.truncate_after is not None and len(entries) > self.truncate_after:
            entries, truncated = entries[:self.truncate_after], True
            self.truncated += 1
        return httpx.Response(200, json=tree_json(self.full_name, sha, entries, truncated))

    def source(self, **kwargs: Any) -> GitHubSource:
        kwargs.setdefault("token", TOKEN)
        return GitHubSource(self.full_name, transport=httpx.MockTransport(self.handler), **kwargs)


class Chunks(httpx.SyncByteStream):
    """A response body that arrives in pieces, as over a network (and is not read before it is streamed)."""

    def __init__(self, data: bytes, size: int = 4096) -> None:
        self.data = data
        self.size = size
        self.sent = 0  # bytes handed out so far

    def __iter__(self) -> Iterator[bytes]:
        for start in range(0, len(self.data), self.size):
            self.sent = start + self.size
            yield self.data[start:start + self.size]


class MemoryStore:
    """A `BlobStore` in a dict, counting calls (a stand-in cache for unit tests)."""

    def __init__(self, broken: bool = False) -> None:
        self.data: dict[str, bytes] = {}
        self.broken = broken
        self.puts: list[str] = []

    def get(self, key: str) -> bytes | None:
        if self.broken:
            raise StateUnavailableError("blob store memory: unreachable; safe to retry")
        return self.data.get(key)

    def put(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> None:
        self.puts.append(key)
        if self.broken:
            raise StateUnavailableError("blob store memory: unreachable; safe to retry")
        self.data[key] = data

    def exists(self, key: str) -> bool:
        return key in self.data

    def health(self) -> None:
        pass


def _check_store(store: BlobStore) -> BlobStore:  # MemoryStore satisfies the port (checked by mypy if run on tests)
    return store


# --- requests and headers -------------------------------------------------------------------------


def test_resolve_branch_sends_exact_request_and_caches_commit() -> None:
    github = ScriptedGitHub()
    github.add(f"/repos/{REPO}/commits/master", rest_commit_json(REPO, HEAD, HEAD_TREE, HEAD_TIME, parents=(BEFORE,)))
    source = github.source()
    assert source.resolve("master") == HEAD
    assert source.commit_time(HEAD) == parse_instant("2018-06-29T14:04:13Z")  # committer date, in UTC
    assert github.sent() == [f"GET /repos/{REPO}/commits/master"]  # commit_time used the resolved commit
    request = github.requests[0]
    assert str(request.url) == f"{API}/repos/{REPO}/commits/master"
    assert {k: request.headers.get(k) for k in EXPECTED_HEADERS} == EXPECTED_HEADERS


def test_every_request_carries_the_same_headers() -> None:
    github = ScriptedGitHub()
    data = b"-- name: a.b\n-- kind: FULL_REFRESH\nSELECT 1 AS x\n"
    github.add(f"/repos/{REPO}/git/commits/{HEAD}", git_commit_json(REPO, HEAD, HEAD_TREE, HEAD_TIME))
    github.add(f"/repos/{REPO}/git/trees/{HEAD_TREE}",
               tree_json(REPO, HEAD_TREE, [tree_entry(REPO, "a.sql", "blob", blob_id(data))]))
    github.add(f"/repos/{REPO}/git/blobs/{blob_id(data)}", blob_json(REPO, data))
    source = github.source()
    assert source.read_file(HEAD, "a.sql") == data.decode()
    assert github.sent() == [
        f"GET /repos/{REPO}/git/commits/{HEAD}",
        f"GET /repos/{REPO}/git/trees/{HEAD_TREE}",
        f"GET /repos/{REPO}/git/blobs/{blob_id(data)}",
    ]
    for request in github.requests:
        assert {k: request.headers.get(k) for k in EXPECTED_HEADERS} == EXPECTED_HEADERS


def test_without_token_no_authorization_header_is_sent() -> None:
    github = ScriptedGitHub()
    github.add(f"/repos/{HELLO_REPO}/git/commits/{HELLO_HEAD}",
               git_commit_json(HELLO_REPO, HELLO_HEAD, HELLO_TREE, "2019-05-15T15:19:25Z"))
    source = github.source(HELLO_REPO, token=None)
    assert source.resolve(HELLO_HEAD) == HELLO_HEAD
    assert "authorization" not in github.requests[0].headers


def test_enterprise_base_url_keeps_its_path() -> None:
    github = ScriptedGitHub()
    github.add(f"/api/v3/repos/{REPO}/commits/main", rest_commit_json(REPO, HEAD, HEAD_TREE, HEAD_TIME))
    source = github.source(base_url="https://ghe.example.com/api/v3")
    assert source.resolve("main") == HEAD
    assert str(github.requests[0].url) == f"https://ghe.example.com/api/v3/repos/{REPO}/commits/main"


def test_resolve_forms() -> None:
    github = ScriptedGitHub()
    github.add(f"/repos/{REPO}/git/commits/{HEAD}", git_commit_json(REPO, HEAD, HEAD_TREE, HEAD_TIME))
    github.add(f"/repos/{REPO}/commits/feature/new-models", rest_commit_json(REPO, HEAD, HEAD_TREE, HEAD_TIME))
    github.add(f"/repos/{REPO}/commits/fd48986", rest_commit_json(REPO, HEAD, HEAD_TREE, HEAD_TIME))
    source = github.source()
    assert source.resolve(ZERO_SHA) == ZERO_SHA
    assert github.sent() == []  # "nothing deployed yet" needs no request
    assert source.resolve(HEAD.upper()) == HEAD
    assert source.resolve("feature/new-models") == HEAD
    assert source.resolve("fd48986") == HEAD
    assert github.sent() == [
        f"GET /repos/{REPO}/git/commits/{HEAD}",  # a full SHA is checked with the git database endpoint
        f"GET /repos/{REPO}/commits/feature/new-models",
        f"GET /repos/{REPO}/commits/fd48986",
    ]
    assert source.resolve(HEAD) == HEAD
    assert len(github.requests) == 3  # known commits are not asked for again


def test_commit_time_is_the_committer_date_not_the_author_date() -> None:
    github = ScriptedGitHub()
    github.add(f"/repos/{REPO}/git/commits/{HEAD}",
               git_commit_json(REPO, HEAD, HEAD_TREE, committed="2024-03-15T06:00:00Z", authored="2020-01-01T00:00:00Z"))
    source = github.source()
    assert source.commit_time(HEAD) == parse_instant("2024-03-15T06:00:00Z")
    assert source.commit_time(HEAD).tzinfo == UTC
    assert github.sent() == [f"GET /repos/{REPO}/git/commits/{HEAD}"]


# --- listing -------------------------------------------------------------------------------------


STG = b"-- name: s.stg\n-- kind: FULL_REFRESH\nSELECT 1 AS x\n"


def _models_repo(github: ScriptedGitHub, *, truncated: bool = False) -> dict[str, str]:
    """A commit with `models/` holding .sql files at several depths, plus things list_files must skip."""
    models, staging, deep = fake_sha("models-tree"), fake_sha("staging-tree"), fake_sha("deep-tree")
    files = {
        "models/b.sql": fake_sha("b"),
        "models/a.sql": fake_sha("a"),
        "models/staging/stg.sql": blob_id(STG),
        "models/staging/deep/x.sql": fake_sha("x"),
    }
    github.add(f"/repos/{REPO}/git/commits/{HEAD}", git_commit_json(REPO, HEAD, HEAD_TREE, HEAD_TIME))
    github.add(f"/repos/{REPO}/git/trees/{HEAD_TREE}", tree_json(REPO, HEAD_TREE, [
        tree_entry(REPO, ".razorops.yaml", "blob", fake_sha("razorops")),
        tree_entry(REPO, "README.md", "blob", fake_sha("readme")),
        tree_entry(REPO, "models", "tree", models),
        tree_entry(REPO, "models.sql", "blob", fake_sha("decoy")),  # beside the folder, not in it
    ]))
    recursive = [
        tree_entry(REPO, "README.md", "blob", fake_sha("models-readme")),
        tree_entry(REPO, "a.sql", "blob", files["models/a.sql"]),
        tree_entry(REPO, "b.sql", "blob", files["models/b.sql"]),
        tree_entry(REPO, "link.sql", "blob", fake_sha("link"), mode="120000"),  # symlink: skipped, like git
        tree_entry(REPO, "run.sql", "blob", fake_sha("run"), mode="100755"),
        tree_entry(REPO, "vendored", "commit", fake_sha("submodule")),  # submodule: skipped
        tree_entry(REPO, "staging", "tree", staging),
        tree_entry(REPO, "staging/deep", "tree", deep),
        tree_entry(REPO, "staging/deep/x.sql", "blob", files["models/staging/deep/x.sql"]),
        tree_entry(REPO, "staging/stg.sql", "blob", files["models/staging/stg.sql"]),
    ]
    files["models/run.sql"] = fake_sha("run")
    github.add(f"/repos/{REPO}/git/trees/{models}?recursive=1",
               tree_json(REPO, models, recursive[:4] if truncated else recursive, truncated=truncated))
    github.add(f"/repos/{REPO}/git/trees/{models}", tree_json(REPO, models, [
        e for e in recursive if "/" not in e["path"]
    ]))
    github.add(f"/repos/{REPO}/git/trees/{staging}", tree_json(REPO, staging, [
        tree_entry(REPO, "deep", "tree", deep),
        tree_entry(REPO, "stg.sql", "blob", files["models/staging/stg.sql"]),
    ]))
    github.add(f"/repos/{REPO}/git/trees/{staging}?recursive=1", tree_json(REPO, staging, [
        tree_entry(REPO, "deep", "tree", deep),
        tree_entry(REPO, "deep/x.sql", "blob", files["models/staging/deep/x.sql"]),
        tree_entry(REPO, "stg.sql", "blob", files["models/staging/stg.sql"]),
    ]))
    github.add(f"/repos/{REPO}/git/trees/{deep}", tree_json(REPO, deep, [
        tree_entry(REPO, "x.sql", "blob", files["models/staging/deep/x.sql"]),
    ]))
    return {"models": models, "staging": staging, "deep": deep, **{f"file:{k}": v for k, v in files.items()}}


def _expected_files(ids: Mapping[str, str]) -> list[tuple[str, str]]:
    return sorted((k.removeprefix("file:"), v) for k, v in ids.items() if k.startswith("file:"))


def test_list_files_walks_to_the_folder_then_lists_it_recursively() -> None:
    github = ScriptedGitHub()
    ids = _models_repo(github)
    source = github.source()
    files = source.list_files(HEAD, "models", ".sql")
    assert files == _expected_files(ids)
    assert [path for path, _ in files] == ["models/a.sql", "models/b.sql", "models/run.sql",
                                           "models/staging/deep/x.sql", "models/staging/stg.sql"]
    assert github.sent() == [
        f"GET /repos/{REPO}/git/commits/{HEAD}",
        f"GET /repos/{REPO}/git/trees/{HEAD_TREE}",
        f"GET /repos/{REPO}/git/trees/{ids['models']}?recursive=1",
    ]
    github.clear()
    assert source.list_files(HEAD, "models/", ".sql") == files  # same trees: nothing asked again
    assert source.list_files(HEAD, "models", ".md") == [("models/README.md", fake_sha("models-readme"))]
    assert github.sent() == []


def test_truncated_listing_walks_the_folder_tree_by_tree() -> None:
    github = ScriptedGitHub()
    ids = _models_repo(github, truncated=True)
    source = github.source()
    assert source.list_files(HEAD, "models", ".sql") == _expected_files(ids)
    assert github.sent() == [
        f"GET /repos/{REPO}/git/commits/{HEAD}",
        f"GET /repos/{REPO}/git/trees/{HEAD_TREE}",
        f"GET /repos/{REPO}/git/trees/{ids['models']}?recursive=1",
        f"GET /repos/{REPO}/git/trees/{ids['models']}",  # non-recursive, one folder at a time
        f"GET /repos/{REPO}/git/trees/{ids['staging']}",
        f"GET /repos/{REPO}/git/trees/{ids['deep']}",
    ]


def test_a_truncated_single_folder_is_a_clear_error() -> None:
    github = ScriptedGitHub()
    ids = _models_repo(github, truncated=True)
    github.add(f"/repos/{REPO}/git/trees/{ids['staging']}", tree_json(REPO, ids["staging"], [], truncated=True))
    with pytest.raises(SourceError) as caught:
        github.source().list_files(HEAD, "models", ".sql")
    assert str(caught.value) == (
        f"GitHub truncated the listing of folder 'models/staging' in {REPO} (too many entries in one folder); "
        "split it into subfolders"
    )


def test_list_files_missing_folder_nested_folder_and_zero_sha() -> None:
    github = ScriptedGitHub()
    ids = _models_repo(github)
    source = github.source()
    assert source.list_files(ZERO_SHA, "models", ".sql") == []
    assert github.sent() == []
    assert source.list_files(HEAD, "warehouse/sql", ".sql") == []
    assert source.list_files(HEAD, "models/staging", ".sql") == [
        ("models/staging/deep/x.sql", ids["file:models/staging/deep/x.sql"]),
        ("models/staging/stg.sql", ids["file:models/staging/stg.sql"]),
    ]
    assert github.sent() == [
        f"GET /repos/{REPO}/git/commits/{HEAD}",
        f"GET /repos/{REPO}/git/trees/{HEAD_TREE}",
        f"GET /repos/{REPO}/git/trees/{ids['models']}",  # walking down to models/staging
        f"GET /repos/{REPO}/git/trees/{ids['staging']}?recursive=1",
    ]


def test_read_file_walks_one_tree_at_a_time_and_returns_none_for_missing() -> None:
    github = ScriptedGitHub()
    ids = _models_repo(github)
    github.add(f"/repos/{REPO}/git/blobs/{blob_id(STG)}", blob_json(REPO, STG))
    source = github.source(cache=MemoryStore())
    assert source.read_file(HEAD, "models/staging/stg.sql") == STG.decode()
    assert github.sent() == [
        f"GET /repos/{REPO}/git/commits/{HEAD}",
        f"GET /repos/{REPO}/git/trees/{HEAD_TREE}",
        f"GET /repos/{REPO}/git/trees/{ids['models']}",
        f"GET /repos/{REPO}/git/trees/{ids['staging']}",
        f"GET /repos/{REPO}/git/blobs/{blob_id(STG)}",
    ]
    github.clear()
    assert source.read_file(HEAD, "models/staging/stg.sql") == STG.decode()
    assert github.sent() == []  # trees remembered, blob cached
    assert source.read_file(HEAD, "ironlayer.toml") is None
    assert source.read_file(HEAD, "models/nope/x.sql") is None
    assert source.read_file(HEAD, "models") is None  # a folder is not a file
    assert source.read_file(HEAD, "models/../README.md") is None
    assert source.read_file(ZERO_SHA, "README.md") is None
    assert github.sent() == []


def test_read_file_of_non_utf8_text_is_a_clear_error() -> None:
    github = ScriptedGitHub()
    data = "SELECT 'café'".encode("latin-1")
    github.add(f"/repos/{REPO}/git/commits/{HEAD}", git_commit_json(REPO, HEAD, HEAD_TREE, HEAD_TIME))
    github.add(f"/repos/{REPO}/git/trees/{HEAD_TREE}",
               tree_json(REPO, HEAD_TREE, [tree_entry(REPO, "ironlayer.toml", "blob", blob_id(data))]))
    github.add(f"/repos/{REPO}/git/blobs/{blob_id(data)}", blob_json(REPO, data))
    message = _error(github, lambda s: s.read_file(HEAD, "ironlayer.toml"))
    assert message == f"ironlayer.toml: not UTF-8 text (at commit {HEAD[:12]}); save the file as UTF-8"


# --- blobs and the cache -------------------------------------------------------------------------


def _blob_routes(github: ScriptedGitHub, contents: list[bytes]) -> list[str]:
    ids = []
    for data in contents:
        github.add(f"/repos/{REPO}/git/blobs/{blob_id(data)}", blob_json(REPO, data))
        ids.append(blob_id(data))
    return ids


CONTENTS = [b"", b"SELECT 1\n", "-- name: a.b\nSELECT 'é' AS e\n".encode(), bytes(range(256)) * 40]


@pytest.mark.parametrize("workers", [1, 4])
def test_read_blobs_downloads_once_and_fills_the_cache(tmp_path: Path, workers: int) -> None:
    github = ScriptedGitHub()
    ids = _blob_routes(github, CONTENTS)
    cache = LocalBlobStore(tmp_path / "cache")
    source = github.source(cache=cache, max_workers=workers)
    blobs = source.read_blobs([ids[1], ids[0], ids[3], ids[2], ids[1]])
    assert blobs == {blob_id(d): d for d in CONTENTS}
    assert list(blobs) == sorted(ids)
    assert sorted(github.sent()) == sorted(f"GET /repos/{REPO}/git/blobs/{b}" for b in ids)  # duplicates: once
    for data in CONTENTS:
        assert cache.get(f"git-blobs/{blob_id(data)}") == data
    github.clear()
    again = github.source(cache=cache)  # another run, same cache: nothing downloaded
    assert again.read_blobs(ids) == blobs
    assert github.sent() == []


def test_cache_hits_need_no_request_and_misses_only_fetch_the_rest() -> None:
    github = ScriptedGitHub()
    ids = _blob_routes(github, CONTENTS)
    cache = MemoryStore()
    cache.data[f"git-blobs/{ids[1]}"] = CONTENTS[1]
    cache.data[f"git-blobs/{ids[2]}"] = CONTENTS[2]
    source = github.source(cache=_check_store(cache), max_workers=1)
    assert source.read_blobs(ids) == dict(zip(ids, CONTENTS, strict=True))
    assert github.sent() == [f"GET /repos/{REPO}/git/blobs/{b}" for b in sorted([ids[0], ids[3]])]
    assert sorted(cache.puts) == sorted(f"git-blobs/{b}" for b in (ids[0], ids[3]))
    assert source.read_blobs([]) == {}


def test_a_corrupt_cache_entry_is_downloaded_again_and_replaced() -> None:
    github = ScriptedGitHub()
    ids = _blob_routes(github, CONTENTS[1:2])
    cache = MemoryStore()
    cache.data[f"git-blobs/{ids[0]}"] = b"SELECT 2\n"  # not what the id says
    assert github.source(cache=cache).read_blobs(ids) == {ids[0]: CONTENTS[1]}
    assert github.sent() == [f"GET /repos/{REPO}/git/blobs/{ids[0]}"]
    assert cache.data[f"git-blobs/{ids[0]}"] == CONTENTS[1]


def test_an_unreachable_cache_only_costs_downloads() -> None:
    github = ScriptedGitHub()
    ids = _blob_routes(github, CONTENTS)
    cache = MemoryStore(broken=True)
    assert github.source(cache=cache).read_blobs(ids) == dict(zip(ids, CONTENTS, strict=True))
    assert len(github.requests) == len(ids)


def test_blobs_are_downloaded_concurrently() -> None:
    github = ScriptedGitHub()
    ids = _blob_routes(github, CONTENTS[1:])
    barrier = threading.Barrier(len(ids), timeout=10)  # only passes when all downloads are in flight at once

    def together(blob: str) -> Callable[[httpx.Request], httpx.Response]:
        def answer(request: httpx.Request) -> httpx.Response:
            barrier.wait()
            return httpx.Response(200, json=blob_json(REPO, dict(zip(ids, CONTENTS[1:], strict=True))[blob]))
        return answer

    for blob in ids:
        github.routes[f"/repos/{REPO}/git/blobs/{blob}"] = together(blob)
    assert github.source(max_workers=len(ids)).read_blobs(ids) == dict(zip(ids, CONTENTS[1:], strict=True))


@pytest.mark.parametrize("workers", [1, 4])
def test_blobs_read_before_a_failure_stay_cached(workers: int) -> None:
    github = ScriptedGitHub()
    ids = sorted(_blob_routes(github, CONTENTS))
    content = {blob_id(data): data for data in CONTENTS}
    failing = ids[1]
    github.add(f"/repos/{REPO}/git/blobs/{failing}", error_json(502, "Server Error"), 502)
    cache = MemoryStore()
    with pytest.raises(SourceError, match=r"unavailable \(HTTP 502\)"):
        github.source(cache=cache, max_workers=workers).read_blobs(ids)
    # one at a time, downloading stops at the failure; concurrently, the others all finish (and are kept)
    kept = [ids[0]] if workers == 1 else [b for b in ids if b != failing]
    assert sorted(cache.data) == [f"git-blobs/{b}" for b in kept]
    github.add(f"/repos/{REPO}/git/blobs/{failing}", blob_json(REPO, content[failing]))
    github.clear()
    assert github.source(cache=cache, max_workers=1).read_blobs(ids) == content
    assert github.sent() == [f"GET /repos/{REPO}/git/blobs/{b}" for b in ids if b not in kept]


def test_blob_with_content_of_another_id_is_refused() -> None:
    github = ScriptedGitHub()
    wanted = blob_id(b"right")
    github.add(f"/repos/{REPO}/git/blobs/{wanted}", blob_json(REPO, b"wrong", wanted))
    cache = MemoryStore()
    with pytest.raises(SourceError) as caught:
        github.source(cache=cache).read_blobs([wanted])
    assert str(caught.value) == f"GitHub sent blob {wanted} of {REPO} with content of another id; retry later"
    assert cache.data == {}


def test_blob_ids_are_checked_before_any_request() -> None:
    github = ScriptedGitHub()
    with pytest.raises(SourceError, match="not a git object id"):
        github.source().read_blobs(["../../../user"])
    assert github.sent() == []


# --- errors --------------------------------------------------------------------------------------


def _error(github: ScriptedGitHub, action: Callable[[GitHubSource], object]) -> str:
    with pytest.raises(SourceError) as caught:
        action(github.source())
    message = str(caught.value)
    assert "\n" not in message
    assert TOKEN not in message and TOKEN[4:12] not in message
    return message


def test_unknown_ref_is_named() -> None:
    github = ScriptedGitHub()
    github.add(f"/repos/{REPO}/commits/no-such-branch", error_json(422, "No commit found for SHA: no-such-branch"), 422)
    message = _error(github, lambda s: s.resolve("no-such-branch"))
    assert message == (f"unknown git ref 'no-such-branch' in GitHub repository {REPO}; "
                       "check the branch, tag or commit SHA")


def test_unknown_commit_sha_is_named() -> None:
    github = ScriptedGitHub()
    github.add(f"/repos/{REPO}", repository_json(REPO))
    message = _error(github, lambda s: s.resolve(BEFORE))
    assert message == (f"commit {BEFORE} not found in GitHub repository {REPO}; "
                       "check the commit SHA (was it force-pushed away?)")
    assert github.sent() == [f"GET /repos/{REPO}/git/commits/{BEFORE}", f"GET /repos/{REPO}"]


def test_unknown_repository_is_named() -> None:
    github = ScriptedGitHub()  # everything 404, the repository too
    message = _error(github, lambda s: s.resolve("master"))
    assert message == (f"GitHub repository {REPO} not found, or the token cannot see it; check the repository "
                       "name and that the token has read access to it")
    assert github.sent() == [f"GET /repos/{REPO}/commits/master", f"GET /repos/{REPO}"]


def test_missing_blob_is_named() -> None:
    github = ScriptedGitHub()
    github.add(f"/repos/{REPO}", repository_json(REPO))
    missing = fake_sha("gone")
    message = _error(github, lambda s: s.read_blobs([missing]))
    assert message == (f"blob {missing} not found in GitHub repository {REPO}; "
                       "check the commit SHA (was it force-pushed away?)")


RATE_LIMITED = {"x-ratelimit-limit": "5000", "x-ratelimit-remaining": "0", "x-ratelimit-reset": "1700000000",
                "x-ratelimit-used": "5000", "x-ratelimit-resource": "core"}


@pytest.mark.parametrize("status", [403, 429, 401])
def test_rate_limit_says_when_it_resets(status: int) -> None:
    github = ScriptedGitHub()
    github.add(f"/repos/{REPO}/commits/master",
               error_json(status, "API rate limit exceeded for user ID 1.",
                          "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"),
               status, RATE_LIMITED)
    message = _error(github, lambda s: s.resolve("master"))
    assert message == (f"GitHub API rate limit exhausted reading git ref 'master' of {REPO}; it resets at "
                       "2023-11-14 22:13:20 UTC; retry then, or use a token with a higher limit")


def test_secondary_rate_limit_says_how_long_to_wait() -> None:
    github = ScriptedGitHub()
    github.add(f"/repos/{REPO}/git/trees/{HEAD_TREE}", error_json(403, "You have exceeded a secondary rate limit."),
               403, {"retry-after": "60", "x-ratelimit-remaining": "4000"})
    github.add(f"/repos/{REPO}/git/commits/{HEAD}", git_commit_json(REPO, HEAD, HEAD_TREE, HEAD_TIME))
    message = _error(github, lambda s: s.list_files(HEAD, "models", ".sql"))
    assert message == (f"GitHub rate-limited requests reading tree {HEAD_TREE} of {REPO} (secondary limit); "
                       "retry after 60 s")


def test_bad_token_is_a_token_problem() -> None:
    github = ScriptedGitHub()
    github.add(f"/repos/{REPO}/commits/master", error_json(401, "Bad credentials"), 401,
               {"x-ratelimit-remaining": "59"})
    message = _error(github, lambda s: s.resolve("master"))
    assert message == (f"GitHub rejected the token (401) reading git ref 'master' of {REPO}; check that the GitHub "
                       "token is set, valid and not expired")


def test_forbidden_is_a_token_permission_problem() -> None:
    github = ScriptedGitHub()
    github.add(f"/repos/{REPO}/git/blobs/{fake_sha('a')}",
               error_json(403, "Resource not accessible by personal access token"), 403,
               {"x-ratelimit-remaining": "4999"})
    message = _error(github, lambda s: s.read_blobs([fake_sha("a")]))
    assert message == (f"GitHub refused access (403) reading blob {fake_sha('a')} of {REPO}; give the token read "
                       "access to the repository's contents")


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_mean_retry_later(status: int) -> None:
    github = ScriptedGitHub()
    github.add(f"/repos/{REPO}/commits/master", error_json(status, "Server Error"), status)
    message = _error(github, lambda s: s.resolve("master"))
    assert message == f"GitHub is unavailable (HTTP {status}) reading git ref 'master' of {REPO}; retry later"


@pytest.mark.parametrize("failure", [httpx.ConnectError, httpx.ReadTimeout, httpx.RemoteProtocolError])
def test_network_errors_mean_retry_later(failure: type[httpx.TransportError]) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise failure("boom", request=request)

    github = ScriptedGitHub({f"/repos/{REPO}/commits/master": fail})
    message = _error(github, lambda s: s.resolve("master"))
    assert message == f"GitHub is unreachable ({failure.__name__}) reading git ref 'master' of {REPO}; retry later"


def test_other_statuses_quote_githubs_message() -> None:
    github = ScriptedGitHub()
    github.add(f"/repos/{REPO}/commits/master", error_json(409, "Git Repository is empty."), 409)
    message = _error(github, lambda s: s.resolve("master"))
    assert message == f"GitHub answered HTTP 409 reading git ref 'master' of {REPO}: Git Repository is empty."


def test_unexpected_answers_are_source_errors() -> None:
    github = ScriptedGitHub()
    github.add(f"/repos/{REPO}/git/commits/{HEAD}", {"sha": HEAD})  # no tree, no committer
    github.routes[f"/repos/{REPO}/commits/master"] = httpx.Response(200, text="<html>maintenance</html>")
    assert "without 'tree'" in _error(github, lambda s: s.resolve(HEAD))
    assert _error(github, lambda s: s.resolve("master")) == (
        f"GitHub sent an unreadable answer for git ref 'master' of {REPO}; retry later"
    )


def test_invalid_repository_name_is_refused() -> None:
    with pytest.raises(SourceError, match="'owner/name'"):
        GitHubSource("https://github.com/binkkatal/sample_app", token=TOKEN)
    assert TOKEN not in repr(GitHubSource(REPO, token=TOKEN))


# --- the same project and plan as from the local repository ---------------------------------------


def _same_project(a: CommitProject, b: CommitProject) -> None:
    assert a.sha == b.sha
    assert a.config == b.config
    assert a.project.models == b.project.models
    assert a.project.order == b.project.order


def _plan_bytes(source: Any, base: str, target: str, folder: Path) -> bytes:
    """What `ironlayer plan` does, through any GitSource (InlineAnalyzer, no caches)."""
    target_commit, base_commit = load_commit(source, target), load_commit(source, base)
    ledger: Any = {}
    if (folder / "watermarks.json").exists():
        ledger = parse_watermarks((folder / "watermarks.json").read_text("utf-8"), "watermarks.json")
    as_of_file = folder / "as_of.txt"
    as_of = parse_instant(as_of_file.read_text("utf-8").strip()) if as_of_file.exists() else source.commit_time(target)
    plan = build_plan(base_commit.project, target_commit.project, base_sha=base, target_sha=target, as_of=as_of,
                      ledger=ledger, settings=target_commit.config.planner, analyzer=InlineAnalyzer())
    return plan_to_json(plan).encode("utf-8")


TRUNCATED = ["diamond", "moved_files", "long_chain"]  # nested folders, a moved models path, many files


@pytest.mark.parametrize(("scenario", "truncate"), [
    *(pytest.param(s, None, id=s) for s in SCENARIOS),
    *(pytest.param(s, 2, id=f"{s}-truncated") for s in TRUNCATED if s in SCENARIOS),
])
def test_github_source_loads_and_plans_exactly_like_local_git(
    scenario: str, truncate: int | None, make_repo: Callable[..., tuple[Path, list[str]]],
    run_plan: Callable[..., bytes], tmp_path: Path,
) -> None:
    folder = GOLDEN / scenario
    trees = [read_tree(folder / side) for side in ("base", "target") if (folder / side).is_dir()]
    repo, shas = make_repo(trees)
    base, target = (shas[0], shas[1]) if len(shas) == 2 else (ZERO_SHA, shas[0])
    github = RepoGitHub(repo, truncate_after=truncate)
    local = LocalGitSource(repo)
    source = github.source(cache=LocalBlobStore(tmp_path / "cache"))

    assert source.resolve("main") == local.resolve("main") == target
    assert source.resolve(base) == base
    assert source.commit_time(target) == local.commit_time(target)
    for sha in (base, target):
        _same_project(load_commit(source, sha), load_commit(local, sha))
    plan = _plan_bytes(source, base, target, folder)
    assert plan == _plan_bytes(local, base, target, folder)
    extra = [arg for name, flag in (("watermarks.json", "--watermarks"), ("as_of.txt", "--as-of"))
             if (folder / name).exists()
             for arg in (flag, str(folder / name) if name.endswith(".json") else (folder / name).read_text().strip())]
    assert plan == run_plan(repo, base, target, *extra)  # and the very bytes `ironlayer plan` writes
    assert (github.truncated > 0) == (truncate is not None)

    github.clear()  # a second run over the same cache downloads no file again
    again = github.source(cache=LocalBlobStore(tmp_path / "cache"))
    _same_project(load_commit(again, target), load_commit(local, target))
    assert not [line for line in github.sent() if "/git/blobs/" in line]


def test_project_file_unusual_names_links_and_offsets_match_local_git(tmp_path: Path) -> None:
    repo = init_repo(tmp_path / "repo")
    model = "-- name: {name}\n-- kind: FULL_REFRESH\nSELECT {body}\n"
    base = commit_files(repo, {
        "pyproject.toml": '[project]\nname = "x"\n\n[tool.ironlayer]\nmodels_path = "warehouse/sql"\n',
        "warehouse/sql/raw/orders.sql": model.format(name="raw.orders", body="1 AS id FROM landing.orders"),
        "warehouse/sql/raw/notes.txt": "not a model",
        "models/ignored.sql": model.format(name="x.ignored", body="1 AS x"),
    }, "base", "2024-03-01T09:15:00+05:30")
    (repo / "warehouse/sql/raw/link.sql").symlink_to("orders.sql")
    target = commit_files(repo, {
        "warehouse/sql/marts/daily revenue.sql": model.format(
            name="marts.daily_revenue", body="id FROM {{ ref('raw.orders') }}"),
        "warehouse/sql/marts/café.sql": model.format(name="marts.cafe", body="'é' AS e"),
        "warehouse/sql/raw/orders.sql": model.format(name="raw.orders", body="2 AS id FROM landing.orders"),
    }, "target", "2024-03-15T23:30:00-08:00")
    github = RepoGitHub(repo)
    source, local = github.source(), LocalGitSource(repo)
    for sha in (base, target):
        assert source.commit_time(sha) == local.commit_time(sha)
        assert source.list_files(sha, "warehouse/sql", ".sql") == local.list_files(sha, "warehouse/sql", ".sql")
        assert source.read_file(sha, "pyproject.toml") == local.read_file(sha, "pyproject.toml")
        _same_project(load_commit(source, sha), load_commit(local, sha))
    assert source.commit_time(target) == parse_instant("2024-03-16T07:30:00Z")
    assert [p for p, _ in source.list_files(target, "warehouse/sql", ".sql")] == [
        "warehouse/sql/marts/café.sql", "warehouse/sql/marts/daily revenue.sql", "warehouse/sql/raw/orders.sql",
    ]
    assert _plan_bytes(source, base, target, tmp_path) == _plan_bytes(local, base, target, tmp_path)


# --- archives: a first plan in a few requests, a one-change plan downloads one blob ----------------


def _models(count: int, *, changed: int | None = None) -> dict[str, str]:
    """A project of `count` models in three folders; `changed` gets another SQL body."""
    files = {"ironlayer.toml": 'models_path = "models"\n'}
    for i in range(count):
        body = f"{i} AS x" if i != changed else f"{i} + 1 AS x"
        files[f"models/layer{i % 3}/m{i:03d}.sql"] = f"-- name: s.m{i:03d}\n-- kind: FULL_REFRESH\nSELECT {body}\n"
    return files


def _rev(repo: Path, spec: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "rev-parse", spec], capture_output=True, check=True,
                          text=True).stdout.strip()


def _two_commits(tmp_path: Path, count: int = 60, attributes: str | None = None) -> tuple[Path, str, str]:
    """A repository whose second commit changes one model of the first."""
    repo = init_repo(tmp_path / "repo")
    files = _models(count)
    if attributes is not None:
        files[".gitattributes"] = attributes
    first = commit_files(repo, files, "models", "2024-03-01T00:00:00+00:00")
    second = commit_files(repo, _models(count, changed=7), "change m007", "2024-03-02T00:00:00+00:00")
    return repo, first, second


def test_a_first_plan_reads_the_commit_archive_above_the_threshold(tmp_path: Path) -> None:
    repo, first, _ = _two_commits(tmp_path)
    github = RepoGitHub(repo)
    cache = MemoryStore()
    source = github.source(cache=cache)
    assert source.resolve(first) == first
    _same_project(load_commit(source, first), load_commit(LocalGitSource(repo), first))
    config = _rev(repo, f"{first}:ironlayer.toml")
    assert github.sent() == [
        f"GET /repos/{REPO}/git/commits/{first}",
        f"GET /repos/{REPO}/git/trees/{_rev(repo, f'{first}^{{tree}}')}",
        f"GET /repos/{REPO}/git/blobs/{config}",  # one missing blob: the blob endpoint
        f"GET /repos/{REPO}/git/trees/{_rev(repo, f'{first}:models')}?recursive=1",
        f"GET /repos/{REPO}/tarball/{first}",  # 60 missing blobs: the archive
        f"GET /{REPO}/legacy.tar.gz/{first}?token=AAAAARCHIVE",
    ]
    api, download = github.requests[-2:]
    assert str(api.url) == f"{API}/repos/{REPO}/tarball/{first}"
    assert {k: api.headers.get(k) for k in EXPECTED_HEADERS} == EXPECTED_HEADERS
    assert str(download.url) == f"https://{CODELOAD_HOST}/{REPO}/legacy.tar.gz/{first}?token=AAAAARCHIVE"
    assert "authorization" not in download.headers  # the token stays with the API's host
    assert TOKEN not in str(download.headers) and TOKEN not in str(download.url)
    assert download.headers["accept-encoding"] == "identity"
    listed = LocalGitSource(repo).list_files(first, "models", ".sql")
    assert sorted(cache.data) == sorted({f"git-blobs/{b}" for _, b in listed} | {f"git-blobs/{config}"})

    github.clear()  # the same commit again, another source over the same cache: no blob, no archive
    _same_project(load_commit(github.source(cache=cache), first), load_commit(LocalGitSource(repo), first))
    assert [line for line in github.sent() if "/git/blobs/" in line or "tarball" in line] == []


def test_a_one_change_plan_downloads_only_the_changed_blob(tmp_path: Path) -> None:
    repo, first, second = _two_commits(tmp_path)
    github = RepoGitHub(repo)
    cache = MemoryStore()
    load_commit(github.source(cache=cache), first)  # the first plan filled the cache
    github.clear()
    source = github.source(cache=cache)  # the next plan: a new source (a new activity), the same cache
    target = load_commit(source, source.resolve(second))
    base = load_commit(source, source.resolve(first))
    local = LocalGitSource(repo)
    _same_project(target, load_commit(local, second))
    _same_project(base, load_commit(local, first))
    assert github.sent() == [
        f"GET /repos/{REPO}/git/commits/{second}",
        f"GET /repos/{REPO}/git/trees/{_rev(repo, f'{second}^{{tree}}')}",
        f"GET /repos/{REPO}/git/trees/{_rev(repo, f'{second}:models')}?recursive=1",
        f"GET /repos/{REPO}/git/blobs/{_rev(repo, f'{second}:models/layer1/m007.sql')}",
        f"GET /repos/{REPO}/git/commits/{first}",
        f"GET /repos/{REPO}/git/trees/{_rev(repo, f'{first}^{{tree}}')}",
        f"GET /repos/{REPO}/git/trees/{_rev(repo, f'{first}:models')}?recursive=1",
    ]
    assert _plan_bytes(source, first, second, tmp_path) == _plan_bytes(local, first, second, tmp_path)


@pytest.mark.parametrize(("threshold", "archive"), [(None, False), (60, False), (59, True), (0, True)])
def test_the_threshold_decides_between_archive_and_blobs(tmp_path: Path, threshold: int | None, archive: bool) -> None:
    repo, first, _ = _two_commits(tmp_path)  # 60 model files
    github = RepoGitHub(repo)
    source = github.source(archive_threshold=threshold)
    files = source.list_files(first, "models", ".sql")
    github.clear()
    blobs = source.read_blobs([blob for _, blob in files])
    assert blobs == LocalGitSource(repo).read_blobs([blob for _, blob in files])
    if archive:
        assert github.sent() == [f"GET /repos/{REPO}/tarball/{first}",
                                 f"GET /{REPO}/legacy.tar.gz/{first}?token=AAAAARCHIVE"]
    else:
        assert sorted(github.sent()) == sorted(f"GET /repos/{REPO}/git/blobs/{b}" for _, b in files)


def test_blobs_listed_at_no_commit_are_read_one_by_one() -> None:
    github = ScriptedGitHub()
    ids = _blob_routes(github, CONTENTS)
    assert github.source(archive_threshold=1).read_blobs(ids) == dict(zip(ids, CONTENTS, strict=True))
    assert sorted(github.sent()) == sorted(f"GET /repos/{REPO}/git/blobs/{b}" for b in ids)


def test_two_cold_commits_take_one_archive_and_the_difference_blob_by_blob(tmp_path: Path) -> None:
    repo, first, second = _two_commits(tmp_path)
    github = RepoGitHub(repo)
    source = github.source(cache=MemoryStore())
    local = LocalGitSource(repo)
    target, base = load_commits(source, [second, first])  # as `ironlayer plan` loads them
    _same_project(target, load_commit(local, second))
    _same_project(base, load_commit(local, first))
    assert [line for line in github.sent() if "/git/blobs/" in line or "tarball" in line] == [
        f"GET /repos/{REPO}/git/blobs/{_rev(repo, f'{second}:ironlayer.toml')}",
        f"GET /repos/{REPO}/tarball/{second}",  # the commit with the most missing blobs
        f"GET /repos/{REPO}/git/blobs/{_rev(repo, f'{first}:models/layer1/m007.sql')}",  # all the other had
    ]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_golden_projects_load_the_same_through_archives(scenario: str,
                                                        make_repo: Callable[..., tuple[Path, list[str]]]) -> None:
    folder = GOLDEN / scenario
    trees = [read_tree(folder / side) for side in ("base", "target") if (folder / side).is_dir()]
    repo, shas = make_repo(trees)
    github = RepoGitHub(repo)
    source = github.source(cache=MemoryStore(), archive_threshold=0)  # every missing blob from an archive
    for sha in shas:
        _same_project(load_commit(source, sha), load_commit(LocalGitSource(repo), sha))
    assert not [line for line in github.sent() if "/git/blobs/" in line]


def test_an_eol_crlf_attribute_in_the_archive_is_undone_and_verified(tmp_path: Path) -> None:
    repo, first, _ = _two_commits(tmp_path, attributes="*.sql text eol=crlf\n")
    github = RepoGitHub(repo)
    source = github.source()
    files = source.list_files(first, "models", ".sql")
    archived = gzip.decompress(github.archive(first).read())
    assert b"SELECT 7 AS x\r\n" in archived  # git archive wrote the files with CRLF
    assert source.read_blobs([b for _, b in files]) == LocalGitSource(repo).read_blobs([b for _, b in files])
    assert not [line for line in github.sent() if "/git/blobs/" in line]


def _edit_archive(old: bytes, new: bytes) -> Callable[[bytes], bytes]:
    def edit(data: bytes) -> bytes:
        return gzip.compress(gzip.decompress(data).replace(old, new))
    return edit


def test_a_tampered_archive_file_is_refused(tmp_path: Path) -> None:
    repo, first, _ = _two_commits(tmp_path)
    github = RepoGitHub(repo, archive_edit=_edit_archive(b"SELECT 7 AS x", b"SELECT 8 AS x"))  # same size
    cache = MemoryStore()
    source = github.source(cache=cache)
    files = source.list_files(first, "models", ".sql")
    github.clear()
    with pytest.raises(SourceError) as caught:
        source.read_blobs([b for _, b in files])
    tampered = _rev(repo, f"{first}:models/layer1/m007.sql")
    assert str(caught.value) == (
        f"GitHub's archive of commit {first[:12]} of {REPO} holds models/layer1/m007.sql with content other than "
        f"its blob {tampered}; retry later (an export-subst or ident attribute in .gitattributes also changes "
        "archived files)"
    )
    assert f"git-blobs/{tampered}" not in cache.data
    assert github.sent() == [f"GET /repos/{REPO}/tarball/{first}",
                             f"GET /{REPO}/legacy.tar.gz/{first}?token=AAAAARCHIVE"]  # no fallback


@pytest.mark.parametrize("edit", [
    pytest.param(lambda data: b"<html>busy</html>", id="not-gzip"),
    pytest.param(lambda data: data[:len(data) // 2], id="cut-short"),
    pytest.param(lambda data: gzip.compress(b"\0" * 1024), id="empty-tar"),
])
def test_an_unusable_archive_leaves_the_rest_to_the_blob_endpoint(
    tmp_path: Path, edit: Callable[[bytes], bytes], caplog: pytest.LogCaptureFixture,
) -> None:
    repo, first, _ = _two_commits(tmp_path)
    github = RepoGitHub(repo, archive_edit=edit)
    cache = MemoryStore()
    source = github.source(cache=cache)
    files = source.list_files(first, "models", ".sql")
    github.clear()
    ids = [b for _, b in files]
    assert source.read_blobs(ids) == LocalGitSource(repo).read_blobs(ids)
    downloaded = {line.rsplit("/", 1)[1] for line in github.sent() if "/git/blobs/" in line}
    from_archive = {key.removeprefix("git-blobs/") for key in cache.data} - downloaded
    assert downloaded | from_archive == set(ids) and not downloaded & from_archive
    assert github.sent()[:2] == [f"GET /repos/{REPO}/tarball/{first}",
                                 f"GET /{REPO}/legacy.tar.gz/{first}?token=AAAAARCHIVE"]
    assert len(github.sent()) == 2 + len(downloaded)
    assert "reading the rest blob by blob" in caplog.text
    assert TOKEN not in caplog.text


def test_a_rate_limited_archive_request_is_an_error_not_sixty_requests(tmp_path: Path) -> None:
    repo, first, _ = _two_commits(tmp_path)
    github = RepoGitHub(repo)
    source = github.source()
    files = source.list_files(first, "models", ".sql")
    github.clear()

    def limited(request: httpx.Request) -> httpx.Response:
        if "/tarball/" in request.url.path:
            github.requests.append(request)
            return httpx.Response(403, json=error_json(403, "You have exceeded a secondary rate limit."),
                                  headers={"retry-after": "30"})
        return github.handler(request)

    source = GitHubSource(REPO, token=TOKEN, transport=httpx.MockTransport(limited))
    source.list_files(first, "models", ".sql")
    github.clear()
    with pytest.raises(SourceError) as caught:
        source.read_blobs([b for _, b in files])
    assert str(caught.value) == (f"GitHub rate-limited requests reading the archive of commit {first} of {REPO} "
                                 "(secondary limit); retry after 30 s")
    assert github.sent() == [f"GET /repos/{REPO}/tarball/{first}"]


def test_api_redirects_to_another_host_carry_no_token() -> None:
    """httpx (0.28) drops `Authorization` on a redirect to another origin; the API client relies on it."""
    github = ScriptedGitHub()
    moved = "https://api.example.net/repositories/186853002/commits/master"
    github.add(f"/repos/{REPO}/commits/master", {"message": "Moved Permanently", "url": moved}, 301,
               {"location": moved})
    github.add("/repositories/186853002/commits/master", rest_commit_json(REPO, HEAD, HEAD_TREE, HEAD_TIME))
    assert github.source().resolve("master") == HEAD
    first, second = github.requests
    assert first.headers["authorization"] == f"Bearer {TOKEN}"
    assert second.url.host == "api.example.net" and "authorization" not in second.headers


def test_the_archive_asked_for_is_of_the_full_commit_sha_not_the_branch(tmp_path: Path) -> None:
    repo, _, second = _two_commits(tmp_path)
    github = RepoGitHub(repo)
    source = github.source()
    files = source.list_files("main", "models", ".sql")  # a branch moves; its commit's archive does not
    github.clear()
    assert source.read_blobs([b for _, b in files]) == LocalGitSource(repo).read_blobs([b for _, b in files])
    assert github.sent() == [f"GET /repos/{REPO}/tarball/{second}",
                             f"GET /{REPO}/legacy.tar.gz/{second}?token=AAAAARCHIVE"]
