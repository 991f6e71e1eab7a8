"""Read files of one commit out of GitHub's tarball of it, as untrusted input, each checked against its blob id.

`GET /repos/{owner}/{repo}/tarball/{sha}` answers with a redirect to a download host (`codeload.github.com`,
or a path of a GitHub Enterprise server). `download_files` follows it by hand: the token goes only to
the API's own origin (scheme, host and port), never to another host, and never over plain HTTP when the
API is HTTPS. The gzip stream is unpacked as it arrives and the tar stream parsed as it is unpacked:
nothing is written to disk and only the wanted files are kept in memory. Reading stops as soon as every
wanted file was found.

The archive is someone else's bytes, so it is read under limits (`ArchiveLimits`): compressed bytes
downloaded, bytes unpacked (a gzip bomb stops there), size of one wanted file and of one pax or GNU
long-name header. Only regular-file members count: directories, symbolic and hard links, devices and
the like are skipped, as are names that are absolute or have `.`/`..`/empty parts. A wanted file is
kept only when its bytes have the blob id the tree listing gave for its path; `git archive` writes
files as they would be checked out, so a `text eol=crlf` attribute turns LF into CRLF, and the
LF form is tried too (it is kept only if *it* has the blob id). A file whose bytes match neither is
refused with a SourceError: GitHub's archive disagrees with GitHub's tree.

A refusal of the token or a rate limit (401, 403, 429) is an error too: the blob endpoint would refuse
the same way, only hundreds of times. Anything else that stops the reading early (a limit, a broken
stream, another answer, a network error) is not an error here: the files verified so far are kept and
the caller reads the others through the blob endpoint, which is what it would have done without the
archive.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import NamedTuple

import httpx

from shared_core.adapters.github._api import blob_id, failure
from shared_core.core.errors import SourceError

logger = logging.getLogger(__name__)

MAX_REDIRECTS = 3
_BLOCK = 512
_REGULAR = (b"0", b"\0", b"7")  # regular file (and "contiguous file", which readers treat as one)
_META = (b"x", b"g", b"L", b"K")  # pax per-file and global headers, GNU long name and long link name
_MB = 2**20


@dataclass(frozen=True)
class ArchiveLimits:
    """Bounds on reading one tarball.

    Attributes:
        max_download_bytes: compressed bytes read from the network.
        max_unpacked_bytes: bytes of tar stream unpacked from them (headers, wanted and skipped contents).
        max_file_bytes: size of one wanted file; a bigger one is left to the blob endpoint.
        max_header_bytes: size of one pax or GNU long-name header.
    """

    max_download_bytes: int = 256 * _MB
    max_unpacked_bytes: int = 1024 * _MB
    max_file_bytes: int = 4 * _MB
    max_header_bytes: int = 64 * 1024


@dataclass(frozen=True)
class Extraction:
    """What reading an archive gave: verified files by blob id, and why it stopped early (None: it did not)."""

    blobs: dict[str, bytes]
    stopped: str | None = None
    skipped: int = 0  # members that were not regular files, had unsafe names, or were too big


class _Stop(Exception):
    """Reading the archive ends here, for the reason given; the files verified so far stand."""


class _Member(NamedTuple):
    name: str
    kind: bytes
    size: int


def download_files(
    client: httpx.Client,
    path: str,
    wanted: Mapping[str, str],
    *,
    repository: str,
    commit: str,
    limits: ArchiveLimits,
    keep: Callable[[str, bytes], None] | None = None,
) -> Extraction:
    """Download the tarball at `path` (under the client's base URL) and extract the `wanted` files from it.

    Args:
        client: the API client (its base URL is the API's origin, its headers may carry the token).
        path: the tarball endpoint, e.g. `/repos/o/r/tarball/<sha>`.
        wanted: repository path -> blob id of the files to keep.
        repository: `owner/name`, for messages.
        commit: the commit the archive is of, for messages.
        limits: the bounds on reading the archive.
        keep: called with (blob id, bytes) for each file as soon as it is verified.

    Returns:
        The verified files found, and why reading stopped early if it did.

    Raises:
        SourceError: a file's bytes do not match its blob id; or GitHub refused the request for rate
            limits or the token (401/403/429), which reading blob by blob would hit as well.
    """
    what = f"the archive of commit {commit}"
    try:
        response = _open(client, path)
    except _Stop as stop:
        return Extraction({}, str(stop))
    except httpx.HTTPError as exc:
        return Extraction({}, f"GitHub is unreachable ({type(exc).__name__})")
    try:
        if response.status_code != 200:
            if response.status_code in (401, 403, 429):  # token or rate limits: blob by blob would fail too
                response.read()
                raise failure(response, what, repository)
            return Extraction({}, f"GitHub answered HTTP {response.status_code}")
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):  # asked for identity; another layer would unpack without limits
            return Extraction({}, f"GitHub sent it with Content-Encoding {encoding[:20]!r}")
        label = f"commit {commit[:12]} of {repository}"
        return extract_files(_raw(response), wanted, limits=limits, label=label, keep=keep)
    finally:
        response.close()


def _raw(response: httpx.Response) -> Iterator[bytes]:
    """The body as it arrives; a broken download ends the reading like any other early stop."""
    try:
        yield from response.iter_raw()
    except httpx.HTTPError as exc:
        raise _Stop(f"the download failed ({type(exc).__name__})") from None


def _open(client: httpx.Client, path: str) -> httpx.Response:
    """Send GET `path` and follow its redirects; the token only ever goes to the API's origin."""
    api = client.base_url
    request = client.build_request("GET", path, headers={"Accept-Encoding": "identity"})
    for _ in range(MAX_REDIRECTS + 1):
        if _origin(request.url) != _origin(api):
            request.headers.pop("Authorization", None)
        response = client.send(request, stream=True, follow_redirects=False)
        location = response.headers.get("location") if response.is_redirect else None
        if location is None:
            return response
        response.close()
        url = request.url.join(location)
        if url.scheme != "https" and not (url.scheme == "http" and api.scheme == "http"):
            raise _Stop(f"GitHub redirected it to a {url.scheme or 'schemeless'} URL")
        request = client.build_request("GET", url, headers={"Accept-Encoding": "identity"})
    raise _Stop(f"GitHub redirected it more than {MAX_REDIRECTS} times")


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    default = {"https": 443, "http": 80}.get(url.scheme)
    return url.scheme, url.host, url.port or default


def extract_files(
    chunks: Iterator[bytes],
    wanted: Mapping[str, str],
    *,
    limits: ArchiveLimits,
    label: str,
    keep: Callable[[str, bytes], None] | None = None,
) -> Extraction:
    """Unpack a gzipped tar stream as GitHub's tarball endpoint sends it and keep the `wanted` files.

    Members are named `<top folder>/<repository path>` (GitHub's top folder is `owner-repo-<sha>`).

    Args:
        chunks: the compressed stream, in pieces.
        wanted: repository path -> blob id.
        limits: the bounds on reading.
        label: what the archive is ("commit abc of o/r"), for messages.
        keep: called with (blob id, bytes) for each file as soon as it is verified.

    Returns:
        The verified files found and why reading stopped early, if it did before the end of the stream
        with files still missing.

    Raises:
        SourceError: a wanted file's bytes do not have its blob id.
    """
    remaining = set(wanted.values())
    found: dict[str, bytes] = {}
    skipped = 0
    stream = _Gunzip(chunks, limits)
    tar = _Tar(stream, limits)
    if not remaining:
        return Extraction(found)
    try:
        for member in tar:
            if member.kind == b"5":  # folders
                continue
            if member.kind not in _REGULAR or not _safe(member.name):
                skipped += 1
                continue
            path = member.name.partition("/")[2]  # below GitHub's top folder
            blob = wanted.get(path)
            if blob is None or blob not in remaining:
                continue
            if member.size > limits.max_file_bytes:
                skipped += 1
                continue
            data = _verified(tar.read(member.size), blob)
            if data is None:
                raise SourceError(
                    f"GitHub's archive of {label} holds {path} with content other than its blob {blob}; retry "
                    "later (an export-subst or ident attribute in .gitattributes also changes archived files)"
                )
            found[blob] = data
            remaining.discard(blob)
            if keep is not None:
                keep(blob, data)
            if not remaining:
                break
    except _Stop as stop:
        if remaining:
            return Extraction(found, str(stop), skipped)
    logger.debug("archive of %s: %d files kept, %.1f MB downloaded, %.1f MB unpacked", label, len(found),
                 stream.downloaded / _MB, stream.unpacked / _MB)
    return Extraction(found, None, skipped)


def _safe(path: str) -> bool:
    """Whether a member's path is a plain relative path (no traversal, no absolute or empty parts)."""
    return bool(path) and "\\" not in path and "\0" not in path and all(
        part not in ("", ".", "..") for part in path.split("/")
    )


def _verified(data: bytes, blob: str) -> bytes | None:
    """`data` if it is blob `blob`; its LF form if that is (an eol=crlf checkout); else None."""
    if blob_id(data, blob) == blob:
        return data
    if b"\r\n" in data:
        unix = data.replace(b"\r\n", b"\n")
        if blob_id(unix, blob) == blob:
            return unix
    return None


class _Gunzip:
    """Unpacks a gzip stream from `chunks` on demand, counting bytes in and out against the limits."""

    def __init__(self, chunks: Iterator[bytes], limits: ArchiveLimits) -> None:
        self._chunks = chunks
        self._limits = limits
        self._inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip framing only
        self._input = b""
        self._output = bytearray()
        self.downloaded = 0
        self.unpacked = 0

    def read(self, size: int) -> bytes:
        """Exactly `size` bytes; _Stop when the stream ends first."""
        while len(self._output) < size:
            self._fill(size - len(self._output))
        data = bytes(self._output[:size])
        del self._output[:size]
        return data

    def skip(self, size: int) -> None:
        """Read and drop `size` bytes."""
        while size > 0:
            step = min(size, 64 * 1024)
            self.read(step)
            size -= step

    def _fill(self, want: int) -> None:
        """Unpack between 1 and `want` more bytes into the output."""
        while True:
            if self._inflate.eof:
                raise _Stop("the archive ends early")
            if not self._input:
                chunk = next(self._chunks, None)
                if chunk is None:
                    raise _Stop("the archive ends early")
                self.downloaded += len(chunk)
                if self.downloaded > self._limits.max_download_bytes:
                    raise _Stop(f"it is over {self._limits.max_download_bytes / _MB:g} MB")
                self._input = chunk
                continue
            try:
                out = self._inflate.decompress(self._input, want)
            except zlib.error:
                raise _Stop("it is not a valid gzip stream") from None
            self._input = self._inflate.unconsumed_tail
            if out:
                self.unpacked += len(out)
                if self.unpacked > self._limits.max_unpacked_bytes:
                    raise _Stop(f"it unpacks to over {self._limits.max_unpacked_bytes / _MB:g} MB")
                self._output += out
                return


class _Tar:
    """Iterates over the members of a tar stream (ustar, pax and GNU long names), reading it once.

    Between two steps of the iteration, `read` gives the current member's contents; whatever of them
    is not read is skipped before the next header.
    """

    def __init__(self, stream: _Gunzip, limits: ArchiveLimits) -> None:
        self._stream = stream
        self._limits = limits
        self._left = 0  # bytes of the current member (with padding) not read yet

    def __iter__(self) -> Iterator[_Member]:
        pax: dict[str, str] = {}
        long_name: str | None = None
        while True:
            header = self._stream.read(_BLOCK)
            if not any(header):
                return  # the end-of-archive marker
            _check_sum(header)
            kind = header[156:157]
            size = _number(header[124:136])
            if kind in _META:
                if size > self._limits.max_header_bytes:
                    raise _Stop(f"it has a {kind.decode()!r} header of {size} bytes")
                data = self._stream.read(_padded(size))[:size]
                if kind == b"x":
                    pax = _pax_records(data)
                elif kind == b"L":
                    long_name = data.split(b"\0", 1)[0].decode("utf-8", "replace")
                continue
            name = pax.get("path") or long_name or _header_name(header)
            if "size" in pax:
                size = _integer(pax["size"])
            pax, long_name = {}, None
            self._left = _padded(size) if kind not in (b"1", b"2", b"3", b"4", b"5", b"6") else 0
            yield _Member(name, kind, size)
            self._stream.skip(self._left)
            self._left = 0

    def read(self, size: int) -> bytes:
        """The first `size` bytes of the current member's contents."""
        data = self._stream.read(size)
        self._left -= size
        return data


def _header_name(header: bytes) -> str:
    name = header[0:100].split(b"\0", 1)[0]
    if header[257:263] == b"ustar\x00":  # POSIX ustar: a prefix holds the leading folders of long names
        prefix = header[345:500].split(b"\0", 1)[0]
        if prefix:
            name = prefix + b"/" + name
    return name.decode("utf-8", "replace")


def _check_sum(header: bytes) -> None:
    stored = _number(header[148:156])
    unsigned = sum(header[:148]) + 8 * 32 + sum(header[156:])
    signed = unsigned - 256 * sum(1 for byte in header[:148] + header[156:] if byte > 127)  # old writers
    if stored not in (unsigned, signed):
        raise _Stop("it has a tar header with a wrong checksum")


def _number(field: bytes) -> int:
    """A numeric header field: octal text, or base-256 when its first byte has the high bit set."""
    if field[:1] == b"\x80":
        return int.from_bytes(field[1:], "big")
    if field[:1] and field[0] & 0x80:
        raise _Stop("it has a tar header with a negative number")
    text = field.split(b"\0", 1)[0].strip(b" ")
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise _Stop("it has a tar header with an unreadable number") from None


def _integer(text: str) -> int:
    if not text.isdigit() or len(text) > 20:
        raise _Stop("it has a pax header with an unreadable size")
    return int(text)


def _padded(size: int) -> int:
    return size + (-size % _BLOCK)


def _pax_records(data: bytes) -> dict[str, str]:
    """The `"<length> <key>=<value>\\n"` records of a pax header."""
    records: dict[str, str] = {}
    position = 0
    while position < len(data) and data[position]:
        space = data.find(b" ", position, position + 21)
        length = _integer(data[position:space].decode("ascii", "replace")) if space > position else 0
        end = position + length
        if space < 0 or end <= space + 1 or end > len(data) or data[end - 1:end] != b"\n":
            raise _Stop("it has a malformed pax header")
        key, equals, value = data[space + 1:end - 1].partition(b"=")
        if not equals:
            raise _Stop("it has a malformed pax header")
        records[key.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
        position = end
    return records
