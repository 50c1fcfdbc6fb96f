"""Fixtures for the collect stage: a tiny project directory (suite snapshot + params) to run it in."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

from tests.helpers import merge

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def project(tmp_path, suite_snapshot, monkeypatch):
    """A project directory with the suite snapshot; `write(**sections)` writes its params.yaml. cwd is set to it."""
    (tmp_path / "data" / "tasks").mkdir(parents=True)
    shutil.copy(suite_snapshot, tmp_path / "data" / "tasks" / "tasks.json")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))

    def write(**sections) -> Path:
        """params.yaml: the defaults below, with `sections` merged in (nested blocks such as collect.runner too)."""
        base = {"render": {"size": 32}, "collect": {"teacher": "tests.data.teachers:plain", "max_tasks": 4,
                                                   "runner": {"kind": "thread", "workers": 1, "task_retries": 0}}}
        merge(base, sections)
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(base))
        return tmp_path / "params.yaml"

    project = type("Project", (), {"path": tmp_path, "write": staticmethod(write)})
    return project
