"""The DVC pipeline end to end on tiny params: tasks -> collect -> validate -> sft@octopus, sft@blind -> reward
-> rlef -> evaluate,
a no-op rerun, push and pull."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.mark.slow
def test_dvc_repro_collect_validate_sft_then_push_and_pull(tmp_path, suite, prefect_api):
    repo, remote = tmp_path / "repo", tmp_path / "remote"
    repo.mkdir()
    for name in ("dvc.yaml", "data.dvc"):
        shutil.copy(ROOT / name, repo / name)
    shutil.copytree(ROOT / "src", repo / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["render"]["size"] = 32
    params["collect"].update(max_tasks=3, runner={"kind": "thread", "workers": 1})  # a partial block: retries kept
    # the tiny from-scratch presets; idefics, whose DPO path TRL accepts (its DPOTrainer takes no smolvlm yet)
    params["model"].update(family="idefics", preset="tiny", image_size=32, max_length=256, vocab_size=400,
                           max_new_tokens=16)
    params["tasks"]["procedural"] = 20  # the feature, at a test's size
    params["sft"].update(rows="all", epochs=1, val_fraction=0.34, report_to="none", val_rollouts=2)
    params["policies"]["blind"]["model"]["max_length"] = 512
    params["reward"].update(max_length=256, vocab_size=400, epochs=1.0, held_out=0.34)
    params["rlef"].update(extra=["dpo"], states=8, updates=2, batch_size=4, minibatch_size=4, report_to="none")
    params["evaluate"].update(max_tasks=4, seeds=1)
    params["evaluate"]["agents"] = ["random", "oracle", "blind_sft", "octopus_sft", "octopus_sft_names",
                                    "octopus_rlef", "octopus_rlef_dpo"]
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (repo / ".gitignore").write_text("/data/*\n/reports/\n/models/\n")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    dvc = [sys.executable, "-m", "dvc"]
    _run(["git", "init", "-q"], repo, env)
    _run([*dvc, "init", "-q"], repo, env)
    _run([*dvc, "remote", "add", "-d", "local", str(remote)], repo, env)
    _run(["git", "add", "-A"], repo, env)
    _run(["git", "commit", "-qm", "init"], repo, env)

    _run([*dvc, "repro"], repo, env)
    assert (repo / "data" / "tasks" / "tasks.json").is_file() and (repo / "reports" / "tasks.json").is_file()
    collect = json.loads((repo / "reports" / "collect.json").read_text())
    validate = json.loads((repo / "reports" / "validate.json").read_text())
    assert collect["episodes"] == 3 and collect["rows"] >= 3
    assert validate["success"] is True and validate["rows"] == collect["rows"]
    assert (repo / "data" / "data-docs" / "index.html").exists()
    for policy, family in (("octopus", "idefics"), ("blind", "text")):  # sft is a foreach: one stage per policy
        sft = json.loads((repo / "reports" / "sft" / f"{policy}.json").read_text())
        assert sft["train_steps"] + sft["val_steps"] == collect["rows"] and sft["family"] == family
        assert (repo / "models" / "sft" / policy / "octopus.json").exists()
    evaluate = json.loads((repo / "reports" / "evaluate.json").read_text())
    reward = json.loads((repo / "reports" / "reward.json").read_text())
    assert reward["pairs"]["sibling"] + reward["pairs"]["rule"] == reward["train_pairs"] + reward["held_out_pairs"]
    rlef = json.loads((repo / "reports" / "rlef.json").read_text())
    assert set(rlef) == {"octopus_rlef", "octopus_rlef_dpo"} and rlef["octopus_rlef"]["updates"] == 2
    held = json.loads((repo / "reports" / "sft" / "octopus.json").read_text())["val_rollouts"]["tasks"]
    for run in rlef.values():  # rolled out on the sft stage's held-out tasks, minus its episodes, paired over them
        assert held and run["val_rollouts"]["minus_sft"]["tasks"] == held
        assert set(run["val_rollouts"]["minus_sft"]["task_completion"]) == {"mean", "lo", "hi"}
    assert (repo / "reports" / "rlef" / "octopus_curve.json").is_file()
    assert set(evaluate["agents"]) == {"random", "oracle", "blind_sft", "octopus_sft", "octopus_sft_names",
                                       "octopus_rlef", "octopus_rlef_dpo"}
    assert evaluate["agents"]["oracle"]["all"]["task_completion"] == 1.0
    assert {row: d["baseline"] for row, d in evaluate["differences"].items()} == {
        "octopus_sft_names": "octopus_sft", "octopus_rlef": "octopus_sft", "octopus_rlef_dpo": "octopus_sft"}
    assert "## Paired differences" in (repo / "reports" / "evaluate.md").read_text()
    head = _run(["git", "rev-parse", "HEAD"], repo, env).stdout.strip()
    assert evaluate["meta"]["git"]["commit"] == head  # provenance: the code revision that made the table
    manifest = (repo / "data" / "dataset" / "manifest.json").read_text()

    noop = _run([*dvc, "repro"], repo, env)  # nothing changed: every stage is skipped
    assert "Running stage" not in noop.stdout and "up to date" in noop.stdout.lower()

    _run([*dvc, "push"], repo, env)
    shutil.rmtree(repo / "data" / "dataset")
    shutil.rmtree(repo / "models" / "sft")
    shutil.rmtree(repo / "models" / "rlef")
    shutil.rmtree(repo / ".dvc" / "cache")
    _run([*dvc, "pull"], repo, env)
    assert (repo / "data" / "dataset" / "manifest.json").read_text() == manifest
    from octopus.model.policy import Policy
    assert Policy.from_pretrained(repo / "models" / "sft" / "octopus", max_new_tokens=4).pm.meta["from_scratch"]
    assert Policy.from_pretrained(repo / "models" / "sft" / "blind", max_new_tokens=4).pm.family.name == "text"
    assert Policy.from_pretrained(repo / "models" / "rlef" / "octopus", max_new_tokens=4).pm.meta["rlef"]["algorithm"] == "ppo"
    status = _run([*dvc, "status"], repo, env)
    assert "changed" not in status.stdout
