"""The scripts in examples/ run end to end, as subprocesses, in a tiny project directory.

The project has what `make run` would leave, at toy scale: a suite snapshot of two kitchen tasks
(one eval_seen, one eval_unseen), a hand-built dataset (tests/validation/dataset.py) and params.yaml
with a tiny model. Example 02 trains the checkpoint the other two load.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from tests.helpers import COOK_BACON, kitchen_task
from tests.validation import dataset

ROOT = Path(__file__).resolve().parents[1]
PARAMS = {"render": {"size": 32},
          "model": {"image_size": 32, "max_length": 256, "vocab_size": 400, "max_new_tokens": 16, "batch_size": 4},
          "sft": {"rows": "all", "batch_size": 4, "eval_every": 2, "log_every": 1, "val_fraction": 0.34}}
TASKS = (("cook_bacon_kitchen", "eval_seen", COOK_BACON, "cook the bacon"),
         ("apple_basket_kitchen", "eval_unseen", [["inside", "apple.n.01_1", "wicker_basket.n.01_1"]],
          "put an apple in the basket"))


def run(example: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "OCTOPUS_CACHE": str(cwd / ".cache")}
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / example), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{example} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """(project directory, example 02's run): the checkpoint is at models/sft/octopus, the pipeline's default."""
    from octopus.sim.tasks import Suite
    from octopus.sim.tasks_stage import write_suite
    root = tmp_path_factory.mktemp("examples")
    write_suite(Suite([replace(kitchen_task(goal, i, text), split=split) for i, split, goal, text in TASKS]),
                root / "data" / "tasks" / "tasks.json")
    dataset.write_dataset(root / "data" / "dataset", dataset.base_shards(dataset.SIZE))
    (root / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    proc = run("02_finetune_on_your_data.py", "--max-steps", "4", "--out", "models/sft/octopus", cwd=root)
    return root, proc


@pytest.mark.slow
def test_02_finetunes_on_a_dataset_and_answers_a_held_out_step(project):
    root, proc = project
    assert "trained 4 steps" in proc.stdout and "val loss" in proc.stdout
    # the 3 tasks' steps, one task (5 steps) held out; its first step is answered
    assert "on 10 steps of 2 tasks" in proc.stdout and "held-out step" in proc.stdout
    assert "(validation task" in proc.stdout and "--- teacher's response ---" in proc.stdout
    meta = json.loads((root / "models" / "sft" / "octopus" / "octopus.json").read_text())
    assert meta["family"] == "idefics" and meta["params"]["sft"]["max_steps"] == 4
    assert meta["params"]["sft"]["report_to"] == "none"  # the example's default: no tracking


@pytest.mark.slow
def test_01_acts_in_the_env_with_the_policy_and_prints_the_feedback(project):
    root, _ = project
    proc = run("01_act_in_env.py", "--max-steps", "2", "--views", "views.png", cwd=root)
    out = proc.stdout
    assert out.startswith("task cook_bacon_kitchen (eval_seen, follow): cook the bacon")  # the first eval_seen task
    steps = [line for line in out.splitlines() if line.startswith("step ")]
    assert [s.split(":")[0] for s in steps] == ["step 1", "step 2"], out
    assert all("parsed=" in s and "executed=" in s and "target_states_met=" in s and "error=" in s for s in steps)
    assert "outcome: task" in out and "after 2 steps" in out
    from PIL import Image
    assert Image.open(root / "views.png").width > 5 * 32  # the 5 x 2 contact sheet of the 32 px views


@pytest.mark.slow
def test_03_evaluates_the_policy_and_the_oracle_and_writes_the_report(project):
    root, _ = project
    proc = run("03_evaluate_a_policy.py", "--max-steps", "2", "--out", "eval", cwd=root)
    report = root / "eval" / "rollouts" / "index.html"
    assert f"report: {report.resolve()}" in proc.stdout
    assert "| oracle |" in proc.stdout and "| octopus_policy |" in proc.stdout
    html = report.read_text()
    assert all(task_id in html for task_id, *_ in TASKS) and "octopus_policy" in html
    m = json.loads((root / "eval" / "evaluate.json").read_text())["agents"]
    assert m["oracle"]["all"]["task_completion"] == 1.0 and m["oracle"]["all"]["episodes"] == 2
    assert m["octopus_policy"]["all"]["episodes"] == 2
    pages = sorted(p.name for p in (root / "eval" / "rollouts" / "episodes").iterdir())
    assert len(pages) == 4 and any((root / "eval" / "rollouts" / "views").rglob("step01.png"))
