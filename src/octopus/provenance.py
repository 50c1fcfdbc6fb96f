"""Where an output came from: the git revision of the code, and digests of the sources that made it.

    code_revision()                          # {"commit": "abc...", "dirty": False} (None, None outside git)
    files = module_closure(["octopus.data.tree"], exclude=["octopus.cli"])   # what a stage runs
    source_digest(files)                      # sha256 of those sources, 16 hex digits

Stages write these next to their outputs (where they came from), and collect keys its resumable parts by the
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


def source_digest(files: Iterable[Path]) -> str:
    """sha256 over the names (relative to the package root) and bytes of these source files (16 hex digits)."""
    h = hashlib.sha256()
    for f in sorted(files):
        h.update(Path(f).resolve().relative_to(PACKAGE_ROOT).as_posix().encode())
        h.update(Path(f).read_bytes())
    return h.hexdigest()[:16]


def module_file(name: str) -> Path | None:
    """The source file of an octopus module or package (None if there is none)."""
    p = PACKAGE_ROOT.joinpath(*name.split("."))
    return p / "__init__.py" if (p / "__init__.py").is_file() else p.with_suffix(".py") if p.with_suffix(".py").is_file() \
        else None


def _imports(name: str) -> set[str]:
    """octopus modules `name` imports anywhere in its source (module level and inside functions)."""
    import ast
    path = module_file(name)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names if module_file(f"{base}.{a.name}"))
    out = set()
    for m in (m for m in found if m == "octopus" or m.startswith("octopus.")):
        parts = m.split(".")
        out.update(".".join(parts[:i]) for i in range(1, len(parts) + 1) if module_file(".".join(parts[:i])))
    return out


def module_closure(entries: Iterable[str], exclude: Iterable[str] = ()) -> list[Path]:
    """Source files of `entries` and every octopus module they import, transitively (lazy imports included),
    leaving out the packages/modules in `exclude`: what a stage runs, for its dvc.yaml deps."""
    skip = tuple(exclude)
    seen: set[str] = set()
    todo = list(entries)
    while todo:
        m = todo.pop()
        if m in seen or module_file(m) is None or any(m == s or m.startswith(s + ".") for s in skip):
            continue
        seen.add(m)
        todo.extend(_imports(m))
    return sorted(module_file(m) for m in seen)
