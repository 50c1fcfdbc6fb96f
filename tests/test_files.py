"""Atomic writes: the old file or the new one, never half of one, and no temporary file left behind."""

from __future__ import annotations

import json
import os
import threading

import pytest

from octopus.files import write_atomic, write_json


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
