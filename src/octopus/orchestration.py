"""Prefect pieces every stage that fans out episodes shares: the local API, task runners, the fan-out loop.

    ensure_prefect_api()                                   # one temporary server for this run and its workers
    failures = fan_out(episode_task, calls, params.collect.runner, "collect.runner", on_result=..., rounds=2)

`fan_out` submits one Prefect task run per `Call` to the task runner of a `RunnerParams` block
(`process`, `thread`, `dask`, `ray`), retries a raising task run `task_retries` times, and reports
each result or failure to the caller; with `rounds > 1`, calls that did not finish (a crashed worker
process takes its pool's remaining task runs with it) run again in a fresh pool. Errors name the
calling stage's own fields (`evaluate.runner.kind: ...`). Used by collect and evaluate (and RL rollouts).
"""

from __future__ import annotations

import importlib
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from octopus.config import RunnerParams
from octopus.files import write_atomic
from octopus.progress import RunProgress


class OrchestrationError(RuntimeError):
    """A task runner cannot be built (a missing extra); the message names the params field."""


@dataclass(frozen=True)
class Call:
    """One task run: its name in the Prefect UI and the task function's keyword arguments."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    key: Any = None  # the caller's handle for it (a job, a (row, task, seed) triple, ...)


def check_runner(runner: RunnerParams, where: str) -> None:
    """OrchestrationError now (before any server or pool starts) when the runner's optional extra is missing."""
    if runner.kind in ("dask", "ray"):
        try:
            importlib.import_module(f"prefect_{runner.kind}")
        except ImportError:
            raise OrchestrationError(f"{where}.kind: {runner.kind} needs prefect-{runner.kind}: "
                                     f"pip install -e '.[{runner.kind}]'") from None


def make_task_runner(runner: RunnerParams, where: str):
    """The Prefect task runner of a `runner` block; `where` (e.g. "collect.runner") names it in errors."""
    from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner
    check_runner(runner, where)
    if runner.kind == "process":
        return ProcessPoolTaskRunner(max_workers=runner.workers)
    if runner.kind == "thread":
        return ThreadPoolTaskRunner(max_workers=runner.workers)
    if runner.kind == "dask":
        import dask
        from prefect_dask import DaskTaskRunner
        # each episode runs model-written code in a sandbox *process*; Dask's workers are daemons by
        # default and may not start one (a remote cluster needs the same setting on its workers)
        dask.config.set({"distributed.worker.daemon": False})
        if runner.address:
            return DaskTaskRunner(address=runner.address)
        return DaskTaskRunner(cluster_kwargs={"n_workers": runner.workers, "threads_per_worker": 1, "processes": True})
    from prefect_ray import RayTaskRunner
    return RayTaskRunner(address=runner.address or None, init_kwargs={"num_cpus": runner.workers})


def fan_out(task: Any, calls: list[Call], runner: RunnerParams, where: str, *,
            on_result: Callable[[Call, Any], None], on_failure: Callable[[Call, str], None] | None = None,
            rounds: int = 1, finished: Callable[[Call], bool] | None = None) -> dict[str, str]:
    """Run `task` once per call over fresh pools (at most `rounds`); returns {call name: error} of the last round.

    A call is submitted again in a later round only while `finished(call)` is False (default: it has
    not returned yet). `on_result(call, value)` and `on_failure(call, error)` run in this process as
    task runs end, in completion order."""
    from prefect.futures import as_completed
    if runner.kind != "thread":
        ensure_prefect_api()
    returned: set[str] = set()
    finished = finished or (lambda c: c.name in returned)
    failures: dict[str, str] = {}
    for _ in range(rounds):
        pending = [c for c in calls if not finished(c)]
        if not pending:
            break
        failures = {}
        with make_task_runner(runner, where) as pool:
            futures = {pool.submit(task.with_options(task_run_name=c.name, retries=runner.task_retries), c.kwargs): c
                       for c in pending}
            for fut in as_completed(list(futures)):
                call = futures[fut]
                try:
                    value = fut.result()
                except Exception as err:  # noqa: BLE001 - the task run's own failure, after its retries
                    failures[call.name] = f"{type(err).__name__}: {err}"[:2000]
                    if on_failure is not None:
                        on_failure(call, failures[call.name])
                    continue
                returned.add(call.name)
                on_result(call, value)
    return failures


# ---------------------------------------------------------------------- the local API
LOCAL_SERVER_STARTUP_S = 180  # at least this long to wait for the temporary server to answer

# Settings of the temporary local API server (a configured server keeps its own).
LOCAL_SERVER_SETTINGS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",  # no telemetry calls from offline machines
    # write task runs' state events in batches (default: one event per transaction); the UI lags <= 5 s
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "100",
    "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_READ_BATCH_SIZE": "10",
    # automations: none can be defined on a server that lives for one run
    "PREFECT_SERVER_SERVICES_TRIGGERS_ENABLED": "false",
}


def ensure_prefect_api() -> str | None:
    """Share one Prefect API with worker processes.

    With no server configured (PREFECT_API_URL), Prefect starts a temporary one per process: every
    spawned worker would start its own (~10 s each). Start the one this process would use and export
    its URL, so workers (and subprocesses) report to it. Returns the URL in use.

    That server speaks plain HTTP on 127.0.0.1, yet every Prefect client (two per task run in a
    process worker) parses the whole certifi CA bundle into an SSL context it never uses: about half
    of a task run's overhead in the worker (108 -> 53 ms per no-op task run measured). Pointing
    PREFECT_API_SSL_CERT_FILE at a one-certificate file removes that; a configured (maybe HTTPS)
    server is left alone.

    The temporary server also gets `LOCAL_SERVER_SETTINGS` (unless set already): with Prefect's
    defaults it recorded every task-run state event in its own upsert and evaluated automations on
    each, about 20% of a core while two workers collected, taken from the workers."""
    from prefect.settings import PREFECT_API_URL
    url = os.environ.get("PREFECT_API_URL") or PREFECT_API_URL.value()
    if url:
        return url
    from prefect.server.api.server import SubprocessASGIServer
    for key, value in LOCAL_SERVER_SETTINGS.items():
        os.environ.setdefault(key, value)
    server = SubprocessASGIServer()  # the same instance Prefect's client would start for this process
    # Prefect waits 20 s by default; a first start (a new database: every migration) on a busy 2-core
    # machine takes longer, and a slow start should not fail the stage
    from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS
    server.start(timeout=max(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value(), LOCAL_SERVER_STARTUP_S))
    os.environ["PREFECT_API_URL"] = server.api_url
    if "PREFECT_API_SSL_CERT_FILE" not in os.environ:
        os.environ["PREFECT_API_SSL_CERT_FILE"] = str(_one_certificate_file())
    return server.api_url


def _one_certificate_file() -> Path:
    """The first certificate of certifi's bundle, alone in a file (a valid CA file that is quick to load)."""
    import certifi
    path = Path(tempfile.gettempdir()) / "octopus-local-api-ca.pem"
    if not path.is_file():
        bundle = Path(certifi.where()).read_text()
        first = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n", bundle, re.S)
        write_atomic(path, first.group(0) if first else bundle)
    return path


# ---------------------------------------------------------------------- progress
class Progress:
    """A fan-out's progress: a rich bar on stderr (done / total, and a caller's info text) when `show`, and the
    Prefect progress artifact `octopus-STAGE-progress` of the run it is part of (`octopus.progress`)."""

    def __init__(self, stage: str, total: int, completed: int = 0, show: bool = True) -> None:
        self.stage, self.total, self.completed, self.show = stage, total, completed, show

    def __enter__(self) -> "Progress":
        self._artifact = RunProgress(self.stage, self.total, self.completed, f"{self.stage}: episodes done")
        if self.show:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeRemainingColumn
            self._bar = Bar(TextColumn(self.stage), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                            TextColumn("{task.fields[info]}"), console=Console(stderr=True))
            self._bar.start()
            self._job = self._bar.add_task(self.stage, total=self.total, completed=self.completed, info="")
        return self

    def update(self, advance: int, info: str) -> None:
        self._artifact.advance(advance)
        if self.show:
            self._bar.update(self._job, advance=advance, info=info)

    def __exit__(self, *exc) -> None:
        if self.show:
            self._bar.stop()
