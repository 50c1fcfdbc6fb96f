"""Atomic writes and directory swaps: the old output or the new one, never half of one, no temporaries left
behind; file digests."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

import pytest

from octopus.files import replace_dir, sha256, write_atomic, write_json, write_with


def test_write_json_creates_parents_and_ends_with_a_newline(tmp_path):
    path = write_json(tmp_path / "a" / "b" / "m.json", {"b": 1, "a": [1, 2]}, sort_keys=True)
    assert path.read_text() == '{\n "a": [\n  1,\n  2\n ],\n "b": 1\n}\n'
    assert json.loads(path.read_text()) == {"a": [1, 2], "b": 1}
    write_atomic(tmp_path / "img.bin", b"\x00\xff")
    assert (tmp_path / "img.bin").read_bytes() == b"\x00\xff"


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    path = write_json(tmp_path / "m.json", {"old": True})
    with pytest.raises(TypeError):
        write_json(path, {"bad": object()})  # not serialisable: fails before touching the disk
    def crash(src, dst):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        write_json(path, {"new": True})
    assert json.loads(path.read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_concurrent_writers_of_one_path_never_mix(tmp_path):
    path = tmp_path / "m.json"
    payloads = [{"writer": k, "data": "x" * 100_000} for k in range(8)]
    threads = [threading.Thread(target=lambda p=p: [write_json(path, p) for _ in range(20)]) for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert json.loads(path.read_text()) in payloads
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


# ---------------------------------------------------------------------- write_with
def test_write_with_gives_the_writer_a_temporary_sibling_then_renames_it(tmp_path):
    seen = []

    def writer(tmp):
        seen.append(tmp)
        assert tmp.parent == tmp_path / "out" and tmp.name.startswith(".") and tmp != tmp_path / "out" / "t.parquet"
        assert not (tmp_path / "out" / "t.parquet").exists()  # nothing at the path until the writer is done
        tmp.write_bytes(b"PAR1")
    path = write_with(tmp_path / "out" / "t.parquet", writer)
    assert path == tmp_path / "out" / "t.parquet" and path.read_bytes() == b"PAR1"
    assert len(seen) == 1 and not seen[0].exists()
    assert [p.name for p in path.parent.iterdir()] == ["t.parquet"]


def test_a_failing_writer_keeps_the_old_file_and_removes_its_partial_output(tmp_path):
    path = write_atomic(tmp_path / "t.bin", b"old")

    def half(tmp):
        tmp.write_bytes(b"half of the ne")
        raise RuntimeError("writer died")
    with pytest.raises(RuntimeError, match="writer died"):
        write_with(path, half)
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["t.bin"]


# ---------------------------------------------------------------------- replace_dir
def _tree(root) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def test_replace_dir_builds_beside_the_output_and_swaps_it_in_whole(tmp_path):
    out = tmp_path / "reports" / "rollouts"
    out.mkdir(parents=True)
    (out / "stale.html").write_text("old")
    with replace_dir(out) as tmp:
        assert tmp.parent == out.parent and tmp != out and tmp.is_dir() and not any(tmp.iterdir())
        (tmp / "episodes").mkdir()
        (tmp / "episodes" / "e1.html").write_text("new")
        (tmp / "index.html").write_text("index")
        assert _tree(out) == {"stale.html": "old"}  # the old output stays readable while the new one is built
    assert _tree(out) == {"episodes/e1.html": "new", "index.html": "index"}  # replaced, not merged
    assert [p.name for p in out.parent.iterdir()] == ["rollouts"]  # no temporary or old directory left
    assert out.stat().st_mode & 0o777 == 0o755  # shared, not mkdtemp's private 0o700


def test_replace_dir_creates_a_new_output_and_its_parents(tmp_path):
    out = tmp_path / "a" / "b" / "docs"
    with replace_dir(out) as tmp:
        (tmp / "index.html").write_text("hi")
    assert _tree(out) == {"index.html": "hi"} and [p.name for p in out.parent.iterdir()] == ["docs"]


def test_an_error_inside_replace_dir_keeps_the_old_directory_and_leaves_no_temporary(tmp_path):
    out = tmp_path / "rollouts"
    out.mkdir()
    (out / "index.html").write_text("old index")
    (out / "episodes").mkdir()
    (out / "episodes" / "e1.html").write_text("old episode")
    before = _tree(out)
    with pytest.raises(ValueError, match="render failed"):
        with replace_dir(out) as tmp:
            (tmp / "index.html").write_text("new, half done")
            raise ValueError("render failed")
    assert _tree(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["rollouts"]
    with pytest.raises(KeyboardInterrupt):  # an interrupt too: the temporary goes, the old output stays
        with replace_dir(out) as tmp:
            (tmp / "x").write_text("x")
            raise KeyboardInterrupt
    assert _tree(out) == before and [p.name for p in tmp_path.iterdir()] == ["rollouts"]


def test_a_failed_swap_puts_the_old_directory_back(tmp_path, monkeypatch):
    from octopus import files
    monkeypatch.setattr(files, "_exchange", lambda a, b: False)  # the two-rename path (no RENAME_EXCHANGE)
    out = tmp_path / "rollouts"
    out.mkdir()
    (out / "index.html").write_text("old")
    real = Path.rename

    def rename(self, target):
        if self.name.endswith(".tmp"):  # the second rename (temporary -> output) fails
            raise OSError("cross-device link")
        return real(self, target)
    monkeypatch.setattr(Path, "rename", rename)
    with pytest.raises(OSError, match="cross-device"):
        with replace_dir(out) as tmp:
            (tmp / "index.html").write_text("new")
    assert _tree(out) == {"index.html": "old"} and [p.name for p in tmp_path.iterdir()] == ["rollouts"]


# ---------------------------------------------------------------------- sha256
def test_sha256_is_the_digest_of_the_bytes(tmp_path):
    big = os.urandom(3 * 2**20 + 7)  # larger than one read buffer
    path = write_atomic(tmp_path / "big.bin", big)
    assert sha256(path) == hashlib.sha256(big).hexdigest()
    assert sha256(str(path)) == sha256(path)
    empty = write_atomic(tmp_path / "empty", b"")
    assert sha256(empty) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    write_atomic(tmp_path / "big.bin", big[:-1] + bytes([big[-1] ^ 1]))
    assert sha256(path) != hashlib.sha256(big).hexdigest()
    with pytest.raises(FileNotFoundError):
        sha256(tmp_path / "none")
