"""Benchmark reading a 2,000-model repository from GitHub: requests and seconds, blob by blob and by archive.

It builds the generated repository of `bench/plan_scale.py` (2,000 models by default; the second commit
changes the SQL of one model) and serves it from 127.0.0.1 with a threaded imitation of the GitHub
endpoints `GitHubSource` uses, answering each request after a fixed latency (50 ms by default):
`/commits/{ref}`, `/git/commits/{sha}`, `/git/trees/{sha}[?recursive=1]`, `/git/blobs/{sha}` (base64, as
GitHub sends blobs) and `/tarball/{sha}`, which answers 302 to a second server on another port (another
origin, like codeload.github.com) that sends `git archive` of the commit. Trees, blobs and archives come
from the real repository, so every SHA is git's own.

Each scenario reads what the `build_plan` activity reads (functions/planning.py: the target commit, then
the base commit, then the target's time) through a fresh `GitHubSource` over a local blob cache:
(a) the first plan of the first commit with nothing deployed and an empty cache; (b) the one-change plan
from the first to the second commit with the cache (a) filled; (c) the same one-change plan with an empty
cache (a new tenant whose base commit was never read). Each runs blob by blob (`archive_threshold=None`,
how `GitHubSource` read before archives) and with the default threshold. It prints, per scenario, the
REST API requests (the points GitHub's secondary rate limit of about 900 a minute counts), the archive
downloads from the other host, the megabytes sent and the seconds taken; the projects read are checked
against `LocalGitSource`, and the run fails if a token ever reached the download host.

Run it with `python bench/github_fetch.py [--models 2000] [--latency 0.05] [--workers 8]`.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from plan_scale import build_repo

from shared_core.adapters.blobs import LocalBlobStore
from shared_core.adapters.github.source import ARCHIVE_THRESHOLD, GitHubSource
from shared_core.adapters.local_git import LocalGitSource
from shared_core.core.project.loading import CommitProject, load_commit

ZERO_SHA = "0" * 40
REPOSITORY = "bench/models"
TOKEN = "ghp_BENCHTOKEN000000000000000000000000000"
SECONDARY_LIMIT = 900  # REST points a minute; a GET costs one

Answer = tuple[int, dict[str, str], bytes]


class FakeGitHub:
    """GitHub's answers for one local repository, and counts of what was asked."""

    def __init__(self, repo: Path) -> None:
        self.repo = repo
        self.codeload = ""  # the download host's root URL, once its server listens
        self.counts: Counter[str] = Counter()
        self.sent_bytes = 0
        self.tokens_at_download = 0
        self._lock = threading.Lock()
        self._blobs: dict[str, bytes] = {}
        self._archives: dict[str, bytes] = {}
        shas = self._git("rev-list", "--all").decode().split()
        local = LocalGitSource(repo)
        for sha in shas:
            listing = self._git("ls-tree", "-r", "-z", sha).decode().split("\0")
            ids = [line.split("\t")[0].split()[2] for line in listing if line]
            self._blobs.update(local.read_blobs(ids))
            top = f"{REPOSITORY.replace('/', '-')}-{sha[:7]}/"
            self._archives[sha] = self._git("archive", "--format=tar.gz", f"--prefix={top}", sha)

    def _git(self, *args: str) -> bytes:
        return subprocess.run(["git", "-C", str(self.repo), *args], capture_output=True, check=True).stdout

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()
            self.sent_bytes = 0

    def _count(self, kind: str, answer: Answer) -> Answer:
        with self._lock:
            self.counts[kind] += 1
            self.sent_bytes += len(answer[2])
        return answer

    def api(self, path: str, headers: Any) -> Answer:
        """An answer of the REST API (`path` with its query)."""
        route, _, query = path.partition("?")
        prefix = f"/repos/{REPOSITORY}"
        rest = route[len(prefix):] if route.startswith(prefix + "/") else ""
        if match := re.fullmatch(r"/commits/(.+)", rest):
            sha = subprocess.run(["git", "-C", str(self.repo), "rev-parse", "--verify", "--quiet", "--end-of-options",
                                  f"{match[1]}^{{commit}}"], capture_output=True, check=False).stdout.decode().strip()
            if not sha:
                return self._count("commits", _json(422, {"message": f"No commit found for SHA: {match[1]}"}))
            commit = self._commit(sha)
            return self._count("commits", _json(200, {"sha": sha, "commit": commit}))
        if match := re.fullmatch(r"/git/commits/([0-9a-f]{40})", rest):
            return self._count("git/commits", _json(200, {"sha": match[1], **self._commit(match[1])}))
        if match := re.fullmatch(r"/git/trees/([0-9a-f]{40})", rest):
            return self._count("git/trees", _json(200, self._tree(match[1], "recursive=1" in query)))
        if match := re.fullmatch(r"/git/blobs/([0-9a-f]{40})", rest):
            data = self._blobs[match[1]]
            encoded = base64.b64encode(data).decode()
            wrapped = "".join(encoded[i:i + 60] + "\n" for i in range(0, len(encoded), 60))
            body = {"sha": match[1], "size": len(data), "content": wrapped, "encoding": "base64"}
            return self._count("git/blobs", _json(200, body))
        if match := re.fullmatch(r"/tarball/([0-9a-f]{40})", rest):
            location = f"{self.codeload}/{REPOSITORY}/legacy.tar.gz/{match[1]}"
            return self._count("tarball", (302, {"Location": location}, b""))
        return self._count("other", _json(404, {"message": "Not Found"}))

    def download(self, path: str, headers: Any) -> Answer:
        """An answer of the download host (codeload)."""
        if headers.get("Authorization"):
            with self._lock:
                self.tokens_at_download += 1
        match = re.fullmatch(rf"/{REPOSITORY}/legacy\.tar\.gz/([0-9a-f]{{40}})", path.partition("?")[0])
        if match is None or match[1] not in self._archives:
            return self._count("download", (404, {}, b"Not Found"))
        return self._count("download", (200, {"Content-Type": "application/x-gzip"}, self._archives[match[1]]))

    def _commit(self, sha: str) -> dict[str, Any]:
        raw = self._git("cat-file", "commit", sha).decode()
        fields = dict(line.split(" ", 1) for line in raw.split("\n\n", 1)[0].splitlines() if " " in line)
        when = datetime.fromtimestamp(int(fields["committer"].rsplit(" ", 2)[1]), tz=UTC)
        person = {"name": "IronLayer Demo", "email": "demo@ironlayer.dev", "date": when.strftime("%Y-%m-%dT%H:%M:%SZ")}
        return {"tree": {"sha": fields["tree"]}, "committer": person, "author": person, "message": "bench"}

    def _tree(self, sha: str, recursive: bool) -> dict[str, Any]:
        listing = self._git("ls-tree", "-z", "-l", *(["-r", "-t"] if recursive else []), sha).decode()
        entries = []
        for line in listing.split("\0"):
            if line:
                meta, path = line.split("\t", 1)
                mode, kind, object_id, size = meta.split()
                entry: dict[str, Any] = {"path": path, "mode": mode, "type": kind, "sha": object_id}
                if size != "-":
                    entry["size"] = int(size)
                entries.append(entry)
        return {"sha": sha, "tree": entries, "truncated": False}


def _json(status: int, body: dict[str, Any]) -> Answer:
    return status, {"Content-Type": "application/json; charset=utf-8"}, json.dumps(body).encode()


@contextmanager
def serving(answer: Callable[[str, Any], Answer], latency: float) -> Iterator[str]:
    """Serve `answer` on 127.0.0.1 (a free port), each answer after `latency` seconds; yields the root URL."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as GitHub's servers allow

        def do_GET(self) -> None:  # the name http.server calls
            time.sleep(latency)
            status, headers, body = answer(self.path, self.headers)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="fake-github", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@dataclass(frozen=True)
class Figures:
    """What one scenario cost."""

    scenario: str
    mode: str
    api_requests: int
    blob_requests: int
    downloads: int
    megabytes: float
    seconds: float


def read_like_build_plan(source: GitHubSource, base: str, target: str) -> tuple[CommitProject, CommitProject]:
    """What the `build_plan` activity reads: the target commit, the base commit, the target's time."""
    target_commit = load_commit(source, source.resolve(target))
    base_commit = load_commit(source, source.resolve(base))
    source.commit_time(target_commit.sha)
    return target_commit, base_commit


def run(github: FakeGitHub, api: str, cache: Path, scenario: str, base: str, target: str,
        threshold: int | None, workers: int, expected: dict[str, CommitProject]) -> Figures:
    github.reset()
    source = GitHubSource(REPOSITORY, token=TOKEN, base_url=api, cache=LocalBlobStore(cache),
                          max_workers=workers, archive_threshold=threshold)
    started = time.perf_counter()
    with source:
        target_commit, base_commit = read_like_build_plan(source, base, target)
    seconds = time.perf_counter() - started
    for commit in (target_commit, base_commit):
        want = expected[commit.sha]
        if commit.project.models != want.project.models or commit.config != want.config:
            raise SystemExit(f"{scenario}: the project read through GitHub differs from git's at {commit.sha[:12]}")
    counts = github.counts
    api_requests = sum(n for kind, n in counts.items() if kind != "download")
    return Figures(scenario, "blob by blob" if threshold is None else f"archive (> {threshold} missing)",
                   api_requests, counts["git/blobs"], counts["download"], github.sent_bytes / 2**20, seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--models", type=int, default=2_000, help="models in the generated repository")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds before each answer (default 0.05)")
    parser.add_argument("--workers", type=int, default=8, help="blobs downloaded at once (GitHubSource default 8)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="ironlayer-github-fetch-") as work:
        folder = Path(work)
        print(f"building a repository of {args.models:,} models ...", flush=True)
        repo, first, second, project = build_repo(folder, args.models)
        github = FakeGitHub(repo)
        local = LocalGitSource(repo)
        expected = {sha: load_commit(local, sha) for sha in (first, second)} | {ZERO_SHA: load_commit(local, ZERO_SHA)}
        archive_mb = len(github._archives[first]) / 2**20
        print(f"first commit {first[:12]} ({args.models:,} models, archive {archive_mb:.2f} MB), second commit "
              f"{second[:12]} changes {project.changed_path}; {args.latency * 1000:.0f} ms per request, "
              f"{args.workers} blob downloads at once")
        rows = []
        with serving(github.api, args.latency) as api, serving(github.download, args.latency) as codeload:
            github.codeload = codeload
            for threshold in (None, ARCHIVE_THRESHOLD):
                cache = folder / f"cache-{threshold}"
                cold = folder / f"cold-{threshold}"
                rows.append(run(github, api, cache, "(a) first plan, cold cache", ZERO_SHA, first, threshold,
                                args.workers, expected))
                rows.append(run(github, api, cache, "(b) one-change plan, cache of (a)", first, second, threshold,
                                args.workers, expected))
                rows.append(run(github, api, cold, "(c) one-change plan, cold cache", first, second, threshold,
                                args.workers, expected))
        if github.tokens_at_download:
            raise SystemExit(f"the token reached the download host {github.tokens_at_download} times")

    print()
    print("| scenario                           | mode                   | API requests | of them blobs | "
          "archive downloads |    MB | seconds | minutes of the 900/min limit |")
    print("|:-----------------------------------|:-----------------------|-------------:|--------------:|"
          "------------------:|------:|--------:|-----------------------------:|")
    for row in sorted(rows, key=lambda r: (r.scenario, r.mode != "blob by blob")):
        print(f"| {row.scenario:<34} | {row.mode:<22} | {row.api_requests:>12,} | {row.blob_requests:>13,} | "
              f"{row.downloads:>17} | {row.megabytes:>5.1f} | {row.seconds:>7.2f} | "
              f"{row.api_requests / SECONDARY_LIMIT:>28.2f} |")
    print("\nno token reached the download host")
    return 0


if __name__ == "__main__":
    sys.exit(main())
