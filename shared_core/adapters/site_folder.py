"""Write a generated site into a folder all at once: a complete new folder, or the old one untouched.

The files go to a temporary folder beside the destination, which then takes the destination's place by
renames; an existing destination is replaced only when it is empty or was itself written by `ironlayer
docs` (its index.html says so), so a mistyped `--out` never deletes someone's folder.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from shared_core.core.docs.pages import GENERATOR
from shared_core.core.errors import InputError

_MARK = f'<meta name="generator" content="{GENERATOR}">'.encode()


def write_site(files: Mapping[str, bytes], out: Path) -> Path:
    """Write `files` (relative, slash-separated paths to bytes) as the folder `out`, replacing an earlier site.

    Returns:
        The absolute path of `out/index.html`.

    Raises:
        InputError: `out` is a file, or a folder with other content than an earlier site; a path is unsafe.
        OSError: the folder cannot be written.
    """
    out = Path(os.path.abspath(out))
    _check_replaceable(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.new-"))
    try:
        staging.chmod(0o755)
        for relative, data in sorted(files.items()):
            target = staging / _safe(relative)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        if out.exists():
            old = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.old-"))
            os.replace(out, old / "site")
            os.replace(staging, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out / "index.html"


def _check_replaceable(out: Path) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise InputError(f"{out}: is a file; give --out a folder for the site")
    if not any(out.iterdir()):
        return
    index = out / "index.html"
    head = b""
    if index.is_file():
        with index.open("rb") as handle:
            head = handle.read(4096)
    if _MARK not in head:
        raise InputError(f"{out}: folder exists and is not a site written by ironlayer docs; choose another --out")


def _safe(relative: str) -> str:
    path = PurePosixPath(relative)
    if path.is_absolute() or not path.parts or any(part in ("", ".", "..") for part in path.parts):
        raise InputError(f"site path '{relative}' is not a plain relative path")
    return str(path)
