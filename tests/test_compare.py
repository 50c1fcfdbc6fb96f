"""`octopus compare` on a tiny DVC project whose one stage writes the pipeline's metrics files from its params
(seconds per run): two queued experiments run by `dvc queue start` are listed with their params and metrics,
missing metrics are "–", a broken metrics file is an error naming it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from octopus.experiments.ablations import exp_run_command
from octopus.experiments.compare import CompareError, collect, comparison, markdown

BIN = Path(sys.executable).parent
#: the stage: the real metrics files' shapes, numbers made from the params (completion = 2 x lr)
STAGE = '''
import json, os, yaml
p = yaml.safe_load(open("params.yaml"))["train"]
c = round(2 * p["lr"], 4)
os.makedirs("reports/sft", exist_ok=True)
split = {"task_completion": c, "code_executability": c + 0.1, "step_success": c, "plan_score": c}
json.dump({"agents": {"octopus_sft": {s: split for s in ("all", "seen", "unseen", "follow", "reason")}}},
          open("reports/evaluate.json", "w"))
json.dump({"val_loss": 1 - c, "quality": {"parse_rate": 0.9}, "wall_s": 60}, open("reports/sft/octopus.json", "w"))
json.dump({"held_out_pairwise_accuracy": 0.5 + c / 2, "trivial": {"pairwise_accuracy": 0.5}},
          open("reports/reward.json", "w"))
rlef = {"octopus_rlef": {"last": {"reward": c, "kl": 1.5}, "val_rollouts": {
    "task_completion": c, "minus_sft": {"tasks": 32, "task_completion": {"mean": -0.03, "lo": -0.09, "hi": 0.0}}}}}
json.dump(rlef if p.get("rlef") else {}, open("reports/rlef.json", "w"))
'''
DVC_YAML = {"stages": {"train": {"cmd": "python stage.py", "deps": ["stage.py"], "params": ["train"],
                                 "metrics": [{f"reports/{m}.json": {"cache": False}}
                                             for m in ("evaluate", "sft/octopus", "reward", "rlef")]}}}


def _env() -> dict:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}


def _run(cmd: list[str], cwd: Path) -> str:
    r = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, f"{' '.join(cmd)}: {r.stdout}\n{r.stderr}"
    return r.stdout


def _dvc(*args: str, cwd: Path) -> str:
    return _run([sys.executable, "-m", "dvc", *args], cwd)


def _project(root: Path, params: dict) -> Path:
    root.mkdir()
    (root / "stage.py").write_text(STAGE)
    (root / "dvc.yaml").write_text(yaml.safe_dump(DVC_YAML))
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    _run(["git", "init", "-q"], root)
    _dvc("init", "-q", cwd=root)
    _run(["git", "add", "-A"], root)
    _run(["git", "commit", "-qm", "tiny project"], root)
    return root


def test_a_running_experiment_shows_no_metrics_until_it_ends():
    """While it runs, an experiment's metrics files are the baseline's, some already rewritten: none is shown."""
    from octopus.experiments.compare import from_exp_show
    metrics = {"reports/evaluate.json": {"data": {"agents": {"octopus_sft": {"all": {"task_completion": 0.5}}}}}}
    exp = {"rev": "a" * 40, "data": {"params": {"params.yaml": {"data": {"sft": {"mode": "full"}}}},
                                     "metrics": metrics}}
    raw = [{"rev": "workspace", "data": {"metrics": metrics}, "experiments": [
        {"name": state, "executor": {"state": state}, "revs": [exp]} for state in ("running", "queued", "success")]}]
    got = {e.name: e for e in from_exp_show(raw)}
    assert got["running"].state == "running" and not got["running"].metrics and not got["queued"].metrics
    assert got["running"].params == {"sft.mode": "full"}  # what it runs with is known
    assert got["success"].metrics and got["workspace"].metrics


@pytest.mark.slow
def test_a_broken_metrics_file_is_an_error_naming_it_and_a_missing_one_is_a_dash(tmp_path):
    repo = _project(tmp_path / "p", {"train": {"lr": 0.1}})
    cmp = comparison(collect(repo))  # nothing ran: every metric is missing
    assert [e.name for e in cmp.experiments][0] == "workspace"
    assert all(agent == "–" and all(v is None for v in cols.values()) for _, agent, cols in cmp.evaluation)
    assert "| workspace | – | – |" not in markdown(cmp)  # all-empty columns are left out, the row stays
    assert "| workspace | – |" in markdown(cmp)
    (repo / "reports").mkdir()
    (repo / "reports" / "reward.json").write_text('{"held_out_pairwise_accuracy": 0.9,')
    with pytest.raises(CompareError, match=r"workspace: metrics file reports/reward.json is broken"):
        collect(repo)


@pytest.mark.slow
def test_two_queued_experiments_are_compared_with_their_params_and_metrics(tmp_path):
    params = {"train": {"lr": 0.1, "mode": "full"}}
    repo = _project(tmp_path / "p", params)
    _run(exp_run_command("exp-a", {"train.lr": 0.2}, params), repo)  # `dvc` is the venv's (PATH)
    _run(exp_run_command("exp-b", {"train.lr": 0.3, "train.mode": "connector", "train.rlef": True}, params), repo)
    _dvc("queue", "start", cwd=repo)
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:  # a finished experiment is a git ref (cheaper to poll than dvc)
        refs = _run(["git", "for-each-ref", "--format=%(refname)", "refs/exps"], repo).split()
        if sum(bool(re.fullmatch(r"refs/exps/[0-9a-f]{2}/[0-9a-f]{38}/exp-[ab]", r)) for r in refs) == 2:
            break
        time.sleep(0.5)
    while time.monotonic() < deadline:
        status = _dvc("queue", "status", cwd=repo)
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(1)
    assert status.count("Success") == 2, status

    out = tmp_path / "out"
    r = _invoke("compare", "--out", str(out), cwd=repo)  # the CLI in process
    assert r.exit_code == 0, r.output
    for name in ("workspace", "exp-a", "exp-b"):
        assert name in r.output
    md = (out / "compare.md").read_text()
    params_table = md.split("## Params that differ")[1].split("##")[0]
    assert "train.lr" in params_table and "train.mode" in params_table and "train.rlef" in params_table
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in params_table.splitlines() if line.startswith("| exp-")}
    header = [c.strip() for c in params_table.splitlines()[2].split("|")[2:-1]]
    assert dict(zip(header, rows["exp-a"]))["train.lr"] == "0.2" and dict(zip(header, rows["exp-b"]))["train.lr"] == "0.3"
    assert dict(zip(header, rows["exp-b"]))["train.mode"] == "connector"
    assert dict(zip(header, rows["exp-a"]))["train.rlef"] == "–"  # a param one experiment lacks
    # the metrics each experiment's run wrote, per split and stage
    assert "| exp-a | octopus_sft | 0.40 | 0.40 | 0.40 | 0.40 | 0.40 | 0.50 |" in md
    assert "| exp-b | octopus_sft | 0.60 | 0.60 | 0.60 | 0.60 | 0.60 | 0.70 |" in md
    assert "| exp-b | rlef:octopus_rlef |" in md and "| exp-a | rlef:" not in md
    training = md.split("## Training")[1].split("##")[0].splitlines()
    cells = dict(zip([c.strip() for c in training[2].split("|")[1:-1]],
                     [c.strip() for c in next(r for r in training if "rlef:octopus_rlef" in r).split("|")[1:-1]]))
    assert cells["Held-out completion minus SFT"] == "-0.03" and cells["Final KL"] == "1.5"
    assert "| workspace | – |" in md  # the workspace never ran: its metrics are "–"
    for png in ("completion.png", "training.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"]({png})" in md
    assert "0 active" in _dvc("queue", "status", cwd=repo)  # the queue's worker is gone


def _invoke(*args: str, cwd: Path):
    from typer.testing import CliRunner

    from octopus.cli import app
    old = Path.cwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    finally:
        os.chdir(old)


def test_ablations_dry_run_prints_one_queued_experiment_each_with_plus_for_new_params(tmp_path):
    from octopus.experiments.ablations import ABLATIONS
    root = Path(__file__).resolve().parents[1]
    shipped = yaml.safe_load((root / "params.yaml").read_text())
    shipped["rlef"]["extra"] = ["dpo"]  # a configured extra run: each ablation must evaluate its row too
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(shipped))
    r = _invoke("ablations", "--dry-run", cwd=tmp_path)
    assert r.exit_code == 0, r.output
    cmds = [line for line in r.output.splitlines() if line.startswith("dvc exp run")]
    assert len(cmds) == len(ABLATIONS) and all("--queue -n " in c for c in cmds)
    shuffle = next(c for c in cmds if "-n vision-shuffle" in c)
    has_views = "views" in yaml.safe_load((tmp_path / "params.yaml").read_text())["evaluate"]
    assert ("-S evaluate.views=shuffle" if has_views else "-S +evaluate.views=shuffle") in shuffle
    assert "-S rlef.reward=simulator" in next(c for c in cmds if "-n rlef-simulator" in c)
    # each evaluates the rows its own RLEF runs make (rlef.extra is [dpo] here), never a missing model
    assert "-S 'evaluate.agents=[octopus_sft,octopus_rlef,octopus_rlef_dpo]'" in shuffle
    rloo = next(c for c in cmds if "-n rlef-rloo" in c)
    assert "-S 'rlef.extra=[dpo,rloo]'" in rloo and "evaluate.agents=[octopus_sft,octopus_rlef,octopus_rlef_dpo," \
        "octopus_rlef_rloo]" in rloo
    bad = _invoke("ablations", "--only", "vision-blur", cwd=tmp_path)
    assert bad.exit_code == 2 and "unknown ablation 'vision-blur'" in bad.output and "vision-noise" in bad.output
    (tmp_path / "params.yaml").write_text("rlef:\n  extra: [dpo, ppg]\n")
    bad = _invoke("ablations", "--dry-run", cwd=tmp_path)
    assert bad.exit_code == 2 and "rlef.extra: unknown algorithm 'ppg'" in bad.output


def test_starting_the_queue_returns_while_its_worker_runs_and_a_refusal_keeps_dvcs_message():
    """`dvc queue start` leaves a worker behind that holds the command's stdout; `octopus ablations --start`
    returned only when the whole queue had run (it read a pipe to its end)."""
    from octopus.experiments.ablations import run_leaving_children
    worker = "import subprocess, sys; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); " \
             "print('worker started')"
    t0 = time.monotonic()
    assert run_leaving_children([sys.executable, "-c", worker]).strip() == "worker started"
    assert time.monotonic() - t0 < 30
    with pytest.raises(subprocess.CalledProcessError) as err:
        run_leaving_children([sys.executable, "-c", "import sys; print('ERROR: experiment name taken'); sys.exit(1)"])
    assert err.value.returncode == 1 and "experiment name taken" in err.value.stdout


def test_bench_collect_names_an_unknown_runner(tmp_path):
    r = _invoke("bench", "collect", "--runner", "slurm", cwd=tmp_path)
    assert r.exit_code == 2 and "--runner: must be one of process, thread, dask, ray" in r.output


def test_plots_stay_readable_as_experiments_add_up():
    """10 experiments x 8 rows made an 80-inch-wide figure (8,789 px); panels now stack instead."""
    from octopus.experiments.plots import MAX_WIDTH, layout
    assert layout(6, 8, 2) == (3, 2, (4.5 * 3, 7.2))  # a workspace and one experiment: 3 panels a row
    for panels, labels, experiments in ((6, 8, 10), (6, 40, 30), (1, 1, 1), (6, 2, 4)):
        ncols, nrows, (w, h) = layout(panels, labels, experiments)
        assert w <= MAX_WIDTH and ncols * nrows >= panels and ncols >= 1
    assert layout(6, 8, 10)[:2] == (1, 6)
