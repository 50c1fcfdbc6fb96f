"""The evaluate stage end to end: the CLI on a few tasks, crashed episodes recorded, bad settings rejected."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
TINY_MODEL = {"image_size": 32, "max_length": 256, "vocab_size": 400, "max_new_tokens": 16}


@pytest.fixture
def project(tmp_path, suite, monkeypatch):
    from octopus.sim.tasks_stage import write_suite
    write_suite(suite, tmp_path / "data" / "tasks" / "tasks.json")
    monkeypatch.chdir(tmp_path)

    def write(**evaluate) -> Path:
        raw = {"render": {"size": 32}, "model": TINY_MODEL,
               "evaluate": {"max_tasks": 3, "seeds": 2, "workers": 1, "runner": "thread", **evaluate}}
        (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
        return tmp_path
    return write


def _save_tiny_policy(path: Path, family: str = "idefics") -> None:
    from octopus.config import ModelParams
    from octopus.model.factory import build_model
    from tests.helpers import TEXTS
    build_model(ModelParams(**TINY_MODEL, family=family), TEXTS * 4, seed=0).save(path)


def _evaluate(cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "400"}
    return subprocess.run([sys.executable, "-m", "octopus", "evaluate"], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)


@pytest.mark.slow
def test_evaluate_cli_writes_the_table_metrics_plots_and_rollouts(project, prefect_api):
    cwd = project(agents=["random", "oracle", "blind_sft", "octopus_sft"])
    _save_tiny_policy(cwd / "models" / "sft" / "octopus")
    _save_tiny_policy(cwd / "models" / "sft" / "blind", family="text")
    proc = _evaluate(cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| oracle |" in proc.stdout and "| octopus_sft |" in proc.stdout  # the table is printed
    m = json.loads((cwd / "reports" / "evaluate.json").read_text())
    assert set(m["agents"]) == {"random", "oracle", "blind_sft", "octopus_sft"}
    assert m["agents"]["oracle"]["all"]["task_completion"] == 1.0
    assert m["agents"]["random"]["all"]["episodes"] == 6 and m["agents"]["octopus_sft"]["all"]["episodes"] == 3
    assert m["agents"]["blind_sft"]["all"]["episodes"] == 3
    episodes = (cwd / "reports" / "rollouts" / "episodes.jsonl").read_text().splitlines()
    assert len(episodes) == 6 + 3 + 3 + 3
    assert "LLaMA GT (O+R)" in (cwd / "reports" / "evaluate.md").read_text()
    assert (cwd / "reports" / "rollouts" / "index.html").exists()
    assert "Octopus (SFT only)" in (cwd / "reports" / "evaluate.md").read_text()
    assert json.loads((cwd / "reports" / "evaluate_plots.json").read_text())
    assert not (cwd / "data" / "eval-views").exists()


def test_missing_checkpoint_and_unknown_agents_are_clear_errors(project):
    from octopus.config import load_params
    from octopus.evaluation.stage import EvaluateError, run_evaluate
    cwd = project(agents=["octopus_sft"])
    with pytest.raises(EvaluateError, match="needs the checkpoint models/sft/octopus.*dvc repro sft@octopus"):
        run_evaluate(load_params(cwd / "params.yaml"), [])
    p = load_params(project(agents=["gpt5"]) / "params.yaml")
    with pytest.raises(EvaluateError, match="unknown agent 'gpt5'; known: random, oracle, llm, octopus_sft, "
                                            "blind_sft"):
        run_evaluate(p, [])
    with pytest.raises(EvaluateError, match="unknown agent 'tiny_sft'.*needs NAME in `policies`"):
        run_evaluate(load_params(project(agents=["tiny_sft"]) / "params.yaml"), [])


def test_tasks_are_named_by_id_and_must_be_in_the_suite_snapshot(project, suite, prefect_api):
    """The flow's parameters are task ids (small, readable in the Prefect UI); an id the snapshot lacks is an error."""
    from octopus.config import load_params
    from octopus.evaluation.stage import EvaluateError, run_evaluate
    p = load_params(project(agents=["oracle"], save_views=False) / "params.yaml")
    stray = replace(suite.evaluation()[0], id="not_a_task_of_the_suite")
    with pytest.raises(EvaluateError, match="data/tasks/tasks.json: unknown task 'not_a_task_of_the_suite'"):
        run_evaluate(p, [stray])


def test_an_episode_that_keeps_crashing_is_recorded_as_a_failure(project, suite, monkeypatch, prefect_api):
    from octopus.config import load_params
    from octopus.evaluation import stage

    def boom(p, seed):
        raise RuntimeError("simulated worker crash")
    boom.samples = lambda p: False
    monkeypatch.setitem(stage.AGENT_ROWS, "boom", boom)
    p = load_params(project(agents=["boom", "oracle"], task_retries=0, save_views=False) / "params.yaml")
    tasks = suite.evaluation()[:2]
    out = stage.run_evaluate(replace(p, evaluate=replace(p.evaluate, agents=["boom", "oracle"])), tasks)
    crashed = out["records"]["boom"]
    assert len(crashed) == 2 and all(r.crashed and not r.success for r in crashed)
    assert "simulated worker crash" in crashed[0].error
    assert out["results"]["boom"]["all"]["crashed"] == 2 and out["results"]["oracle"]["all"]["task_completion"]["mean"] == 1.0
