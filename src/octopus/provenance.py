"""Where an output came from: the git revision of the code, and digests of the sources that made it.

    code_revision()                          # {"commit": "abc...", "dirty": False} (None, None outside git)
    source_digest(["octopus/sim", "octopus/data/tree.py"])   # sha256 of those sources, 16 hex digits

Stages write these next to their outputs (CONVENTIONS 8), and collect keys its resumable parts by the
digest of exactly the modules that make the data.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from typing import Iterable

PACKAGE_ROOT = Path(__file__).resolve().parent.parent  # the directory holding the `octopus` package


def code_revision() -> dict:
    """The git commit of the working tree (and whether it had uncommitted changes), if in a repo."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    if commit.returncode != 0:
        return {"commit": None, "dirty": None}
    return {"commit": commit.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


def source_files(sources: Iterable[str], exclude: Iterable[str] = ()) -> list[Path]:
    """The .py files of `sources` (package directories or modules, relative to the package root)."""
    skip = {PACKAGE_ROOT / e for e in exclude}
    files: set[Path] = set()
    for src in sources:
        path = PACKAGE_ROOT / src
        found = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        if not found or not all(f.is_file() for f in found):
            raise FileNotFoundError(f"source {src!r} is not a module or package under {PACKAGE_ROOT}")
        files.update(f for f in found if f not in skip)
    return sorted(files)


def source_digest(sources: Iterable[str], exclude: Iterable[str] = ()) -> str:
    """sha256 over the names and bytes of those source files (16 hex digits)."""
    h = hashlib.sha256()
    for f in source_files(sources, exclude):
        h.update(f.relative_to(PACKAGE_ROOT).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]
