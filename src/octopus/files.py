"""Atomic writes, directory swaps and digests: a reader, or a rerun after a crash, sees the old output or
the new one, never half of one (CONVENTIONS 9: write to a temporary name, then rename).

    write_atomic(path, "text" | b"bytes")        # parents created; temporary sibling, then one rename
    write_json(path, obj, sort_keys=False)       # indent 1, trailing newline (metrics, plots, manifests)
    write_with(path, lambda tmp: pq.write_table(table, tmp))   # any writer, through a temporary sibling
    with replace_dir(out) as tmp: ...            # build a directory beside `out`, swapped in on success
    sha256(path)                                 # hex digest of a file's bytes

Every stage writes its outputs through these.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Iterator


def _tmp_sibling(path: Path) -> Path:
    # unique per process and thread: concurrent writers of one path never share a temporary file
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")


def write_with(path: str | Path, writer: Callable[[Path], Any]) -> Path:
    """Call `writer(tmp)` to write a temporary sibling of `path`, then rename it to `path` (parents created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(path)
    try:
        writer(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_atomic(path: str | Path, data: str | bytes) -> Path:
    """Write `data` (text as UTF-8) to `path` through a hidden temporary file in the same directory."""
    if isinstance(data, bytes):
        return write_with(path, lambda tmp: tmp.write_bytes(data))
    return write_with(path, lambda tmp: tmp.write_text(data, encoding="utf-8"))


def write_json(path: str | Path, obj: Any, *, sort_keys: bool = False) -> Path:
    """`obj` as JSON (indent 1, trailing newline), written atomically."""
    return write_atomic(path, json.dumps(obj, indent=1, sort_keys=sort_keys) + "\n")


@contextlib.contextmanager
def replace_dir(out: str | Path) -> Iterator[Path]:
    """Yield an empty directory beside `out`; when the block succeeds it replaces `out` in two renames
    (the old one is put back if the second fails), and when it raises it is removed and `out` is kept."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; outputs are meant to be shared
        old = out.with_name(f".{out.name}.{os.getpid()}.old")
        shutil.rmtree(old, ignore_errors=True)
        if out.exists():
            out.rename(old)
        try:
            tmp.rename(out)
        except OSError:
            if old.exists():
                old.rename(out)  # put the previous output back rather than leave none
            raise
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
