"""Atomic file writes: a reader, or a rerun after a crash, sees the old file or the new one, never half of one.

    write_atomic(path, "text" | b"bytes")        # parents created; temporary sibling, then one rename
    write_json(path, obj, sort_keys=False)       # indent 1, trailing newline (metrics, plots, manifests)

Every stage writes its outputs through these (CONVENTIONS 9: write to a temporary name, then rename).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any


def write_atomic(path: str | Path, data: str | bytes) -> Path:
    """Write `data` (text as UTF-8) to `path` through a hidden temporary file in the same directory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # unique per process and thread: concurrent writers of one path never share a temporary file
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_json(path: str | Path, obj: Any, *, sort_keys: bool = False) -> Path:
    """`obj` as JSON (indent 1, trailing newline), written atomically."""
    return write_atomic(path, json.dumps(obj, indent=1, sort_keys=sort_keys) + "\n")
