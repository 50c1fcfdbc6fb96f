"""The `octopus` CLI: in process for help and the params reference (fast), end to end as real processes
(the session's cached suite; marked slow) for the simulator, the stages' missing inputs and the benches."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.sim.test_episode import response

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = [[], ["tasks"], ["sim"], ["bench"], ["tasks", "list"], ["tasks", "check"], ["tasks", "export"],
            ["sim", "run"], ["sim", "step"], ["bench", "sim"], ["bench", "collect"], ["bench", "sft"],
            ["bench", "rlef"],
            ["collect"], ["validate"], ["sft"], ["reward"], ["rlef"], ["evaluate"], ["params"]]


def octopus(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "octopus.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "200"}, cwd=cwd, timeout=600)


def invoke(*args: str):
    from octopus.cli import app
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})


@pytest.fixture(scope="module")
def eval_task(suite) -> str:
    return suite.select("eval_seen")[0].id


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c) or "octopus")
def test_help_on_every_command(cmd):
    r = invoke(*cmd, "--help")
    assert r.exit_code == 0 and "Usage" in r.output, r.output


def test_the_commands_were_renamed():
    """`data bench`, `model bench` and `sim bench` became `bench collect | sft | sim`."""
    top = invoke("--help").output
    for name in ("tasks", "sim", "collect", "validate", "sft", "reward", "rlef", "evaluate", "bench", "params"):
        assert f" {name} " in top, name
    assert " data " not in top and " model " not in top
    assert invoke("sim", "bench", "--help").exit_code == 2 and invoke("data", "bench", "--help").exit_code == 2
    bench = invoke("bench", "--help").output
    assert all(f" {c} " in bench for c in ("sim", "collect", "sft"))


def test_params_prints_the_reference_that_docs_params_md_holds():
    from octopus.cli.params import reference
    r = invoke("params")
    assert r.exit_code == 0 and r.output == reference() + "\n"
    assert r.output == (ROOT / "docs" / "params.md").read_text()


def test_params_check_validates_and_resolves_the_params_file(tmp_path):
    import yaml
    good = tmp_path / "params.yaml"
    good.write_text("evaluate:\n  runner: {kind: thread}\n")
    r = invoke("params", "--check", "--params", str(good))
    assert r.exit_code == 0, r.output
    resolved = yaml.safe_load(r.stdout)
    assert resolved["evaluate"]["runner"] == {"kind": "thread", "workers": 2, "address": "", "task_retries": 1}
    assert resolved["collect"]["runner"]["task_retries"] == 2 and f"{good}: valid" in r.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("evalute:\n  seeds: 1\n")
    r = invoke("params", "--check", "--params", str(bad))
    assert r.exit_code == 2 and "evalute: unknown section (did you mean evaluate?)" in " ".join(r.stderr.split())
    assert ": valid" not in r.stderr and not r.stdout


@pytest.mark.slow
def test_tasks_list_json_and_filters(suite):
    r = octopus("tasks", "list", "--split", "eval_unseen", "--json")
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert r.returncode == 0 and len(rows) == 15 and {x["split"] for x in rows} == {"eval_unseen"}
    r = octopus("tasks", "list", "--category", "reason", "--json")
    assert {json.loads(line)["category"] for line in r.stdout.splitlines()} == {"reason"}
    bad = octopus("tasks", "list", "--split", "nope")
    assert bad.returncode == 2 and "must be one of" in bad.stderr


@pytest.mark.slow
def test_tasks_check_proves_the_suite(suite):
    r = octopus("tasks", "check", "--json")
    report = json.loads(r.stdout)
    assert r.returncode == 0 and report["checked"] == 60 and report["solvable"] == 60
    assert report["evaluation_categories"] == {"follow": 45, "reason": 15}
    assert report["max_plan_steps"] <= 10 and report["seconds"] < 60


@pytest.mark.slow
def test_sim_run_oracle_succeeds(eval_task):
    r = octopus("sim", "run", eval_task, "--agent", "oracle")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "Observed Objects:" in r.stdout and "def act(robot, env, camera):" in r.stdout and "task succeeded" in r.stdout


@pytest.mark.slow
def test_sim_run_random_runs_to_the_step_limit(eval_task):
    r = octopus("sim", "run", eval_task, "--agent", "random", "--seed", "3")
    assert r.returncode in (0, 1) and "Traceback" not in r.stderr, r.stderr[-2000:]
    if r.returncode == 0:  # a random agent may get lucky: then it says so, before the limit
        assert "task succeeded after" in r.stdout and "task failed" not in r.stdout
    else:  # otherwise it ran every one of sim.max_steps = 10 steps, and failed
        assert "step 10" in r.stdout and "step 11" not in r.stdout
        assert "task failed after 10 step(s)" in r.stdout and "task succeeded" not in r.stdout


@pytest.mark.slow
def test_sim_step_json_contract(eval_task, tmp_path, suite):
    from octopus.agents import env_for, make_agent
    from octopus.config import Params
    oracle = make_agent("oracle")
    env = env_for(oracle, Params(), suite)
    try:
        obs, info = env.reset(options={"task": eval_task})
        text = oracle.respond(obs, info)
    finally:
        env.close()
    good = tmp_path / "good.txt"
    good.write_text(text)
    r = octopus("sim", "step", eval_task, "--response-file", str(good), "--json")
    out = json.loads(r.stdout)
    assert set(out) == {"parsed", "executed", "error", "target_states_met", "task_success"}
    assert out["parsed"] and out["executed"] and out["target_states_met"] and out["error"] is None
    bad = tmp_path / "bad.txt"
    bad.write_text(response("import os"))
    out = json.loads(octopus("sim", "step", eval_task, "--response-file", str(bad), "--json").stdout)
    assert out["parsed"] and not out["executed"] and "import" in out["error"]
    missing = octopus("sim", "step", eval_task, "--response-file", str(tmp_path / "none.txt"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr


@pytest.mark.slow
def test_unknown_task_and_bad_params(tmp_path, suite):
    r = octopus("sim", "run", "no_such_task")
    assert r.returncode == 2 and "unknown task" in r.stderr
    bad = tmp_path / "params.yaml"
    bad.write_text("sim:\n  reach_m: -3\n")
    r = octopus("tasks", "list", "--params", str(bad))
    assert r.returncode == 2 and "sim.reach_m" in r.stderr


@pytest.mark.slow
def test_bench_sim_json(suite):
    r = octopus("bench", "sim", "--json", "--repeats", "1")
    assert r.returncode == 0, r.stderr[-2000:]
    report = json.loads(r.stdout)
    assert report["tasks"] == 60 and report["symbolic_steps_per_s"] > 0 and report["goal_checks_per_s"] > 0


@pytest.mark.slow
def test_sim_run_save_views(eval_task, tmp_path):
    from PIL import Image

    from octopus.sim.render import VIEWS
    small = tmp_path / "params.yaml"
    small.write_text("render:\n  size: 32\n")  # sim and tasks stay default: the session's cached suite
    out = tmp_path / "views"
    r = octopus("sim", "run", eval_task, "--agent", "oracle", "--save-views", str(out), "--params", str(small))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    steps = int(r.stdout.split("task succeeded after ")[1].split(" step")[0])
    assert str(out) in r.stdout.replace("\n", "")
    names = {f"step{n:02d}_{v}.png" for n in range(steps + 1) for v in (*VIEWS, "sheet")}
    assert {p.name for p in out.iterdir()} == names
    for n in range(steps + 1):
        for v in VIEWS:
            with Image.open(out / f"step{n:02d}_{v}.png") as im:
                assert im.format == "PNG" and im.size == (32, 32) and im.mode == "RGB"
        with Image.open(out / f"step{n:02d}_sheet.png") as im:
            assert im.format == "PNG" and im.width > 5 * 32 and im.height > 2 * 32
    first, last = (np.asarray(Image.open(out / f"step{n:02d}_BEV-II.png")) for n in (0, steps))
    assert not np.array_equal(first, last), "the views follow the world as the episode changes it"


# ---------------------------------------------------------------------- stages without their inputs
TASKS_MISSING = "data/tasks/tasks.json is missing: run `dvc repro tasks` first"
DATASET_MISSING = "data/dataset is missing: run `dvc repro collect` first"


@pytest.mark.slow
@pytest.mark.parametrize("stage, made, message", [
    ("collect", [], TASKS_MISSING),
    ("validate", [], TASKS_MISSING),
    ("validate", ["data/tasks/tasks.json"], DATASET_MISSING),  # the first missing input is named
    ("sft", [], DATASET_MISSING),
    ("reward", [], DATASET_MISSING),
    ("rlef", ["data/dataset/manifest.json"], "models/sft/octopus is missing: run `dvc repro sft@octopus` first"),
    ("rlef", ["data/dataset/manifest.json", "models/sft/octopus/octopus.json"],
     "models/reward is missing: run `dvc repro reward` first"),
    ("evaluate", [], TASKS_MISSING),
], ids=["collect", "validate", "validate-no-dataset", "sft", "reward", "rlef-no-sft", "rlef-no-reward", "evaluate"])
def test_a_stage_without_its_input_says_what_to_run_and_exits_2(tmp_path, stage, made, message):
    for rel in made:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("{}")
    r = octopus(stage, cwd=tmp_path)
    assert r.returncode == 2, r.stdout[-2000:] + r.stderr[-2000:]
    assert message in " ".join(r.stderr.split()) and "Traceback" not in r.stderr
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()) == sorted(made)
