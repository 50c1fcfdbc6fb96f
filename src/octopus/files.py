"""Atomic writes, directory swaps and digests: a reader, or a rerun after a crash, sees the old output or
the new one, never half of one (write to a temporary name, then rename).

    write_atomic(path, "text" | b"bytes")        # parents created; temporary sibling, then one rename
    write_json(path, obj, sort_keys=False)       # indent 1, trailing newline (metrics, plots, manifests)
    write_with(path, lambda tmp: pq.write_table(table, tmp))   # any writer, through a temporary sibling
    with replace_dir(out) as tmp: ...            # build a directory beside `out`, swapped in on success
    sha256(path)                                 # hex digest of a file's bytes

Every stage writes its outputs through these. Temporaries left by a writer that was killed (SIGKILL, power
loss) are hidden siblings named with its pid; the next write of the same output removes them once that
process is gone, so none accumulate inside DVC outputs or plots folders. `OCTOPUS_CHAOS_KILL_AT` is a test
hook (tests/reliability): `<glob>:<n>` SIGKILLs the process group the n-th time a point whose label matches
is reached (`write:<file name>` with the temporary written, `dir:<directory name>` before the swap).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fnmatch
import functools
import hashlib
import json
import os
import shutil
import signal
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Iterator


_KILL_AT = os.environ.get("OCTOPUS_CHAOS_KILL_AT")
_hits = 0


def chaos_point(label: str) -> None:
    """SIGKILL this process group at the n-th point matching OCTOPUS_CHAOS_KILL_AT="<glob>:<n>" (unset: nothing)."""
    global _hits
    if _KILL_AT is None:
        return
    pattern, _, n = _KILL_AT.rpartition(":")
    if fnmatch.fnmatchcase(label, pattern):
        _hits += 1
        if _hits == int(n):
            os.killpg(os.getpgrp(), signal.SIGKILL)


def _tmp_sibling(path: Path) -> Path:
    # unique per process and thread: concurrent writers of one path never share a temporary file
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _sweep(path: Path) -> None:
    """Remove the temporaries of `path` (`.NAME.PID.*.tmp`, `.NAME.PID.old`) whose writer process is gone."""
    if not path.parent.is_dir():
        return
    head = f".{path.name}."
    for p in path.parent.iterdir():
        pid = p.name[len(head):].split(".", 1)[0]
        if (p.name.startswith(head) and p.name.endswith((".tmp", ".old")) and pid.isdigit()
                and not _alive(int(pid))):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() and not p.is_symlink() else p.unlink(missing_ok=True)


def write_with(path: str | Path, writer: Callable[[Path], Any]) -> Path:
    """Call `writer(tmp)` to write a temporary sibling of `path`, then rename it to `path` (parents created)."""
    path = Path(path)
    _sweep(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(path)
    try:
        writer(tmp)
        chaos_point(f"write:{path.name}")
        os.replace(tmp, path)
    except OSError as err:
        _name_full_disk(err, path)
        raise
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
    """Yield an empty directory beside `out`; when the block succeeds it replaces `out` in one atomic exchange
    (Linux), else in two renames (the old one is put back if the second fails), and when it raises it is
    removed and `out` is kept."""
    out = Path(out)
    _sweep(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.{os.getpid()}.", suffix=".tmp", dir=out.parent))
    try:
        try:
            yield tmp
        except OSError as err:
            _name_full_disk(err, out)
            raise
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; outputs are meant to be shared
        chaos_point(f"dir:{out.name}")
        if out.is_dir() and _exchange(tmp, out):  # readers see the old directory or the new one, never none
            return  # `tmp` now holds the old one, removed below
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


def _name_full_disk(err: OSError, path: Path) -> None:
    """Raise a full disk as an error naming the output (libraries such as Arrow often name no file)."""
    if err.errno == errno.ENOSPC:
        raise OSError(errno.ENOSPC, f"No space left on device while writing {path}") from err


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (renameat2 RENAME_EXCHANGE); False where the system or file system cannot."""
    fn = getattr(_libc(), "renameat2", None)
    if fn is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


@functools.cache
def _libc():
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


def sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
