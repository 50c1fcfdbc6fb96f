"""The local Prefect stack behind `make ui`: a real server (SQLite), a process work pool and worker, the deployments.

    octopus ui start [--port N]     # server on 127.0.0.1, pool + worker, `prefect deploy --all`; prints the UI URL
    octopus ui status               # running or not, the URL, the deployments
    octopus ui deploy               # register prefect.yaml's deployments again (after editing it)
    octopus ui stop                 # ends exactly what `start` began, nothing else

Prefect's temporary server (what a bare flow call starts) runs flows but never fires schedules; this one
does. Its state lives in a project-local PREFECT_HOME (`.prefect/`, git-ignored): the SQLite database,
`profiles.toml`, `ui.json` (the pids and start times of the server and worker, read by `stop` and
`status`) and `logs/`. Both processes start in their own session, so `stop` ends each one's process
group (uvicorn under the server, flow runs under the worker) after checking that the pid still belongs
to the process it started (its start time), so a recycled pid is never signalled.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

from octopus.files import write_atomic
from octopus.ports import port_free
from octopus.workspace import PROJECT_ROOT, ensure_lock

POOL = "octopus-process"
DEFAULT_PORT = 4200
STARTUP_TIMEOUT_S = 180.0  # a first start migrates a new database: slow on a busy 2-core machine


class UIError(RuntimeError):
    """The stack cannot start (port in use, server exited, deploy failed); the message says where to look."""


@dataclass
class Stack:
    """Where and how the local stack runs; `env` adds settings for the server, worker and deploy (tests)."""

    root: Path = PROJECT_ROOT
    home: Path | None = None         # PREFECT_HOME; default: <root>/.prefect
    host: str = "127.0.0.1"
    port: int | None = None          # None: 4200, or the next free port
    pool: str = POOL
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()
        self.home = Path(self.home).resolve() if self.home else self.root / ".prefect"

    @property
    def state_file(self) -> Path:
        return self.home / "ui.json"

    @property
    def logs(self) -> Path:
        return self.home / "logs"


@dataclass
class State:
    """What `start` wrote: the URL and, per process, its pid and start time (clock ticks since boot)."""

    url: str
    processes: dict[str, dict[str, int]]

    @property
    def api_url(self) -> str:
        return f"{self.url}/api"


def _start_time(pid: int) -> int | None:
    """The process's start time from /proc (None when it is gone); identifies it beyond its pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])  # field 22; the name in () may hold spaces


def _alive(proc: dict[str, int]) -> bool:
    start = _start_time(proc["pid"])
    return start is not None and start == proc["start"]


def read_state(stack: Stack) -> State | None:
    """The running stack's state, or None (no state file, or a process of it is gone)."""
    try:
        raw = json.loads(stack.state_file.read_text())
    except (OSError, ValueError):
        return None
    state = State(raw["url"], raw["processes"])
    return state if state.processes and all(_alive(p) for p in state.processes.values()) else None


def pick_port(host: str, port: int | None) -> int:
    """`port` if free (an error names it otherwise), else 4200 or the next free one."""
    if port is not None:
        if not port_free(port, host):
            raise UIError(f"port {port} on {host} is in use; choose another (--port, or PORT=... for make ui)")
        return port
    for candidate in range(DEFAULT_PORT, DEFAULT_PORT + 100):
        if port_free(candidate, host):
            return candidate
    raise UIError(f"no free port in {DEFAULT_PORT}-{DEFAULT_PORT + 99} on {host}; choose one with --port")


def stack_env(stack: Stack, url: str) -> dict[str, str]:
    """The environment of the server, the worker (and so every flow run) and `prefect deploy`."""
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PREFECT_HOME": str(stack.home), "PREFECT_API_URL": f"{url}/api",
            # the UI must know its API's URL, or it calls port 4200 and shows "Oops. Something went wrong."
            "PREFECT_UI_API_URL": f"{url}/api", "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", **stack.env}


def _spawn(name: str, args: list[str], stack: Stack, env: dict[str, str]) -> dict[str, int]:
    """Start `python -m prefect ARGS` in its own session, output to logs/NAME.log; its pid and start time."""
    stack.logs.mkdir(parents=True, exist_ok=True)
    with open(stack.logs / f"{name}.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "prefect", *args], cwd=stack.root, env=env,
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    start = None
    for _ in range(50):  # /proc/<pid> appears at once; this only guards against a slow fork
        start = _start_time(proc.pid)
        if start is not None:
            break
        time.sleep(0.01)
    return {"pid": proc.pid, "start": start or 0}


_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _wait_healthy(url: str, server: dict[str, int], log: Path, timeout_s: float = STARTUP_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _alive(server):
            raise UIError(f"the Prefect server exited while starting; see {log}:\n{_tail(log)}")
        try:  # no proxy for our own loopback server
            with _DIRECT.open(f"{url}/api/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.25)
    raise UIError(f"the Prefect server did not answer {url}/api/health within {timeout_s:.0f} s; see {log}")


def _tail(path: Path, n: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def ensure_pool(stack: Stack) -> None:
    """The process work pool (with the process worker's default job template), unless it exists."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists
    from prefect.workers.process import ProcessWorker
    with get_client(sync_client=True) as client:
        try:
            client.create_work_pool(WorkPoolCreate(name=stack.pool, type="process",
                                                   base_job_template=ProcessWorker.get_default_base_job_template()))
        except ObjectAlreadyExists:
            pass


def deploy(stack: Stack, env: dict[str, str] | None = None, prefect_file: Path | None = None) -> str:
    """`prefect deploy --all` from the project folder (prefect.yaml, or `prefect_file`); its output."""
    if env is None:
        state = read_state(stack)
        if state is None:
            raise UIError(f"no local Prefect stack is running for {stack.home}; start it: make ui")
        env = stack_env(stack, state.url)
    args = [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"]
    if prefect_file is not None:
        args += ["--prefect-file", str(prefect_file)]
    proc = subprocess.run(args, cwd=stack.root, env=env, capture_output=True, text=True)
    stack.logs.mkdir(parents=True, exist_ok=True)
    (stack.logs / "deploy.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise UIError(f"prefect deploy failed ({proc.returncode}); see {stack.logs / 'deploy.log'}:\n"
                      f"{(proc.stdout + proc.stderr)[-3000:]}")
    return proc.stdout


def start(stack: Stack, deploy_flows: bool = True) -> tuple[State, bool]:
    """Start the server, pool, worker and deployments; (state, False) when it was running already."""
    running = read_state(stack)
    if running is not None:
        return running, False
    stop(stack)  # a half-dead stack from before (one process gone): end what is left of it
    port = pick_port(stack.host, stack.port)
    url = f"http://{stack.host}:{port}"
    env = stack_env(stack, url)
    stack.home.mkdir(parents=True, exist_ok=True)
    server = _spawn("server", ["server", "start", "--host", stack.host, "--port", str(port)], stack, env)
    processes = {"server": server}
    write_atomic(stack.state_file, json.dumps({"url": url, "processes": processes}))  # stop works from here on
    try:
        _wait_healthy(url, server, stack.logs / "server.log")
        from prefect.settings import PREFECT_API_URL, temporary_settings
        with temporary_settings({PREFECT_API_URL: f"{url}/api"}):
            ensure_pool(stack)
            ensure_lock(stack.root)  # visible (Concurrency page) before the first run creates it
        processes["worker"] = _spawn("worker", ["worker", "start", "--pool", stack.pool, "--type", "process",
                                                "--name", f"octopus-{port}"], stack, env)
        write_atomic(stack.state_file, json.dumps({"url": url, "processes": processes}))
        if deploy_flows:
            deploy(stack, env)
    except BaseException:  # a failed or interrupted start leaves nothing running
        stop(stack)
        raise
    return State(url, processes), True


def stop(stack: Stack, timeout_s: float = 15.0) -> list[str]:
    """End the worker, then the server (each one's process group), if they are still the ones started."""
    try:
        raw = json.loads(stack.state_file.read_text())
    except (OSError, ValueError):
        return []
    stopped = []
    for name in ("worker", "server"):
        proc = raw.get("processes", {}).get(name)
        if proc and _alive(proc):
            _end_group(proc, timeout_s)
            stopped.append(f"{name} (pid {proc['pid']})")
    stack.state_file.unlink(missing_ok=True)
    return stopped


def _end_group(proc: dict[str, int], timeout_s: float) -> None:
    """SIGTERM to the process group the pid leads (it was started in its own session), SIGKILL after timeout_s."""
    pid = proc["pid"]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if _reap(pid) or not _alive(proc):
                return
            time.sleep(0.1)


def _reap(pid: int) -> bool:
    """True once `pid` is gone (reaping it when it is our own child: `start` and `stop` in one process)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == pid
    except ChildProcessError:
        return False


def deployments(state: State) -> list[dict]:
    """Name, schedule and paused flag of every deployment on the running server."""
    import httpx
    resp = httpx.post(f"{state.api_url}/deployments/filter", json={}, timeout=10)
    resp.raise_for_status()
    flows = {f["id"]: f["name"] for f in httpx.post(f"{state.api_url}/flows/filter", json={}, timeout=10).json()}
    return [{"name": f"{flows.get(d['flow_id'], '?')}/{d['name']}", "paused": d["paused"], "id": d["id"],
             "schedules": [s["schedule"].get("cron") or s["schedule"].get("interval") for s in d["schedules"]]}
            for d in resp.json()]


def status_dict(stack: Stack) -> dict:
    state = read_state(stack)
    if state is None:
        return {"running": False, "home": str(stack.home)}
    try:
        listed: list[dict] | str = deployments(state)
    except Exception as err:  # noqa: BLE001 - a busy or broken server: say so, keep the rest of the status
        listed = f"cannot list deployments: {type(err).__name__}: {err}"
    return {"running": True, "url": state.url, "home": str(stack.home), **asdict(state), "deployments": listed}
