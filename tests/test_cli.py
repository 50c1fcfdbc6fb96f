"""The `octopus` CLI end to end (real processes, the session's cached suite)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.sim.test_episode import response


def octopus(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "octopus.cli", *args], capture_output=True, text=True,
                          env={**os.environ}, cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def eval_task(suite) -> str:
    return suite.select("eval_seen")[0].id


@pytest.mark.parametrize("cmd", [[], ["tasks"], ["sim"], ["tasks", "list"], ["tasks", "check"], ["tasks", "export"],
                                 ["sim", "run"], ["sim", "step"], ["sim", "bench"]])
def test_help_on_every_command(cmd):
    r = octopus(*cmd, "--help")
    assert r.returncode == 0 and "Usage" in r.stdout


def test_tasks_list_json_and_filters(suite):
    r = octopus("tasks", "list", "--split", "eval_unseen", "--json")
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert r.returncode == 0 and len(rows) == 15 and {x["split"] for x in rows} == {"eval_unseen"}
    r = octopus("tasks", "list", "--category", "reason", "--json")
    assert {json.loads(line)["category"] for line in r.stdout.splitlines()} == {"reason"}
    bad = octopus("tasks", "list", "--split", "nope")
    assert bad.returncode == 2 and "must be one of" in bad.stderr


def test_tasks_check_proves_the_suite(suite):
    r = octopus("tasks", "check", "--json")
    report = json.loads(r.stdout)
    assert r.returncode == 0 and report["checked"] == 60 and report["solvable"] == 60
    assert report["evaluation_categories"] == {"follow": 45, "reason": 15}
    assert report["max_plan_steps"] <= 10 and report["seconds"] < 60


def test_sim_run_oracle_succeeds(eval_task):
    r = octopus("sim", "run", eval_task, "--agent", "oracle")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "Observed Objects:" in r.stdout and "def act(robot, env, camera):" in r.stdout and "task succeeded" in r.stdout


def test_sim_run_random_runs_to_the_step_limit(eval_task):
    r = octopus("sim", "run", eval_task, "--agent", "random", "--seed", "3")
    assert r.returncode in (0, 1) and "step 10" in r.stdout or "task succeeded" in r.stdout


def test_sim_step_json_contract(eval_task, tmp_path, suite):
    from octopus.agents import make_agent
    from octopus.sim.episode import Episode
    from octopus.config import Params
    ep = Episode(suite.get(eval_task), Params().sim)
    good = tmp_path / "good.txt"
    good.write_text(make_agent("oracle").respond(ep))
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


def test_unknown_task_and_bad_params(tmp_path, suite):
    r = octopus("sim", "run", "no_such_task")
    assert r.returncode == 2 and "unknown task" in r.stderr
    bad = tmp_path / "params.yaml"
    bad.write_text("sim:\n  reach_m: -3\n")
    r = octopus("tasks", "list", "--params", str(bad))
    assert r.returncode == 2 and "sim.reach_m" in r.stderr


def test_sim_bench_json(suite):
    r = octopus("sim", "bench", "--json", "--repeats", "1")
    report = json.loads(r.stdout)
    assert report["tasks"] == 60 and report["symbolic_steps_per_s"] > 0 and report["goal_checks_per_s"] > 0


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
