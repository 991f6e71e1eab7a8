"""`ScanCache`: the scans of model files (header, refs, content key) by git blob id, kept on disk.

Loading a commit parses the header and template expressions of every model file; across runs most
files are unchanged, and a blob id names a file's bytes, so the scans are kept in one JSON file per
scanner version: `<dir>/scans/<fingerprint>.json`. The fingerprint covers the code that produces a
scan (the source of the scanning modules and the fields of the scanned types), so a changed scanner
never reads an old scan. The codec is derived from the dataclass fields; a field of a type it does
not know disables the cache (every file is scanned) rather than guessing.

The file is read on the first lookup (a caller that looks up its files' scans before reading the
files overlaps this with git reading them), and `save` can write it in a background thread.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator, MutableMapping
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from shared_core.core.project import headers, models, templating
from shared_core.core.project.headers import ContractColumn, Header, QualityTest
from shared_core.core.project.models import ScannedSource
from shared_core.core.sql import canonical, guard

logger = logging.getLogger(__name__)

FORMAT = "scans-1"
MAX_KEPT_FACTOR = 4  # keep at most this many times the entries a run uses (plus those it adds)

# Any: the codec turns the fields of the scanned dataclasses into JSON values and back, whatever their types;
# the fingerprint ties the file to the exact field types, so a decoded value has the type its field declares.
Codec = tuple[Callable[[Any], Any], Callable[[Any], Any]]  # (encode, decode)


def _same(value: Any) -> Any:
    return value


def _dataclass_codec(cls: type[Any]) -> Codec | None:
    """Encode a dataclass as the list of its field values (in field order), or None if unsupported."""
    codecs = []
    for field in dataclasses.fields(cls):
        codec = _codec(str(field.type))
        if codec is None:
            return None
        codecs.append(codec)
    encoders = [encode for encode, _ in codecs]
    converting = [(index, decode) for index, (_, decode) in enumerate(codecs) if decode is not _same]
    names = [field.name for field in dataclasses.fields(cls)]

    def encode(value: Any) -> list[Any]:
        return [enc(getattr(value, name)) for enc, name in zip(encoders, names, strict=True)]

    build: Callable[[list[Any]], Any] = lambda values: cls(*values)  # noqa: E731
    if _fills_dict(cls):
        new_object = object.__new__

        def build(values: list[Any]) -> Any:  # what the generated __init__ assigns, without its calls
            made = new_object(cls)
            made.__dict__.update(zip(names, values, strict=True))
            return made

    def decode(data: list[Any]) -> Any:
        if len(data) != len(names):
            raise ValueError(f"{cls.__name__}: expected {len(names)} values")
        values = list(data)
        for index, dec in converting:
            values[index] = dec(values[index])
        return build(values)

    return encode, decode


def _fills_dict(cls: type[Any]) -> bool:
    """Whether the dataclass `cls` can be built by filling its `__dict__` (checked on a sample)."""
    if hasattr(cls, "__post_init__") or "__slots__" in vars(cls):
        return False
    fields = dataclasses.fields(cls)
    if any(not field.init for field in fields):
        return False
    sample = [f"{field.name}-sample" for field in fields]  # any values: nothing is validated
    made = object.__new__(cls)
    made.__dict__.update(zip((field.name for field in fields), sample, strict=True))
    try:
        expected = cls(*sample)
    except Exception:  # a custom __init__ that checks its arguments: use it
        return False
    return vars(made) == vars(expected) and type(made) is type(expected)


_NESTED: dict[str, type[Any]] = {"Header": Header, "QualityTest": QualityTest, "ContractColumn": ContractColumn}


def _text_literal(annotation: str) -> bool:
    """Whether the annotation names a `Literal` of strings of the header module (e.g. `Kind`, `BatchUnit`)."""
    alias = getattr(headers, annotation.removesuffix(" | None"), None)
    return get_origin(alias) is Literal and all(isinstance(value, str) for value in get_args(alias))


def _codec(annotation: str) -> Codec | None:
    """The codec for a field annotation (as written, since annotations are postponed)."""
    if annotation in ("str", "int", "bool", "str | None", "int | None") or _text_literal(annotation):
        return _same, _same
    if annotation == "datetime | None":
        return (lambda v: v.isoformat() if v is not None else None,
                lambda v: datetime.fromisoformat(v) if v is not None else None)
    if annotation in ("tuple[str, ...]", "tuple[int, ...]"):
        return list, tuple
    if annotation == "tuple[tuple[str, str], ...]":
        return (lambda v: [list(pair) for pair in v], lambda v: tuple(map(tuple, v)))
    if annotation.startswith("tuple[") and annotation.endswith(", ...]"):
        inner = _NESTED.get(annotation[len("tuple["):-len(", ...]")])
        codec = _dataclass_codec(inner) if inner is not None else None
        if codec is None:
            return None
        enc, dec = codec
        return (lambda v: [enc(item) for item in v], lambda v: tuple(map(dec, v)) if v else ())
    nested = _NESTED.get(annotation)
    return _dataclass_codec(nested) if nested is not None else None


def _fingerprint() -> str | None:
    """A digest of everything a scan depends on, or None when the scanner's code cannot be read."""
    digest = hashlib.sha256(FORMAT.encode())
    digest.update(canonical.CANONICALIZER_VERSION.encode())
    for cls in (ScannedSource, Header, QualityTest, ContractColumn):
        digest.update(repr([(f.name, str(f.type)) for f in dataclasses.fields(cls)]).encode())
    for module in (headers, templating, models, canonical, guard):  # guard: reserved names in headers
        try:
            digest.update(Path(module.__file__ or "").read_bytes())
        except OSError:
            return None
    return digest.hexdigest()[:24]


class ScanCache(MutableMapping[str, ScannedSource]):
    """Scans by blob id, read from and saved to `<cache_dir>/scans/`; a plain dict without a folder."""

    def __init__(self, cache_dir: Path | None) -> None:
        self._codec = _dataclass_codec(ScannedSource)
        fingerprint = _fingerprint() if cache_dir is not None and self._codec is not None else None
        self.path = cache_dir / "scans" / f"{fingerprint}.json" if cache_dir and fingerprint else None
        self._stored: dict[str, list[Any]] = {}  # entries read from the file, still encoded
        self._scans: dict[str, ScannedSource] = {}  # entries looked up or added in this run
        self._decoded: dict[str, ScannedSource] = {}  # every readable entry of the file, decoded
        self._added: set[str] = set()
        self._loaded = False
        self._saver: threading.Thread | None = None

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        if self.path is None or self._codec is None:
            return
        try:
            with open(self.path, "rb") as handle:
                stored = json.loads(handle.read())
        except (OSError, ValueError):
            return  # absent or unreadable: scan again and rewrite
        if not isinstance(stored, dict):
            return
        self._stored = stored
        decode = self._codec[1]
        decoded: dict[str, ScannedSource] = {}
        for blob, data in stored.items():  # all at once: a run looks up nearly every entry
            try:
                scan = decode(data)
            except (ValueError, TypeError, IndexError):
                continue  # unreadable entry: that file is scanned again
            if isinstance(scan, ScannedSource):
                decoded[blob] = scan
        self._decoded = decoded

    # the hot path of loading: no KeyError round trip; Any as in `Mapping.get`'s own signature
    def get(self, blob: str, default: Any = None) -> Any:
        found = self._scans.get(blob)
        if found is not None:
            return found
        self._load()
        found = self._decoded.get(blob)
        if found is None:
            return default
        self._scans[blob] = found
        return found

    def __getitem__(self, blob: str) -> ScannedSource:
        found = self._scans.get(blob)
        if found is not None:
            return found
        self._load()
        found = self._decoded.get(blob)
        if found is None:
            raise KeyError(blob)
        self._scans[blob] = found
        return found

    def __setitem__(self, blob: str, scan: ScannedSource) -> None:
        self._scans[blob] = scan
        self._added.add(blob)

    def __delitem__(self, blob: str) -> None:
        self._load()
        if blob not in self._scans and blob not in self._stored:
            raise KeyError(blob)
        self._scans.pop(blob, None)
        self._stored.pop(blob, None)
        self._decoded.pop(blob, None)
        self._added.discard(blob)

    def __iter__(self) -> Iterator[str]:
        self._load()
        return iter(set(self._stored) | set(self._scans))

    def __len__(self) -> int:
        self._load()
        return len(set(self._stored) | set(self._scans))

    def save(self, *, background: bool = False) -> None:
        """Write the file if scans were added (atomically); in a thread when `background`."""
        if self.path is None or not self._added or self._codec is None:
            return
        self._load()
        added, scans, stored = sorted(self._added), dict(self._scans), self._stored
        self._added = set()
        if background:
            self._saver = threading.Thread(target=self._write, args=(added, scans, stored), name="ironlayer-scan-save")
            self._saver.start()
        else:
            self._write(added, scans, stored)

    def join(self) -> None:
        """Wait for a background save to finish."""
        if self._saver is not None:
            self._saver.join()
            self._saver = None

    def _write(self, added: list[str], scans: dict[str, ScannedSource], stored: dict[str, list[Any]]) -> None:
        assert self.path is not None and self._codec is not None
        encode = self._codec[0]
        entries = {blob: encode(scans[blob]) for blob in added}
        if len(stored) + len(entries) <= MAX_KEPT_FACTOR * len(scans):
            entries = {**stored, **entries}
        else:  # the file grew far past what a run needs: keep what this run used
            entries.update({blob: stored[blob] for blob in scans if blob in stored})
        tmp = f"{self.path}.{os.getpid()}.tmp"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as handle:
                handle.write(json.dumps(entries, separators=(",", ":")).encode("utf-8"))
            os.replace(tmp, self.path)
        except OSError as exc:
            logger.debug("scan cache not saved (%s); the next run scans again", exc)
