"""Reading GitHub tarballs as untrusted input: `extract_files` on crafted archives, `download_files` redirects.

Archives are written with the standard library's `tarfile` (ustar, GNU and pax formats), so every
member kind and name can be made exactly; `download_files` runs against an `httpx.MockTransport`
imitating the API's 302 to a download host, and the exact requests it sends are checked.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from shared_core.adapters.github.archive import ArchiveLimits, Extraction, download_files, extract_files
from shared_core.core.errors import SourceError

TOP = "octo-models-1a2b3c4"
SHA = "fd489864e7642b48eaad6e3f155c10e46810ec72"
TOKEN = "ghp_TESTTOKEN0123456789abcdefABCDEF012345"
A = b"-- name: s.a\n-- kind: FULL_REFRESH\nSELECT 1 AS x\n"
B = b"-- name: s.b\n-- kind: FULL_REFRESH\nSELECT 2 AS x\n"
LIMITS = ArchiveLimits()


def blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Member:
    """One member to write: a regular file by default, or another `tarfile` type (with a link target)."""

    name: str
    data: bytes = b""
    kind: bytes = tarfile.REGTYPE
    link: str = ""
    size: int | None = None  # a size header other than len(data)


def tarball(*members: Member, fmt: int = tarfile.PAX_FORMAT, level: int = 6) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=fmt) as tar:
        for member in members:
            info = tarfile.TarInfo(member.name)
            info.type = member.kind
            info.linkname = member.link
            info.size = len(member.data) if member.kind == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(member.data) if member.kind == tarfile.REGTYPE else None)
    return gzip.compress(buffer.getvalue(), compresslevel=level)


@dataclass
class Pieces:
    """The compressed stream in pieces, counting how many were taken."""

    data: bytes
    size: int = 1024
    taken: int = field(default=0)

    def __iter__(self) -> Iterator[bytes]:
        for start in range(0, len(self.data), self.size):
            self.taken += 1
            yield self.data[start:start + self.size]


def extract(data: bytes, wanted: dict[str, str], limits: ArchiveLimits = LIMITS) -> Extraction:
    return extract_files(iter(Pieces(data)), wanted, limits=limits, label=f"commit {SHA[:12]} of octo/models")


WANTED = {"models/a.sql": blob_id(A), "models/deep/b.sql": blob_id(B)}
ARCHIVE = tarball(Member(f"{TOP}/models/a.sql", A), Member(f"{TOP}/models/deep/b.sql", B))


# --- what is kept -------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_wanted_files_are_kept_by_blob_id_in_every_tar_format(fmt: int) -> None:
    long_folder = "models/" + "/".join(["nested_folder_name"] * 6)  # > 100 characters: pax, GNU or ustar prefix
    wanted = {**WANTED, f"{long_folder}/c.sql": blob_id(b"SELECT 3\n")}
    data = tarball(
        Member(f"{TOP}/", kind=tarfile.DIRTYPE),
        Member(f"{TOP}/README.md", b"# readme\n"),
        Member(f"{TOP}/models/a.sql", A),
        Member(f"{TOP}/models/deep/b.sql", B),
        Member(f"{TOP}/{long_folder}/c.sql", b"SELECT 3\n"),
        fmt=fmt,
    )
    kept: list[str] = []
    result = extract_files(iter(Pieces(data)), wanted, limits=LIMITS, label="x", keep=lambda b, _: kept.append(b))
    assert result == Extraction({blob_id(A): A, blob_id(B): B, blob_id(b"SELECT 3\n"): b"SELECT 3\n"})
    assert kept == [blob_id(A), blob_id(B), blob_id(b"SELECT 3\n")]  # handed over as soon as verified


def test_reading_stops_once_every_wanted_file_is_found() -> None:
    noise = os.urandom(2 * 2**20)  # incompressible: 2 MB to download after the wanted files
    stream = Pieces(tarball(Member(f"{TOP}/models/a.sql", A), Member(f"{TOP}/models/deep/b.sql", B),
                            Member(f"{TOP}/zz/data.bin", noise)))
    result = extract_files(iter(stream), WANTED, limits=LIMITS, label="x")
    assert result == Extraction({blob_id(A): A, blob_id(B): B})
    assert stream.taken < 5  # of about 2,000 pieces


def test_files_missing_from_the_archive_are_simply_not_found() -> None:
    result = extract(tarball(Member(f"{TOP}/models/a.sql", A)), WANTED)
    assert result == Extraction({blob_id(A): A})


def test_a_crlf_checkout_is_kept_in_its_lf_form_when_that_is_the_blob() -> None:
    unix = b"SELECT 1\nFROM t\n"
    result = extract(tarball(Member(f"{TOP}/models/a.sql", unix.replace(b"\n", b"\r\n"))),
                     {"models/a.sql": blob_id(unix)})
    assert result == Extraction({blob_id(unix): unix})
    windows = b"SELECT 1\r\nFROM t\r\n"  # a blob committed with CRLF is archived as it is
    assert extract(tarball(Member(f"{TOP}/models/a.sql", windows)),
                   {"models/a.sql": blob_id(windows)}) == Extraction({blob_id(windows): windows})


@pytest.mark.parametrize("content", [b"-- name: s.a\n-- kind: FULL_REFRESH\nSELECT 9 AS x\n",
                                     A.replace(b"\n", b"\r\n") + b"\r\n", b""])
def test_a_file_that_is_not_its_blob_is_refused(content: bytes) -> None:
    data = tarball(Member(f"{TOP}/models/deep/b.sql", B), Member(f"{TOP}/models/a.sql", content))
    kept: list[str] = []
    with pytest.raises(SourceError) as caught:
        extract_files(iter(Pieces(data)), WANTED, limits=LIMITS, label=f"commit {SHA[:12]} of octo/models",
                      keep=lambda b, _: kept.append(b))
    assert str(caught.value) == (
        f"GitHub's archive of commit {SHA[:12]} of octo/models holds models/a.sql with content other than its blob "
        f"{blob_id(A)}; retry later (an export-subst or ident attribute in .gitattributes also changes archived "
        "files)"
    )
    assert kept == [blob_id(B)]  # what was verified before stands


# --- what is ignored --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [
    "../models/a.sql",  # the top folder is '..'
    "/models/a.sql",  # absolute
    f"{TOP}/models/../models/a.sql",
    f"{TOP}/./models/a.sql",
    f"{TOP}//models/a.sql",
    f"{TOP}\\..\\models/a.sql",
])
def test_names_with_traversal_or_empty_parts_are_ignored(name: str) -> None:
    result = extract(tarball(Member(name, A), Member(f"{TOP}/models/deep/b.sql", B)), WANTED)
    assert result == Extraction({blob_id(B): B}, skipped=1)


@pytest.mark.parametrize(("kind", "link"), [
    (tarfile.SYMTYPE, "../../../etc/passwd"),
    (tarfile.SYMTYPE, "deep/b.sql"),
    (tarfile.LNKTYPE, f"{TOP}/models/deep/b.sql"),
    (tarfile.CHRTYPE, ""),
    (tarfile.FIFOTYPE, ""),
])
def test_links_and_special_files_are_ignored(kind: bytes, link: str) -> None:
    data = tarball(Member(f"{TOP}/models/deep/b.sql", B), Member(f"{TOP}/models/a.sql", kind=kind, link=link))
    assert extract(data, WANTED) == Extraction({blob_id(B): B}, skipped=1)


def test_files_over_the_size_limit_are_left_out() -> None:
    big = b"SELECT 1 AS x -- " + b"x" * 100 + b"\n"
    limits = ArchiveLimits(max_file_bytes=len(big) - 1)
    data = tarball(Member(f"{TOP}/models/a.sql", big), Member(f"{TOP}/models/deep/b.sql", B))
    assert extract(data, {**WANTED, "models/a.sql": blob_id(big)}, limits) == Extraction({blob_id(B): B}, skipped=1)


# --- where reading stops early --------------------------------------------------------------------


def test_a_gzip_bomb_stops_at_the_unpacked_limit() -> None:
    data = tarball(Member(f"{TOP}/models/a.sql", A), Member(f"{TOP}/bomb.bin", b"\0" * (32 * 2**20)),
                   Member(f"{TOP}/models/deep/b.sql", B), level=9)
    assert len(data) < 64 * 1024  # 32 MB of zeros in a few kilobytes
    result = extract(data, WANTED, ArchiveLimits(max_unpacked_bytes=2**20))
    assert result == Extraction({blob_id(A): A}, "it unpacks to over 1 MB")


def test_a_download_over_its_limit_stops() -> None:
    data = tarball(Member(f"{TOP}/models/a.sql", A), Member(f"{TOP}/noise.bin", os.urandom(2 * 2**20)),
                   Member(f"{TOP}/models/deep/b.sql", B))
    result = extract(data, WANTED, ArchiveLimits(max_download_bytes=2**20))
    assert result == Extraction({blob_id(A): A}, "it is over 1 MB")


def _tar(data: bytes) -> bytes:
    return gzip.decompress(data)


def _corrupt_header(data: bytes) -> bytes:
    tar = bytearray(_tar(data))
    tar[1] ^= 0x01  # a byte of the first header's name: its checksum no longer matches
    return gzip.compress(bytes(tar))


def _pax_record(key: str, value: bytes) -> bytes:
    """One `"<length> <key>=<value>\n"` record (the length counts its own digits)."""
    payload = b" " + key.encode() + b"=" + value + b"\n"
    length = len(payload) + 1
    while len(str(length)) + len(payload) != length:
        length = len(str(length)) + len(payload)
    return str(length).encode() + payload


def _pax_archive(*records: bytes) -> bytes:
    """models/a.sql behind a pax header holding `records`."""
    body = b"".join(records)
    header = tarfile.TarInfo("././@PaxHeader")
    header.type = tarfile.XHDTYPE
    header.size = len(body)
    member = tarfile.TarInfo(f"{TOP}/models/a.sql")
    member.size = len(A)
    raw = (header.tobuf(tarfile.USTAR_FORMAT) + body + bytes(-len(body) % 512)
           + member.tobuf(tarfile.USTAR_FORMAT) + A + bytes(-len(A) % 512) + bytes(1024))
    return gzip.compress(raw)


BIG_RECORD = _pax_record("comment", b"x" * (70 * 1024))


def test_pax_records_name_and_size_members() -> None:
    renamed = _pax_archive(_pax_record("path", f"{TOP}/models/deep/b.sql".encode()),
                           _pax_record("size", str(len(A)).encode()), _pax_record("mtime", b"1.5"))
    assert extract(renamed, {"models/deep/b.sql": blob_id(A)}) == Extraction({blob_id(A): A})
    assert extract(renamed, {"models/a.sql": blob_id(A)}) == Extraction({})  # the ustar name does not count


@pytest.mark.parametrize(("make", "reason"), [
    pytest.param(lambda: b"<html>502 Bad Gateway</html>", "it is not a valid gzip stream", id="not-gzip"),
    pytest.param(lambda: ARCHIVE[:40], "the archive ends early", id="gzip-cut-short"),
    pytest.param(lambda: gzip.compress(_tar(ARCHIVE)[:540]), "the archive ends early", id="tar-cut-short"),
    pytest.param(lambda: _corrupt_header(ARCHIVE), "it has a tar header with a wrong checksum", id="checksum"),
    pytest.param(lambda: _pax_archive(BIG_RECORD), f"it has a 'x' header of {len(BIG_RECORD)} bytes",
                 id="huge-pax-header"),
    pytest.param(lambda: _pax_archive(_pax_record("size", b"12x")), "it has a pax header with an unreadable size",
                 id="bad-pax-size"),
    pytest.param(lambda: _pax_archive(b"99 path=x\n"), "it has a malformed pax header", id="bad-pax-length"),
])
def test_broken_archives_stop_early_without_an_error(make: Callable[[], bytes], reason: str) -> None:
    assert extract(make(), WANTED) == Extraction({}, reason)


# --- download_files: redirects and where the token goes ------------------------------------------------


class FakeGitHub:
    """The tarball endpoint and a download host; records every request."""

    def __init__(self, location: str, archive: bytes | httpx.SyncByteStream, *, status: int = 200,
                 headers: dict[str, str] | None = None) -> None:
        self.location = location
        self.archive = archive
        self.status = status
        self.headers = headers or {}
        self.requests: list[httpx.Request] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path.endswith(f"/repos/octo/models/tarball/{SHA}"):
            return httpx.Response(302, headers={"location": self.location})
        body = httpx.ByteStream(self.archive) if isinstance(self.archive, bytes) else self.archive
        return httpx.Response(self.status, stream=body, headers=self.headers)

    def client(self, base_url: str = "https://api.github.com") -> httpx.Client:
        return httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {TOKEN}"},
                            transport=httpx.MockTransport(self.handler))

    def sent(self) -> list[tuple[str, str | None]]:
        return [(str(r.url), r.headers.get("authorization")) for r in self.requests]


def _download(github: FakeGitHub, base_url: str = "https://api.github.com") -> Extraction:
    with github.client(base_url) as client:
        return download_files(client, f"/repos/octo/models/tarball/{SHA}", WANTED, repository="octo/models",
                              commit=SHA, limits=LIMITS)


CODELOAD = f"https://codeload.github.com/octo/models/legacy.tar.gz/{SHA}?token=AAAASHORTLIVED"


def test_the_token_goes_to_the_api_but_not_to_the_download_host() -> None:
    github = FakeGitHub(CODELOAD, ARCHIVE)
    assert _download(github) == Extraction({blob_id(A): A, blob_id(B): B})
    assert github.sent() == [
        (f"https://api.github.com/repos/octo/models/tarball/{SHA}", f"Bearer {TOKEN}"),
        (CODELOAD, None),
    ]
    assert all(r.headers["accept-encoding"] == "identity" for r in github.requests)


@pytest.mark.parametrize("location", [f"/_codeload/octo/models/tarball/{SHA}",
                                      f"https://ghe.example.com:443/_codeload/octo/models/tarball/{SHA}"])
def test_a_redirect_within_the_api_origin_keeps_the_token(location: str) -> None:
    github = FakeGitHub(location, ARCHIVE)
    assert _download(github, "https://ghe.example.com/api/v3") == Extraction({blob_id(A): A, blob_id(B): B})
    assert github.sent() == [
        (f"https://ghe.example.com/api/v3/repos/octo/models/tarball/{SHA}", f"Bearer {TOKEN}"),
        (f"https://ghe.example.com/_codeload/octo/models/tarball/{SHA}", f"Bearer {TOKEN}"),
    ]


@pytest.mark.parametrize("location", ["https://ghe.example.com:8443/_codeload/x", "https://sub.ghe.example.com/x",
                                      "https://ghe.example.com.evil.example/x"])
def test_another_port_or_host_is_another_origin(location: str) -> None:
    github = FakeGitHub(location, ARCHIVE)
    _download(github, "https://ghe.example.com/api/v3")
    assert github.sent()[1] == (location, None)


def test_a_redirect_to_plain_http_is_not_followed() -> None:
    github = FakeGitHub(f"http://codeload.github.com/octo/models/legacy.tar.gz/{SHA}", ARCHIVE)
    assert _download(github) == Extraction({}, "GitHub redirected it to a http URL")
    assert len(github.requests) == 1


def test_redirect_loops_end() -> None:
    github = FakeGitHub(f"/repos/octo/models/tarball/{SHA}", ARCHIVE)
    assert _download(github) == Extraction({}, "GitHub redirected it more than 3 times")
    assert len(github.requests) == 4


@pytest.mark.parametrize(("status", "headers", "message"), [
    (429, {"retry-after": "30"},
     f"GitHub rate-limited requests reading the archive of commit {SHA} of octo/models (secondary limit); "
     "retry after 30 s"),
    (403, {"x-ratelimit-remaining": "0", "x-ratelimit-reset": "1700000000"},
     f"GitHub API rate limit exhausted reading the archive of commit {SHA} of octo/models; it resets at "
     "2023-11-14 22:13:20 UTC; retry then, or use a token with a higher limit"),
    (401, {}, f"GitHub rejected the token (401) reading the archive of commit {SHA} of octo/models; check that the "
              "GitHub token is set, valid and not expired"),
])
def test_token_and_rate_limit_refusals_are_errors(status: int, headers: dict[str, str], message: str) -> None:
    github = FakeGitHub(CODELOAD, b'{"message": "no"}', status=status, headers=headers)
    with pytest.raises(SourceError) as caught:
        _download(github)
    assert str(caught.value) == message
    assert TOKEN not in message


@pytest.mark.parametrize(("status", "headers", "reason"), [
    (404, {}, "GitHub answered HTTP 404"),
    (502, {}, "GitHub answered HTTP 502"),
    (200, {"content-encoding": "gzip"}, "GitHub sent it with Content-Encoding 'gzip'"),
])
def test_other_answers_leave_the_files_to_the_blob_endpoint(status: int, headers: dict[str, str],
                                                            reason: str) -> None:
    assert _download(FakeGitHub(CODELOAD, ARCHIVE, status=status, headers=headers)) == Extraction({}, reason)


def test_a_download_that_breaks_off_keeps_what_was_verified() -> None:
    archive = tarball(Member(f"{TOP}/models/a.sql", A), Member(f"{TOP}/noise.bin", os.urandom(64 * 1024)),
                      Member(f"{TOP}/models/deep/b.sql", B))

    class Breaking(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            yield archive[:4096]
            raise httpx.ReadError("connection reset")

    github = FakeGitHub(CODELOAD, Breaking())
    kept: list[str] = []
    with github.client() as client:
        result = download_files(client, f"/repos/octo/models/tarball/{SHA}", WANTED, repository="octo/models",
                                commit=SHA, limits=LIMITS, keep=lambda b, _: kept.append(b))
    assert result == Extraction({blob_id(A): A}, "the download failed (ReadError)")
    assert kept == [blob_id(A)]


def test_unreachable_github_is_an_early_stop() -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("no route", request=request)

    with httpx.Client(base_url="https://api.github.com", transport=httpx.MockTransport(fail)) as client:
        result = download_files(client, f"/repos/octo/models/tarball/{SHA}", WANTED, repository="octo/models",
                                commit=SHA, limits=LIMITS)
    assert result == Extraction({}, "GitHub is unreachable (ConnectError)")
