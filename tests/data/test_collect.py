"""The collect stage end to end: fan-out through Prefect, shards + manifest, resuming, failures.

Every test that starts a Prefect server, a worker pool or an `octopus collect` subprocess is marked slow
(`pytest -m "not slow"` runs the quick checks of the runner factory only)."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from octopus import paths
from octopus.config import load_params
from octopus.data import schema
from octopus.data.collect import CollectError, fingerprint, plan_jobs, read_suite
from tests.helpers import artifacts


def _collect(params_path: Path) -> dict:
    from octopus.data.flow import collect
    return collect(str(params_path), show_progress=False)


def _ids(directory: Path) -> list[str]:
    return [i for f in schema.shard_files(directory) for i in schema.read_table(f).column("id").to_pylist()]


@pytest.mark.slow
def test_collect_writes_shards_manifest_and_metrics(project, prefect_api):
    params_path = project.write(collect={"shard_rows": 5})
    metrics = _collect(params_path)
    progress = artifacts(key="octopus-collect-progress")[0]  # on the collect flow run's page in the UI
    assert progress.type == "progress" and progress.data == 100.0 and progress.flow_run_id is not None
    manifest = json.loads((paths.DATASET / "manifest.json").read_text())
    jobs = plan_jobs(read_suite(paths.SUITE_TASKS), load_params(params_path))
    assert metrics["episodes"] == manifest["episodes"] == len(jobs) == 4 and metrics["failed_episodes"] == 0
    assert metrics["rows"] == manifest["rows"] == sum(s["rows"] for s in manifest["shards"]) >= 4
    assert len(manifest["shards"]) == -(-manifest["rows"] // 5)
    for shard in manifest["shards"]:
        data = (paths.DATASET / shard["file"]).read_bytes()
        import hashlib
        assert hashlib.sha256(data).hexdigest() == shard["sha256"]
    ids = _ids(paths.DATASET)
    assert len(ids) == len(set(ids)) == manifest["rows"]
    assert [i.split("/")[0] for i in ids] == sorted(i.split("/")[0] for i in ids)  # job order: by task id
    assert manifest["params"]["render"]["size"] == 32 and manifest["code_revision"].keys() == {"commit", "dirty"}
    assert manifest["positive"] + manifest["negative"] == manifest["rows"]
    ds = schema.load(paths.DATASET)
    assert ds[0]["images"][9].size == (32, 32)
    assert json.loads(paths.report("collect").read_text()) == metrics and metrics["steps_per_min"] > 0
    assert (metrics["runner"], metrics["workers"]) == ("thread", 1), "collect.runner as written in params.yaml"
    assert "runner" not in manifest["params"]["collect"], "how fast data is made is not what it is"
    assert not [p for p in paths.DATA.rglob("*") if ".tmp" in p.name or p.name.endswith(".old")]

    first = {f.name: f.read_bytes() for f in schema.shard_files(paths.DATASET)}
    again = _collect(params_path)  # everything is done: nothing is collected twice, the data is identical
    assert again["resumed_episodes"] == 4 and again["rows"] == metrics["rows"]
    assert {f.name: f.read_bytes() for f in schema.shard_files(paths.DATASET)} == first


@pytest.mark.slow
def test_a_failing_episode_fails_the_stage_but_keeps_the_rest(project, prefect_api, monkeypatch):
    params_path = project.write(collect={"teacher": "tests.data.teachers:failing"})
    params = load_params(params_path)
    jobs = plan_jobs(read_suite(paths.SUITE_TASKS), params)
    monkeypatch.setenv("OCTOPUS_TEST_FAIL_TASK", jobs[1].task["id"])
    with pytest.raises(CollectError, match=f"1 episode\\(s\\) failed.*{jobs[1].name}.*unreachable"):
        _collect(params_path)
    assert not paths.DATASET.exists()  # no half dataset
    parts = paths.COLLECT_PARTS / fingerprint(params, paths.SUITE_TASKS)
    assert len(list(parts.glob("*.json"))) == 3  # the others are kept for the rerun

    params_path = project.write(collect={"teacher": "tests.data.teachers:failing", "max_failed_episodes": 1})
    metrics = _collect(params_path)
    manifest = json.loads((paths.DATASET / "manifest.json").read_text())
    assert metrics["failed_episodes"] == 1 and manifest["failures"][0]["job"] == jobs[1].name
    assert "TeacherError" in manifest["failures"][0]["error"] and manifest["episodes"] == 3


@pytest.mark.slow
def test_a_crashed_worker_process_is_replaced(project, prefect_api, monkeypatch, tmp_path):
    params_path = project.write(collect={"teacher": "tests.data.teachers:crash_once", "max_tasks": 3,
                                         "runner": {"kind": "process", "workers": 2}})
    assert load_params(params_path).collect.runner.task_retries == 0, "a crash is not retried away as a failure"
    jobs = plan_jobs(read_suite(paths.SUITE_TASKS), load_params(params_path))
    monkeypatch.setenv("OCTOPUS_TEST_FAIL_TASK", jobs[0].task["id"])
    monkeypatch.setenv("OCTOPUS_TEST_CRASH_MARKER", str(tmp_path / "crashed"))
    metrics = _collect(params_path)
    assert (tmp_path / "crashed").exists()  # a worker really died
    assert metrics["episodes"] == 3 and metrics["failed_episodes"] == 0 and metrics["runner"] == "process"


@pytest.mark.slow
def test_a_killed_run_resumes_without_losing_or_duplicating(project, prefect_api, monkeypatch):
    params_path = project.write(collect={"teacher": "tests.data.teachers:slow", "max_tasks": 6})
    monkeypatch.setenv("OCTOPUS_TEST_SLEEP", "0.4")
    cmd = [sys.executable, "-m", "octopus.cli", "collect", "--no-progress", "--params", str(params_path)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(paths.COLLECT_PARTS.glob("*/*.json"))) < 2:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(list(paths.COLLECT_PARTS.glob("*/*.json")))
    assert 2 <= done_before < 6 and not paths.DATASET.exists()
    monkeypatch.setenv("OCTOPUS_TEST_SLEEP", "0")
    metrics = _collect(params_path)
    assert metrics["resumed_episodes"] >= done_before and metrics["episodes"] == 6
    ids = _ids(paths.DATASET)
    assert len(ids) == len(set(ids)) == metrics["rows"]
    assert {i.rsplit("/", 2)[0] for i in ids} == {j.task["id"] for j in plan_jobs(read_suite(paths.SUITE_TASKS),
                                                                                    load_params(params_path))}


@pytest.mark.slow
def test_a_damaged_part_is_redone_not_merged(project, prefect_api):
    params_path = project.write(collect={"max_tasks": 2})
    _collect(params_path)
    part = sorted(paths.COLLECT_PARTS.glob("*/*.parquet"))[0]
    part.write_bytes(b"PAR1 garbage")
    with pytest.raises(CollectError, match="unreadable; removed it, rerun"):
        _collect(params_path)
    metrics = _collect(params_path)
    assert metrics["resumed_episodes"] == 1 and metrics["episodes"] == 2


@pytest.mark.slow
def test_bad_params_and_unknown_teachers_are_clear_errors(project, prefect_api):
    def run(**collect) -> subprocess.CompletedProcess:
        path = project.write(collect=collect)
        return subprocess.run([sys.executable, "-m", "octopus.cli", "collect", "--params", str(path)],
                              capture_output=True, text=True)
    bad = run(runner={"workers": 0})
    assert bad.returncode == 2 and "collect.runner.workers: must be >= 1" in bad.stderr
    kind = run(runner={"kind": "slurm"})
    assert kind.returncode == 2 and "collect.runner.kind: must be one of" in kind.stderr
    old = run(workers=2)  # the flat knobs of before the runner block are refused, not ignored
    assert old.returncode == 2 and "collect.workers: unknown field" in old.stderr
    if importlib.util.find_spec("prefect_ray") is None:
        ray = run(runner={"kind": "ray"})
        assert ray.returncode == 2 and "collect.runner.kind: ray needs prefect-ray" in ray.stderr
    unknown = run(teacher="gpt5")
    assert unknown.returncode == 1 and "unknown teacher 'gpt5'" in unknown.stderr and "oracle" in unknown.stderr
    typo = yaml.safe_dump({"collect": {"oracle": {"explore": 2}}})
    (project.path / "params.yaml").write_text(typo)
    out = subprocess.run([sys.executable, "-m", "octopus.cli", "collect"], capture_output=True, text=True)
    assert out.returncode == 2 and "collect.oracle.explore: must be <= 1.0" in out.stderr


@pytest.mark.slow
def test_the_dask_runner_collects_the_same_data(project, prefect_api):
    pytest.importorskip("prefect_dask")
    _collect(project.write(collect={"max_tasks": 2, "runner": {"kind": "thread"}}))
    local = {f.name: f.read_bytes() for f in schema.shard_files(paths.DATASET)}
    for stale in paths.COLLECT_PARTS.iterdir():  # collect again from scratch on a local Dask cluster
        import shutil
        shutil.rmtree(stale)
    metrics = _collect(project.write(collect={"max_tasks": 2, "runner": {"kind": "dask", "workers": 2}}))
    assert metrics["runner"] == "dask" and metrics["episodes"] == 2
    assert {f.name: f.read_bytes() for f in schema.shard_files(paths.DATASET)} == local


def test_a_missing_runner_extra_says_what_to_install(monkeypatch):
    from octopus.config import CollectParams, EvaluateParams, RunnerParams
    from octopus.orchestration import OrchestrationError, make_task_runner
    monkeypatch.setitem(sys.modules, "prefect_ray", None)  # as if prefect-ray were not installed
    ray = RunnerParams(kind="ray")
    with pytest.raises(OrchestrationError, match=r"^collect.runner.kind: ray needs prefect-ray: pip install -e '.\[ray\]'"):
        make_task_runner(ray, "collect.runner")
    with pytest.raises(OrchestrationError, match=r"^evaluate.runner.kind: ray needs prefect-ray"):
        make_task_runner(ray, "evaluate.runner")  # the message names the stage's own block
    assert isinstance(CollectParams().runner, RunnerParams) and isinstance(EvaluateParams().runner, RunnerParams)


def test_the_task_runner_follows_the_runner_block():
    from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner

    from octopus.config import RunnerParams
    from octopus.orchestration import make_task_runner
    process = make_task_runner(RunnerParams(kind="process", workers=3), "collect.runner")
    assert isinstance(process, ProcessPoolTaskRunner) and process._max_workers == 3
    thread = make_task_runner(RunnerParams(kind="thread", workers=2), "collect.runner")
    assert isinstance(thread, ThreadPoolTaskRunner) and thread._max_workers == 2
    if importlib.util.find_spec("prefect_dask") is not None:
        from prefect_dask import DaskTaskRunner
        assert isinstance(make_task_runner(RunnerParams(kind="dask", workers=2), "collect.runner"), DaskTaskRunner)


def test_the_local_api_ca_file_is_one_certificate_that_ssl_loads():
    import ssl

    from octopus.orchestration import _one_certificate_file
    path = _one_certificate_file()
    text = path.read_text()
    assert text.count("BEGIN CERTIFICATE") == 1 and text.rstrip().endswith("END CERTIFICATE-----")
    assert ssl.create_default_context(cafile=str(path)).cert_store_stats()["x509_ca"] == 1


@pytest.mark.slow
def test_without_a_configured_api_every_episode_is_recorded_by_the_temporary_server(project, tmp_path):
    """No PREFECT_API_URL: `octopus collect` starts one temporary server, configured to record state events in
    batches; every task run still reaches its database, Completed, by the time the command exits."""
    import sqlite3
    params_path = project.write(collect={"runner": {"kind": "process", "workers": 2}})
    home = tmp_path / "prefect-home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PREFECT_HOME=str(home), PREFECT_API_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{home}/prefect.db")
    out = subprocess.run([sys.executable, "-m", "octopus.cli", "collect", "--no-progress", "--params", str(params_path)],
                         env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    jobs = plan_jobs(read_suite(paths.SUITE_TASKS), load_params(params_path))
    db = sqlite3.connect(home / "prefect.db")
    (flow_run,) = db.execute("select id from flow_run where name is not null order by created desc limit 1").fetchone()
    runs = dict(db.execute("select name, state_type from task_run where flow_run_id = ?", (flow_run,)).fetchall())
    assert runs == {j.name: "COMPLETED" for j in jobs}
