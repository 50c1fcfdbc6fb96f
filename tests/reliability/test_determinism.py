"""Determinism: the same params and seed give byte-identical shards and identical metrics with 1 worker as with
2 worker processes (two runs of the same settings: tests/reliability/test_chaos.py compares an interrupted run
with an uninterrupted one, byte for byte)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from octopus import paths
from tests.reliability.conftest import make_project
from tests.reliability.test_chaos import digests, episodes

pytestmark = pytest.mark.slow
ONE = {"kind": "thread", "workers": 1}
TWO = {"kind": "process", "workers": 2}


def _in(root: Path, fn):
    cwd = os.getcwd()
    os.chdir(root)
    try:
        return fn()
    finally:
        os.chdir(cwd)


def test_collect_and_evaluate_give_the_same_bytes_and_metrics_with_one_or_two_workers(suite_snapshot, tmp_path,
                                                                                      prefect_api):
    from octopus.config import load_params
    from octopus.data.flow import collect
    from octopus.evaluation.stage import run_evaluate
    from octopus.sim.tasks_stage import read_snapshot
    out = {}
    for name, runner in (("one", ONE), ("two", TWO)):
        root = make_project(tmp_path / name, suite_snapshot, collect={"max_tasks": 4, "runner": runner},
                            evaluate={"runner": runner, "save_views": False})
        metrics = _in(root, lambda: collect("params.yaml", show_progress=False))
        assert metrics["workers"] == runner["workers"] and metrics["episodes"] == 4
        _in(root, lambda: run_evaluate(load_params("params.yaml"), read_snapshot(paths.SUITE_TASKS).evaluation()[:3]))
        out[name] = root
    one, two = out["one"], out["two"]
    assert digests(one / paths.DATASET) == digests(two / paths.DATASET)  # shards and manifest, byte for byte
    assert json.loads((one / paths.report("evaluate")).read_text())["agents"] == \
        json.loads((two / paths.report("evaluate")).read_text())["agents"]
    assert episodes(one) == episodes(two)
    shutil.rmtree(tmp_path, ignore_errors=True)
