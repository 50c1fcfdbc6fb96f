"""A tiny project for the reliability tests: the session's suite snapshot, tiny params, and the real CLI."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import merge

ROOT = Path(__file__).resolve().parents[2]

#: every stage on a few episodes and a 32 px, 1.8M-parameter-class model: seconds per run
TINY = {
    "render": {"size": 32},
    "model": {"image_size": 32, "max_length": 256, "vocab_size": 400, "max_new_tokens": 8, "batch_size": 4},
    "collect": {"teacher": "oracle", "max_tasks": 6, "episodes_per_task": 1, "shard_rows": 16,
                "runner": {"kind": "thread", "workers": 2, "task_retries": 0}},
    "sft": {"rows": "all", "epochs": 1, "max_steps": 2, "max_samples": 8, "batch_size": 4, "val_fraction": 0.0,
            "report_to": "none", "val_rollouts": 0},
    "rlef": {"algorithm": "ppo", "reward": "simulator", "extra": [], "updates": 1, "batch_size": 2, "minibatch_size": 2,
             "max_new_tokens": 4, "states": 4, "report_to": "none"},
    "evaluate": {"agents": ["random", "oracle"], "max_tasks": 3, "seeds": 2, "save_views": True, "n_boot": 50,
                 "runner": {"kind": "thread", "workers": 2, "task_retries": 0}},
}


def make_project(root: Path, suite_snapshot: Path, **changes) -> Path:
    """root/ with data/tasks/tasks.json and params.yaml (TINY with `changes` merged in)."""
    (root / "data" / "tasks").mkdir(parents=True, exist_ok=True)
    (root / "data" / "tasks" / "tasks.json").write_bytes(suite_snapshot.read_bytes())
    (root / "params.yaml").write_text(yaml.safe_dump(merge(copy.deepcopy(TINY), changes)))
    return root


@pytest.fixture
def project(tmp_path, suite_snapshot, monkeypatch):
    """A tiny project in tmp_path (the working directory); `project(**changes)` rewrites its params.yaml."""
    monkeypatch.chdir(tmp_path)
    make_project(tmp_path, suite_snapshot)
    return lambda **changes: make_project(tmp_path, suite_snapshot, **changes)


def cli_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1", "COLUMNS": "300", **extra}
    env.pop("OCTOPUS_CHAOS_KILL_AT", None)
    env.update(extra)
    return env


def octopus(cwd: Path, *args: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    """`octopus ARGS` in `cwd` as a subprocess."""
    return subprocess.run([sys.executable, "-m", "octopus", *args], cwd=cwd, env=cli_env(**env), capture_output=True,
                          text=True, timeout=timeout)
