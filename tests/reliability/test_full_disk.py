"""A full disk: a small tmpfs as the project's data/ folder. The stage fails with exit 1 and an error naming
the path and "No space left"; the earlier dataset is intact and no temporary is left behind."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from octopus import paths
from tests.reliability.conftest import octopus

pytestmark = pytest.mark.slow


@pytest.fixture
def small_disk(tmp_path):
    """tmp_path/data as a 2 MiB tmpfs (skipped where mounting is not permitted)."""
    data = tmp_path / "data"
    data.mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(data)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {mounted.stderr.strip()}")
    yield data
    subprocess.run(["umount", "-l", str(data)], check=False)


def test_collect_on_a_full_disk_fails_clearly_and_keeps_the_earlier_dataset(small_disk, suite_snapshot, monkeypatch,
                                                                             prefect_api):
    from tests.reliability.conftest import TINY, make_project
    root = small_disk.parent
    monkeypatch.chdir(root)
    make_project(root, suite_snapshot, collect={"max_tasks": 2})
    first = octopus(root, "collect", "--no-progress")  # a subprocess: Prefect's log handlers outlive a CliRunner
    assert first.returncode == 0, first.stderr[-2000:]
    before = {p.name: hashlib.sha256(p.read_bytes()).digest() for p in paths.DATASET.iterdir()}
    report = paths.report("collect").read_bytes()
    free = shutil.disk_usage(small_disk).free
    (small_disk / "filler").write_bytes(b"\0" * (free - 64 * 1024))  # 64 KiB left: less than one episode's part
    (root / "params.yaml").write_text(yaml.safe_dump({**TINY, "collect": {**TINY["collect"], "max_tasks": 6}}))
    result = octopus(root, "collect", "--no-progress")
    said = " ".join(result.stderr.split())
    assert result.returncode == 1, said[-2000:]
    assert "No space left on device while writing data/collect-parts/" in said
    assert {p.name: hashlib.sha256(p.read_bytes()).digest() for p in paths.DATASET.iterdir()} == before
    assert paths.report("collect").read_bytes() == report
    assert not [p for p in Path("data").rglob(".*") if p.name.endswith(".tmp")]
