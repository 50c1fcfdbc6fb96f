"""`octopus ui` (what `make ui` runs) against a real local Prefect server, one for the whole test session.

The server, process worker and prefect.yaml's deployments start through the real CLI; a tiny DVC project
(three cheap stages and a failing one) then gets its own deployments of flows/pipeline.py: a schedule a
few seconds out (added to one of them after `prefect deploy`) fires and completes through the worker, a failing stage ends Failed with its error in the
logs, two runs at once take turns in the workspace, and the UI serves the flow runs (headless Chromium).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
OCTOPUS = [str(Path(sys.executable).parent / "octopus")]
FAST = {"PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "1", "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_SERVER_SERVICES_LATE_RUNS_LOOP_SECONDS": "5"}
GIT = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}

# the tiny project: `prepare` prints slowly (logs stream), `evaluate` writes the table and rollout report the
# pipeline publishes, `slow` always runs and records when (the concurrency test), `broken` fails
TINY_DVC = {"stages": {
    "prepare": {"cmd": "python -c \"import time; from octopus.progress import RunProgress; p = RunProgress('prepare', 3); "
                       "[print('prepare line', i, flush=True) or p.advance() or time.sleep(0.2) for i in range(3)]; "
                       "p.done(); open('a.txt', 'w').write('a')\"", "outs": ["a.txt"]},
    "evaluate": {"cmd": "python -c \"import os; os.makedirs('reports/rollouts', exist_ok=True); "
                        "open('reports/evaluate.md', 'w').write('| Agent | All |\\n| --- | --- |\\n| oracle | 1.00 |\\n'); "
                        "open('reports/rollouts/index.html', 'w').write('<html>rollouts</html>')\"",
                 "deps": ["a.txt"], "outs": ["reports/rollouts"], "metrics": [{"reports/evaluate.md": {"cache": False}}]},
    "slow": {"cmd": "python -c \"import time; t0 = time.time(); time.sleep(1.5); "
                    "open('slow.log', 'a').write(f'{t0} {time.time()}\\n')\"", "always_changed": True},
    "broken": {"cmd": "python -c \"raise SystemExit('boom: the broken stage cannot find its input')\"",
               "deps": ["a.txt"], "outs": ["never.txt"]},
}}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run(cmd: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


class Api:
    """The few REST calls the tests make (plain HTTP, so the test process keeps no Prefect client state)."""

    def __init__(self, url: str) -> None:
        self.url, self.api = url, f"{url}/api"

    def _call(self, method: str, path: str, **kw):
        """One call, retried as Prefect's own client retries: a busy server's SQLite answers 503 (database
        locked) or 429 for a moment; those requests did not take effect."""
        for attempt in range(8):
            resp = httpx.request(method, f"{self.api}/{path}", timeout=60, **kw)
            if resp.status_code not in (429, 502, 503) or attempt == 7:
                resp.raise_for_status()
                return resp.json()
            time.sleep(min(2 ** attempt * 0.25, 8))

    def post(self, path: str, body: dict | list | None = None):
        return self._call("POST", path, json={} if body is None else body)

    def get(self, path: str):
        return self._call("GET", path)

    def deployment(self, flow: str, name: str) -> dict:
        return self.get(f"deployments/name/{flow}/{name}")

    def runs_of(self, deployment_id: str) -> list[dict]:
        return self.post("flow_runs/filter", {"flow_runs": {"deployment_id": {"any_": [deployment_id]}},
                                              "sort": "EXPECTED_START_TIME_ASC"})

    def wait_final(self, run_id: str, timeout_s: float = 180) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            run = self.get(f"flow_runs/{run_id}")
            if run["state_type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
                return run
            time.sleep(0.5)
        raise AssertionError(f"flow run {run_id} not finished after {timeout_s} s: {run['state_type']}")

    def logs(self, run_id: str) -> str:
        rows = self.post("logs/filter", {"logs": {"flow_run_id": {"any_": [run_id]}}, "sort": "TIMESTAMP_ASC"})
        return "\n".join(r["message"] for r in rows)

    def logs_with(self, run_id: str, *lines: str, timeout: float = 30) -> str:
        """The run's logs once all of `lines` are in them (or at the deadline): Prefect ships log records in
        batches, and the last batch can reach the server after the run's final state."""
        deadline = time.monotonic() + timeout
        while not all(line in (logs := self.logs(run_id)) for line in lines) and time.monotonic() < deadline:
            time.sleep(0.5)
        return logs

    def task_runs(self, run_id: str) -> list[dict]:
        return self.post("task_runs/filter", {"flow_runs": {"id": {"any_": [run_id]}}, "sort": "EXPECTED_START_TIME_ASC"})

    def run_deployment(self, deployment_id: str) -> str:
        return self.post(f"deployments/{deployment_id}/create_flow_run", {})["id"]


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    """`octopus ui start` on a free port with a temporary PREFECT_HOME; `octopus ui stop` at the end."""
    home = tmp_path_factory.mktemp("prefect-home")
    env = {**os.environ, **FAST}
    env.pop("PREFECT_API_URL", None)
    t0 = time.monotonic()
    start = _run([*OCTOPUS, "ui", "start", "--home", str(home), "--port", str(_free_port())], ROOT, env)
    url = start.stdout.strip().splitlines()[-1]
    state = json.loads((home / "ui.json").read_text())
    yield {"url": url, "home": home, "env": env, "api": Api(url), "state": state, "start_s": time.monotonic() - t0}
    stop = _run([*OCTOPUS, "ui", "stop", "--home", str(home)], ROOT, env)
    assert "stopped worker" in stop.stderr and "server" in stop.stderr
    for proc in state["processes"].values():
        assert not Path(f"/proc/{proc['pid']}").exists() or _zombie(proc["pid"])


def _zombie(pid: int) -> bool:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"


def _tiny_project(repo: Path, env: dict) -> Path:
    (repo / "dvc.yaml").write_text(yaml.safe_dump(TINY_DVC, sort_keys=False))
    _run(["git", "init", "-q"], repo, env)
    _run([sys.executable, "-m", "dvc", "init", "-q"], repo, env)
    _run(["git", "add", "-A"], repo, env)
    _run(["git", "commit", "-qm", "init"], repo, env)
    return repo


@pytest.fixture(scope="session")
def tiny(stack, tmp_path_factory):
    """Tiny DVC projects with deployments of flows/pipeline.py on the stack's pool (one scheduled).

    The failing run starts at once in a second project (its own workspace slot), so it runs while the
    scheduled one waits for its time."""
    env = {**stack["env"], **GIT}
    repo = _tiny_project(tmp_path_factory.mktemp("tiny-project"), env)
    broken = _tiny_project(tmp_path_factory.mktemp("tiny-broken"), env)
    base = {"entrypoint": "flows/pipeline.py:pipeline", "work_pool": {"name": "octopus-process"}}
    deployments = [
        {**base, "name": "tiny-scheduled", "parameters": {"project_dir": str(repo), "stages": ["prepare", "evaluate"],
                                                           "retries": 0}},
        {**base, "name": "tiny-broken", "parameters": {"project_dir": str(broken), "target": "broken", "retries": 0}},
        {**base, "name": "tiny-slow", "parameters": {"project_dir": str(repo), "stages": ["slow"], "retries": 0}},
    ]
    prefect_file = repo / "prefect.yaml"
    prefect_file.write_text(yaml.safe_dump({"name": "tiny", "deployments": deployments}))
    from octopus.ui import Stack, deploy
    deploy(Stack(home=stack["home"]), prefect_file=prefect_file)
    api = stack["api"]
    ids = {d["name"]: api.deployment("octopus-pipeline", d["name"])["id"] for d in deployments}
    broken_run = api.run_deployment(ids["tiny-broken"])
    # a schedule a few seconds out, added the way the UI adds one (a schedule in prefect.yaml would be
    # written before `prefect deploy`, whose duration on a busy machine could put it in the past)
    first = datetime.now(timezone.utc) + timedelta(seconds=6)
    api.post(f"deployments/{ids['tiny-scheduled']}/schedules",
             [{"schedule": {"interval": 3600, "anchor_date": first.isoformat()}, "active": True}])
    return {"repo": repo, "first": first, "broken_run": broken_run, **ids}


@pytest.mark.slow
def test_ui_start_registers_the_project_deployments_and_is_idempotent(stack):
    api, home = stack["api"], stack["home"]
    assert api.get("health") is True
    flows = {f["id"]: f["name"] for f in api.post("flows/filter")}
    names = {f"{flows[d['flow_id']]}/{d['name']}": d for d in api.post("deployments/filter")}
    assert {"octopus-pipeline/nightly", "octopus-pipeline/collect", "octopus-pipeline/evaluate",
            "octopus-sweep/sweep"} <= set(names)
    nightly = names["octopus-pipeline/nightly"]
    assert nightly["paused"] is True  # nothing runs until the user resumes it
    assert [s["schedule"]["cron"] for s in nightly["schedules"]] == ["0 2 * * *"]
    assert names["octopus-pipeline/evaluate"]["parameters"]["target"] == "evaluate"
    assert names["octopus-pipeline/nightly"]["work_pool_name"] == "octopus-process"
    pool = api.get("work_pools/octopus-process")
    assert pool["type"] == "process" and pool["status"] == "READY"  # the worker polls it
    limits = api.post("v2/concurrency_limits/filter")
    assert any(lim["name"].startswith("dvc-workspace-") and lim["limit"] == 1 for lim in limits)
    again = _run([*OCTOPUS, "ui", "start", "--home", str(home)], ROOT, stack["env"])
    assert "already running" in again.stderr and again.stdout.strip() == stack["url"]
    assert json.loads((home / "ui.json").read_text()) == stack["state"]  # same processes, none added
    status = json.loads(_run([*OCTOPUS, "ui", "status", "--home", str(home), "--json"], ROOT, stack["env"]).stdout)
    assert status["running"] and status["url"] == stack["url"]
    assert stack["start_s"] < 120


@pytest.mark.slow
def test_scheduled_deployment_fires_runs_and_completes_with_artifacts(stack, tiny):
    api, repo = stack["api"], tiny["repo"]
    deadline = time.monotonic() + 120
    while not (runs := api.runs_of(tiny["tiny-scheduled"])) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert runs, "the scheduler made no run of the scheduled deployment"
    run = api.wait_final(runs[0]["id"])
    assert run["state_type"] == "COMPLETED", api.logs(run["id"])[-3000:]
    assert run["auto_scheduled"] is True and run["work_pool_name"] == "octopus-process"
    assert abs(datetime.fromisoformat(run["expected_start_time"]) - tiny["first"]) < timedelta(seconds=1)
    tasks = {t["name"]: t["state_type"] for t in api.task_runs(run["id"])}
    assert tasks == {"dvc-repro-prepare": "COMPLETED", "dvc-repro-evaluate": "COMPLETED"}
    logs = api.logs_with(run["id"], "Running stage 'prepare'", "prepare line 2")
    assert "Running stage 'prepare'" in logs and "prepare line 2" in logs  # the stage's own output, streamed
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert set(lock["stages"]) == {"prepare", "evaluate"}
    artifacts = {a["key"]: a for a in api.post("artifacts/filter",  # this run's (other runs share the keys)
                                               {"artifacts": {"flow_run_id": {"any_": [run["id"]]}}})}
    table = artifacts["octopus-evaluation"]
    assert table["type"] == "markdown" and "| oracle | 1.00 |" in table["data"]
    assert (repo / "reports" / "rollouts" / "index.html").as_uri() in table["data"]  # the rollout report's link
    progress = artifacts["octopus-pipeline-progress"]
    assert progress["type"] == "progress" and progress["data"] == 100.0
    stage = artifacts["octopus-prepare-progress"]  # a stage's own progress, from its dvc subprocess, on this run
    assert stage["type"] == "progress" and stage["data"] == 100.0


@pytest.mark.slow
def test_failing_stage_fails_the_run_with_its_error_in_the_logs(stack, tiny):
    api = stack["api"]
    run = api.wait_final(tiny["broken_run"])
    assert run["state_type"] == "FAILED"
    tasks = {t["name"]: t["state_type"] for t in api.task_runs(run["id"])}
    assert tasks == {"dvc-repro-prepare": "COMPLETED", "dvc-repro-broken": "FAILED"}  # target + its upstream
    logs = api.logs_with(run["id"], "dvc repro broken failed", "boom: the broken stage cannot find its input")
    assert "dvc repro broken failed" in logs and "boom: the broken stage cannot find its input" in logs


@pytest.mark.slow
def test_two_runs_take_turns_in_one_workspace(stack, tiny):
    """Two runs at once: the second waits for the workspace's one slot, so the repros never overlap."""
    api, repo = stack["api"], tiny["repo"]
    ids = [api.run_deployment(tiny["tiny-slow"]) for _ in range(2)]
    runs = [api.wait_final(i) for i in ids]
    assert [r["state_type"] for r in runs] == ["COMPLETED", "COMPLETED"], [api.logs(i)[-2000:] for i in ids]
    spans = sorted(tuple(map(float, line.split())) for line in (repo / "slow.log").read_text().splitlines())
    assert len(spans) == 2 and spans[0][1] <= spans[1][0], spans  # the second started after the first ended
    assert "slow" in yaml.safe_load((repo / "dvc.lock").read_text())["stages"]


@pytest.mark.slow
def test_ui_serves_the_failed_flow_run_in_chromium(stack, tiny, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium on PATH (Debian: apt-get install chromium) for the headless DOM check")
    run = stack["api"].wait_final(tiny["broken_run"])
    page = f"{stack['url']}/runs/flow-run/{run['id']}"
    browser = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--window-size=1400,1000",
               "--virtual-time-budget=10000"]
    dom = subprocess.run([*browser, "--dump-dom", page], capture_output=True, text=True, timeout=120).stdout
    assert run["name"] in dom and "Failed" in dom, dom[-2000:]
    assert "dvc-repro-broken" in dom  # the stage's task run
    assert "Oops" not in dom  # the UI reached its API (it knows the server's own URL)
    shot = Path(os.environ.get("OCTOPUS_UI_SCREENSHOT_DIR", tmp_path)) / "flow-run.png"
    subprocess.run([*browser, f"--screenshot={shot}", page], capture_output=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 10_000


# ---------------------------------------------------------------------- fast: no server
def test_stop_never_signals_a_process_it_did_not_start(tmp_path):
    """A pid in ui.json whose start time differs (a recycled pid) is left alone; the recorded one is ended."""
    from octopus.ui import Stack, _start_time, stop
    other = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        stack = Stack(home=tmp_path)
        start = _start_time(other.pid)
        stack.state_file.write_text(json.dumps({"url": "http://127.0.0.1:1", "processes": {
            "server": {"pid": other.pid, "start": start + 1}}}))
        assert stop(stack) == [] and other.poll() is None and not stack.state_file.exists()
        stack.state_file.write_text(json.dumps({"url": "http://127.0.0.1:1", "processes": {
            "server": {"pid": other.pid, "start": start}}}))
        assert stop(stack) == [f"server (pid {other.pid})"] and other.wait(timeout=5) is not None
    finally:
        if other.poll() is None:
            other.kill()


def test_a_busy_port_is_refused_by_name_and_a_free_one_found():
    from octopus.ui import UIError, pick_port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        busy = sock.getsockname()[1]
        with pytest.raises(UIError, match=f"port {busy} on 127.0.0.1 is in use"):
            pick_port("127.0.0.1", busy)
    assert 4200 <= pick_port("127.0.0.1", None) < 4300


def test_a_project_without_dvc_yaml_is_refused(tmp_path):
    from octopus.workspace import WorkspaceError, lock_name, resolve_project
    with pytest.raises(WorkspaceError, match=f"project_dir: {tmp_path} has no dvc.yaml"):
        resolve_project(tmp_path)
    assert resolve_project(None) == ROOT  # the checkout by default
    assert lock_name(ROOT) != lock_name(tmp_path) and lock_name(ROOT).startswith("dvc-workspace-")
