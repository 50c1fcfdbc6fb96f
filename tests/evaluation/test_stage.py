"""The evaluate stage: the CLI end to end on a few tasks, crashed episodes recorded, bad settings rejected, and
the rows registry (fixed rows, one row per policy and checkpoint stage)."""

from __future__ import annotations

import json
import os
import random
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

    def write(runner: dict | None = None, **evaluate) -> Path:
        raw = {"render": {"size": 32}, "model": TINY_MODEL,
               "evaluate": {"max_tasks": 3, "seeds": 2, "runner": {"kind": "thread", "workers": 1, **(runner or {})},
                            **evaluate}}
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
    assert not (cwd / "data" / "eval-parts").exists()  # finished episodes are kept only until the report is written


def test_missing_checkpoint_and_unknown_agents_are_clear_errors(project):
    from octopus.config import load_params
    from octopus.evaluation.stage import EvaluateError, run_evaluate
    cwd = project(agents=["octopus_sft"])
    with pytest.raises(EvaluateError, match="needs the checkpoint models/sft/octopus.*dvc repro sft@octopus"):
        run_evaluate(load_params(cwd / "params.yaml"), [])
    p = load_params(project(agents=["gpt5"]) / "params.yaml")
    with pytest.raises(EvaluateError, match="unknown agent 'gpt5'; known: random, oracle, llm, octopus_sft, "
                                            "octopus_sft_names, blind_sft, blind_sft_names, octopus_rlef, "
                                            "octopus_rlef_dpo"):
        run_evaluate(p, [])
    with pytest.raises(EvaluateError, match="unknown agent 'tiny_sft'.*needs NAME in `policies`"):
        run_evaluate(load_params(project(agents=["tiny_sft"]) / "params.yaml"), [])


@pytest.mark.slow
def test_tasks_are_named_by_id_and_must_be_in_the_suite_snapshot(project, suite, prefect_api):
    """The flow's parameters are task ids (small, readable in the Prefect UI); an id the snapshot lacks is an error."""
    from octopus.config import load_params
    from octopus.evaluation.stage import EvaluateError, run_evaluate
    p = load_params(project(agents=["oracle"], save_views=False) / "params.yaml")
    stray = replace(suite.evaluation()[0], id="not_a_task_of_the_suite")
    with pytest.raises(EvaluateError, match="data/tasks/tasks.json: unknown task 'not_a_task_of_the_suite'"):
        run_evaluate(p, [stray])


@pytest.mark.slow
def test_an_episode_that_keeps_crashing_is_recorded_as_a_failure(project, suite, monkeypatch, prefect_api):
    from octopus.config import load_params
    from octopus.evaluation import rows, stage

    def boom(p, seed):
        raise RuntimeError("simulated worker crash")
    monkeypatch.setitem(rows._FIXED, "boom", rows.Row("boom", boom, lambda p: False, "always crashes"))
    p = load_params(project(agents=["boom", "oracle"], runner={"task_retries": 0}, save_views=False) / "params.yaml")
    assert p.evaluate.runner.task_retries == 0 and p.evaluate.runner.kind == "thread"
    tasks = suite.evaluation()[:2]
    out = stage.run_evaluate(p, tasks)
    crashed = out["records"]["boom"]
    assert len(crashed) == 2 and all(r.crashed and not r.success for r in crashed)
    assert {r.task_id for r in crashed} == {t.id for t in tasks} and "simulated worker crash" in crashed[0].error
    assert out["results"]["boom"]["all"]["crashed"] == 2
    assert out["results"]["oracle"]["all"]["task_completion"]["mean"] == 1.0
    assert "always crashes" in Path("reports/evaluate.md").read_text()  # the row's note under the table


@pytest.mark.slow
def test_a_policy_row_runs_in_batches_with_the_same_episodes_and_a_crashed_batch_fails_each_task(
        project, suite, monkeypatch, prefect_api):
    from octopus.config import load_params
    from octopus.evaluation import stage
    tasks = suite.evaluation()[:3]
    runs = {}
    for batch in (1, 2):
        cwd = project(agents=["octopus_sft"], save_views=False, batch=batch)
        _save_tiny_policy(cwd / "models" / "sft" / "octopus")
        stage._policies.clear()
        runs[batch] = stage.evaluate(load_params(cwd / "params.yaml"), [t.id for t in tasks])["octopus_sft"]
    one, two = ([[s.response for s in r.steps] for r in runs[b]] for b in (1, 2))
    assert len(one) == 3 and one == two and all(one)  # tasks 1-2 in one lockstep batch, task 3 alone

    def boom(*args, **kwargs):
        raise RuntimeError("simulated batch crash")
    monkeypatch.setattr(stage, "rollout_batch", boom)
    cwd = project(agents=["octopus_sft"], save_views=False, batch=2, runner={"task_retries": 0})
    stage._policies.clear()
    recs = stage.evaluate(load_params(cwd / "params.yaml"), [t.id for t in tasks])["octopus_sft"]
    crashed = {r.task_id: r.crashed for r in recs}
    assert crashed == {tasks[0].id: True, tasks[1].id: True, tasks[2].id: False}  # the batch of 2 fails, task 3 runs
    assert all("simulated batch crash" in r.error for r in recs if r.crashed)


@pytest.mark.slow
def test_a_rerun_after_a_kill_runs_only_the_episodes_without_a_part(project, suite, monkeypatch, prefect_api):
    from octopus import paths
    from octopus.config import load_params
    from octopus.evaluation import stage
    p = load_params(project(agents=["random", "oracle"], seeds=1, save_views=False) / "params.yaml")
    tasks = suite.evaluation()[:3]
    parts = paths.EVAL_PARTS / stage.fingerprint(p, tasks, paths.SUITE_TASKS)
    first = stage.evaluate(p, [t.id for t in tasks], parts_dir=str(parts))
    assert len(list(parts.glob("*.json"))) == 6  # one part per finished task run
    (parts / f"oracle-{tasks[1].id}-s0.json").unlink()  # killed before this one finished
    (parts / f"random-{tasks[2].id}-s0.json").write_text('[{"agent": "random"')  # ... or while writing it
    ran = []
    real = stage.rollout
    monkeypatch.setattr(stage, "rollout", lambda agent, task, *a, **k: ran.append(task.id) or real(agent, task, *a, **k))
    again = stage.evaluate(p, [t.id for t in tasks], parts_dir=str(parts))
    assert sorted(ran) == sorted([tasks[1].id, tasks[2].id])  # the 4 kept episodes are not run again
    strip = lambda recs: [{**r.to_dict(), "wall_s": 0} for r in recs]  # noqa: E731
    assert {k: strip(v) for k, v in again.items()} == {k: strip(v) for k, v in first.items()}
    other = stage.fingerprint(replace(p, sim=replace(p.sim, max_steps=p.sim.max_steps + 1)), tasks, paths.SUITE_TASKS)
    assert other != parts.name  # other settings never reuse these parts


# ---------------------------------------------------------------------- the rows registry
def test_the_table_has_the_fixed_rows_and_one_row_per_policy_and_checkpoint_stage():
    from octopus.config import Params
    from octopus.evaluation.rows import PAPER, table_rows
    p = Params()
    rows = table_rows(p)
    assert list(rows) == ["random", "oracle", "llm", "octopus_sft", "octopus_sft_names", "blind_sft", "blind_sft_names",
                          "octopus_rlef", "octopus_rlef_dpo"]  # rlef.algorithm, then rlef.extra
    assert rows["octopus_rlef"].checkpoint == Path("models/rlef/octopus") and rows["octopus_rlef"].stage == "rlef"
    assert rows["octopus_rlef_dpo"].checkpoint == Path("models/rlef/octopus_dpo")
    assert "paper: Octopus (SFT + RLEF)" in rows["octopus_rlef"].note and "DPO" in rows["octopus_rlef_dpo"].note
    assert rows["octopus_sft_names"].checkpoint == rows["octopus_sft"].checkpoint  # the same model, constrained
    # what each row is compared with, paired over tasks: rlef runs against the SFT policy they start from
    assert {n: r.baseline for n, r in rows.items() if r.baseline} == {
        "octopus_sft_names": "octopus_sft", "blind_sft_names": "blind_sft", "octopus_rlef": "octopus_sft",
        "octopus_rlef_dpo": "octopus_sft"}
    assert all(name == r.name for name, r in rows.items())
    assert rows["octopus_sft"].checkpoint == Path("models/sft/octopus") and rows["octopus_sft"].stage == "sft@octopus"
    assert rows["blind_sft"].checkpoint == Path("models/sft/blind") and "LLaMA GT (O+R)" in rows["blind_sft"].note
    assert all(rows[n].checkpoint is None and rows[n].stage is None for n in ("random", "oracle", "llm"))
    # several seeds only for agents that sample
    assert rows["random"].samples(p) and not rows["oracle"].samples(p) and not rows["octopus_sft"].samples(p)
    assert rows["llm"].samples(p) == (p.collect.llm.temperature > 0)
    hot = replace(p, policies={**p.policies, "octopus": {"model": {"temperature": 0.8}}})
    assert table_rows(hot)["octopus_sft"].samples(hot) and not table_rows(hot)["blind_sft"].samples(hot)
    assert set(table_rows(replace(p, policies={"tiny": {}}))) == {"random", "oracle", "llm", "tiny_sft", "tiny_sft_names"}
    assert PAPER["Octopus (SFT only)"]["Total"] == 0.15 and PAPER["GPT-4"]["Seen Env"] == 0.42


def test_a_new_checkpoint_stage_adds_a_row_per_policy(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no checkpoints here
    from octopus.config import Params
    from octopus.evaluation import rows
    from octopus.evaluation.stage import EvaluateError, check_agents
    monkeypatch.setattr(rows, "_STAGES", dict(rows._STAGES))  # registered for this test only
    rows.register_checkpoint_stage("distill", lambda name: Path("models") / "distill" / name, {"octopus": "distilled from SFT"})
    p = Params()
    table = rows.table_rows(p)
    assert {"octopus_distill", "blind_distill"} <= set(table)
    assert table["octopus_distill"].checkpoint == Path("models/distill/octopus") and table["octopus_distill"].note == "distilled from SFT"
    assert table["blind_distill"].note == "policies.blind trained by distill@blind"
    with pytest.raises(EvaluateError, match=r"octopus_distill needs the checkpoint models/distill/octopus "
                                            r"\(run `dvc repro distill@octopus`\)"):
        check_agents(replace(p, evaluate=replace(p.evaluate, agents=["oracle", "octopus_distill"])))
    with pytest.raises(EvaluateError, match=r"octopus_rlef_dpo needs the checkpoint models/rlef/octopus_dpo "
                                            r"\(run `dvc repro rlef`\)"):  # an rlef run's row names its stage
        check_agents(replace(p, evaluate=replace(p.evaluate, agents=["octopus_rlef_dpo"])))


def test_register_row_adds_a_fixed_row_that_builds_its_agent(monkeypatch):
    from octopus.config import Params
    from octopus.evaluation import rows
    from octopus.evaluation.stage import check_agents
    monkeypatch.setattr(rows, "_FIXED", dict(rows._FIXED))
    row = rows.register_row(rows.Row("planner", lambda p, seed: ("agent", seed), lambda p: False, "a planner"))
    p = Params()
    assert rows.table_rows(p)["planner"] is row and row.make(p, 4) == ("agent", 4)
    check_agents(replace(p, evaluate=replace(p.evaluate, agents=["planner", "oracle"])))  # known now: no error
    oracle = rows.table_rows(p)["oracle"].make(p, 0)
    assert type(oracle).__name__ == "OracleAgent" and oracle.reads == {"state"}
    assert rows.table_rows(p)["random"].make(p, 7).rng.random() == random.Random(7).random()


def test_a_policy_row_is_loaded_once_per_worker_and_reseeded(monkeypatch, tmp_path):
    from types import SimpleNamespace

    from octopus.config import Params
    from octopus.evaluation import rows, stage
    made = []

    def make(p, seed):
        made.append(seed)
        return SimpleNamespace(policy=SimpleNamespace(generator_seed=seed))
    monkeypatch.setattr(stage, "_policies", {})
    monkeypatch.setitem(rows._FIXED, "ckpt", rows.Row("ckpt", make, lambda p: True, checkpoint=tmp_path))
    monkeypatch.setitem(rows._FIXED, "cheap", rows.Row("cheap", make, lambda p: True))
    p = Params()
    first = stage._agent("ckpt", 0, p)
    again = stage._agent("ckpt", 3, p)
    assert again is first and made == [0] and again.policy.generator_seed == 3
    assert stage._agent("cheap", 1, p) is not stage._agent("cheap", 1, p) and made == [0, 1, 1]
