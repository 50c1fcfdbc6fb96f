"""Chaos: `octopus collect`, `evaluate`, `sft` and `rlef` SIGKILLed (the whole process group, as a job scheduler
or the OOM killer does) at 20 points, each run again afterwards.

Kill points are either moments (offsets drawn from a seeded RNG, after launch or after the first finished
episode in the run's log: start-up, mid-fan-out) or named points the code passes (`OCTOPUS_CHAOS_KILL_AT`,
`octopus.files.chaos_point`): a part or shard written to its temporary name but not renamed, an output
directory complete but not swapped in. After every kill, whatever a later stage reads is whole (the old
output or the new one); after the last rerun, collect and evaluate give exactly what an uninterrupted run
gives (0 lost, 0 duplicated episodes) and the trained checkpoints load. No temporaries are left behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from octopus import paths
from octopus.data import schema
from tests.reliability.conftest import cli_env, make_project

SEED = 18  # the kill schedule's RNG
pytestmark = pytest.mark.slow


class Chaos:
    """Runs `octopus ARGS` in `cwd` until a kill point, and counts the kills."""

    def __init__(self, cwd: Path, logs: Path, seed: int) -> None:
        self.cwd, self.logs, self.rng = cwd, logs, random.Random(seed)
        self.kills: list[str] = []

    def kill(self, args: list[str], label: str, at: str | None = None, after_log: str | None = None,
             delay: tuple[float, float] = (0.0, 0.0), timeout: float = 180) -> None:
        """One run, SIGKILLed at the named point `at`, or `delay` seconds (seeded) after launch or after
        `after_log` shows up in its log; fails if the run ends before its kill point."""
        log = self.logs / f"{len(self.kills):02d}-{args[0]}.log"
        env = cli_env(**({"OCTOPUS_CHAOS_KILL_AT": at} if at else {}))
        with open(log, "w") as err:
            proc = subprocess.Popen([sys.executable, "-m", "octopus", *args], cwd=self.cwd, env=env,
                                    stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
        try:
            if at is None:
                deadline = time.monotonic() + timeout
                while after_log and after_log not in log.read_text() and proc.poll() is None:
                    assert time.monotonic() < deadline, f"{label}: no {after_log!r} in {log}"
                    time.sleep(0.05)
                time.sleep(self.rng.uniform(*delay))
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
            rc = proc.wait(timeout)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        assert rc == -signal.SIGKILL, f"{label}: the run ended with {rc} before its kill point:\n{log.read_text()[-3000:]}"
        self.kills.append(f"{args[0]}: {label}")

    def finish(self, args: list[str]) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, "-m", "octopus", *args], cwd=self.cwd, env=cli_env(),
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc


def temporaries(root: Path) -> list[str]:
    """Hidden temporaries of atomic writes and directory swaps under root's data/, models/ and reports/."""
    return sorted(p.relative_to(root).as_posix() for d in ("data", "models", "reports") for p in (root / d).rglob(".*")
                  if p.name.endswith((".tmp", ".old")))


def digests(directory: Path) -> dict[str, str]:
    return {p.relative_to(directory).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def json_or_none(path: Path):
    return json.loads(path.read_text()) if path.exists() else None  # a half-written file fails here


def ids(dataset: Path) -> list[str]:
    return [i for f in schema.shard_files(dataset) for i in schema.read_table(f).column("id").to_pylist()]


# ---------------------------------------------------------------------- collect
@pytest.fixture(scope="module")
def collected(suite_snapshot, tmp_path_factory, prefect_api) -> Path:
    """An uninterrupted collect of the tiny project (the reference; also rlef's dataset)."""
    from octopus.data.flow import collect
    root = make_project(tmp_path_factory.mktemp("reference"), suite_snapshot)
    cwd = os.getcwd()
    os.chdir(root)
    try:
        collect("params.yaml", show_progress=False)
    finally:
        os.chdir(cwd)
    return root


def check_dataset(root: Path) -> None:
    """What the next stage reads is whole: no dataset, or one whose manifest matches every shard."""
    dataset = root / paths.DATASET
    if dataset.exists():
        manifest = json.loads((dataset / "manifest.json").read_text())
        assert sorted(s["file"] for s in manifest["shards"]) == [f.name for f in schema.shard_files(dataset)]
        for s in manifest["shards"]:
            assert hashlib.sha256((dataset / s["file"]).read_bytes()).hexdigest() == s["sha256"]
            assert schema.read_table(dataset / s["file"]).num_rows == s["rows"]
        found = ids(dataset)
        assert len(found) == len(set(found)) == manifest["rows"]
        report = json_or_none(root / paths.report("collect"))
        assert report is None or report["rows"] == manifest["rows"]
    for summary in (root / paths.COLLECT_PARTS).glob("*/*.json"):  # a finished part is whole
        assert json.loads(summary.read_text())["job"] == summary.stem
        schema.read_table(summary.with_suffix(".parquet"))


def test_collect_killed_at_ten_points_resumes_with_nothing_lost_or_duplicated(project, collected, tmp_path_factory):
    root = Path.cwd()
    chaos = Chaos(root, tmp_path_factory.mktemp("collect-logs"), SEED)
    run = ["collect", "--no-progress"]
    chaos.kill(run, "start-up (imports, params)", delay=(0.3, 1.0))
    chaos.kill(run, "start-up (Prefect flow run)", delay=(1.5, 2.5))
    chaos.kill(run, "a part's summary written, not renamed", at="write:*__e0.json:2")
    chaos.kill(run, "a part's rows written, not renamed", at="write:*__e0.parquet:2")
    chaos.kill(run, "mid-fan-out", after_log="Finished in state Completed", delay=(0.0, 0.3))
    chaos.kill(run, "mid-fan-out", after_log="Finished in state Completed", delay=(0.0, 0.3))
    for label, at in [("a dataset shard written, not renamed", "write:shard-*:2"),
                      ("the dataset complete, not swapped in", "dir:dataset:1"),
                      ("the dataset swapped in, its metrics not", "write:collect.json:1"),
                      ("a new dataset complete, the old one in place", "dir:dataset:1")]:
        chaos.kill(run, label, at=at)
        check_dataset(root)
    assert (root / paths.DATASET).exists(), "the dataset of the run killed before its metrics stays"
    chaos.finish(run)

    check_dataset(root)
    want, got = ids(collected / paths.DATASET), ids(root / paths.DATASET)
    lost, duplicated = len(set(want) - set(got)), len(got) - len(set(got))
    print(f"collect: {len(chaos.kills)} kill points, {lost} lost, {duplicated} duplicated of {len(want)} rows")
    assert (lost, duplicated) == (0, 0) and got == want
    assert digests(root / paths.DATASET) == digests(collected / paths.DATASET)  # byte for byte, manifest too
    assert json.loads((root / paths.report("collect")).read_text())["episodes"] == 6
    assert temporaries(root) == []
    assert len(chaos.kills) == 10


# ---------------------------------------------------------------------- evaluate
def episodes(root: Path) -> list[dict]:
    lines = (root / paths.EVAL_HTML / "episodes.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k != "wall_s"} for line in lines]


def check_reports(root: Path) -> None:
    """No report, or a whole one: the metrics parse and list every agent, the rollout report has its index."""
    metrics = json_or_none(root / paths.report("evaluate"))
    assert metrics is None or set(metrics["agents"]) == {"random", "oracle"}
    html = root / paths.EVAL_HTML
    assert not html.exists() or (html / "index.html").is_file()
    if (html / "episodes.jsonl").exists():
        assert len(episodes(root)) == 9


def test_evaluate_killed_at_six_points_reruns_to_the_same_episodes(project, suite_snapshot, tmp_path_factory, prefect_api):
    from octopus.config import load_params
    from octopus.evaluation.stage import run_evaluate
    from octopus.sim.tasks_stage import read_snapshot
    root = Path.cwd()
    chaos = Chaos(root, tmp_path_factory.mktemp("evaluate-logs"), SEED + 1)
    chaos.kill(["evaluate"], "start-up (imports, params)", delay=(0.3, 1.0))
    chaos.kill(["evaluate"], "mid-fan-out", after_log="Finished in state Completed", delay=(0.0, 0.2))
    chaos.kill(["evaluate"], "mid-fan-out", after_log="Finished in state Completed", delay=(0.2, 0.5))
    for label, at in [("the metrics written, not renamed", "write:evaluate.json:1"),
                      ("the rollout report complete, not swapped in", "dir:rollouts:1"),
                      ("the episode list written, not renamed", "write:episodes.jsonl:1")]:
        chaos.kill(["evaluate"], label, at=at)
        check_reports(root)
    chaos.finish(["evaluate"])
    check_reports(root)

    reference = make_project(tmp_path_factory.mktemp("evaluate-reference"), suite_snapshot)
    os.chdir(reference)
    try:
        run_evaluate(load_params("params.yaml"), read_snapshot(paths.SUITE_TASKS).evaluation()[:3])
    finally:
        os.chdir(root)
    want, got = episodes(reference), episodes(root)
    keys = [(e["agent"], e["task_id"], e["seed"]) for e in got]
    lost = len({(e["agent"], e["task_id"], e["seed"]) for e in want} - set(keys))
    print(f"evaluate: {len(chaos.kills)} kill points, {lost} lost, {len(keys) - len(set(keys))} duplicated "
          f"of {len(want)} episodes")
    assert got == want and len(keys) == len(set(keys)) == 9
    assert json.loads((root / paths.report("evaluate")).read_text())["agents"] == \
        json.loads((reference / paths.report("evaluate")).read_text())["agents"]
    assert temporaries(root) == [] and not (root / paths.EVAL_PARTS).exists()
    assert len(chaos.kills) == 6


# ---------------------------------------------------------------------- sft and rlef
def tiny_checkpoint(path: Path) -> dict[str, str]:
    """A policy checkpoint as a previous run left it; its files' digests."""
    from octopus.config import load_params
    from octopus.model.factory import build_model
    from tests.helpers import TEXTS
    build_model(load_params("params.yaml").model, TEXTS * 4, seed=0).save(path)
    return digests(path)


def whole_checkpoint(out: Path, old: dict[str, str]) -> None:
    """The old checkpoint, byte for byte, or (a kill after the swap) a new one that loads."""
    from octopus.model.policy import Policy
    if digests(out) != old:
        Policy.from_pretrained(out)


def test_sft_killed_while_training_and_while_saving_keeps_the_old_checkpoint(project, tmp_path_factory):
    from octopus.model.policy import Policy
    from tests.validation import dataset
    root = Path.cwd()
    dataset.write_dataset(root / paths.DATASET, dataset.base_shards(32))
    out = root / paths.sft_model("octopus")
    old = tiny_checkpoint(out)
    chaos = Chaos(root, tmp_path_factory.mktemp("sft-logs"), SEED + 2)
    chaos.kill(["sft"], "start-up or training", after_log="sft: ", delay=(0.0, 1.0))
    whole_checkpoint(out, old)
    before = digests(out)  # the old one, or a new one when the kill came after its swap
    chaos.kill(["sft"], "the new checkpoint complete, not swapped in", at="dir:octopus:1")
    assert digests(out) == before
    chaos.finish(["sft"])
    assert digests(out) != old and json.loads((root / paths.sft_report("octopus")).read_text())["optimizer_steps"] == 2
    assert Policy.from_pretrained(out).pm.meta["data"]  # the new one, whole
    assert temporaries(root) == []
    print(f"sft: {len(chaos.kills)} kill points, a whole checkpoint after each, clean restart")


def test_rlef_killed_while_rolling_out_and_while_saving_keeps_the_old_checkpoint(project, collected, tmp_path_factory):
    import shutil

    from octopus.model.policy import Policy
    root = Path.cwd()
    shutil.copytree(collected / paths.DATASET, root / paths.DATASET)
    tiny_checkpoint(root / paths.sft_model("octopus"))
    out = root / paths.rlef_model("octopus")
    old = tiny_checkpoint(out)
    chaos = Chaos(root, tmp_path_factory.mktemp("rlef-logs"), SEED + 3)
    chaos.kill(["rlef"], "start-up or rollouts", delay=(1.0, 4.0))
    whole_checkpoint(out, old)
    before = digests(out)  # the old one, or a new one when the kill came after its swap
    chaos.kill(["rlef"], "the new checkpoint complete, not swapped in", at="dir:octopus:1")
    assert digests(out) == before
    chaos.finish(["rlef"])
    assert digests(out) != old and Policy.from_pretrained(out).pm.meta["rlef"]["algorithm"] == "ppo"
    assert json.loads((root / paths.report("rlef")).read_text())["octopus_rlef"]["updates"] == 1
    assert temporaries(root) == []
    print(f"rlef: {len(chaos.kills)} kill points, a whole checkpoint after each, clean restart")
