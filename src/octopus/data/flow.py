"""The collect stage as a Prefect flow: one task run per task-episode, fanned out over workers.

    octopus collect                         # what `dvc repro collect` runs; calls `collect` below
    python flows/collect.py                 # the same flow from flows/ (serve or deploy it from there)

The task runner comes from `collect.runner`: `process` (default; `collect.workers` processes on this
machine), `thread`, `dask` (`pip install -e .[dask]`; `collect.runner_address` = a scheduler, or a
local cluster; workers must run with `distributed.worker.daemon: false`, since episodes start a sandbox process) or `ray` (`pip install -e .[ray]`; address of a cluster, or a local one). A task run
that raises is retried `collect.task_retries` times; a crashed worker process is replaced by running
the jobs it left over in a fresh pool. Episodes that still fail are listed in the manifest and the
metrics, and fail the stage when there are more than `collect.max_failed_episodes`; finished ones
are kept, so a rerun only does what is missing.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.futures import as_completed

from octopus import paths
from octopus.agents import make_teacher
from octopus.config import CollectParams, Params, load_params
from octopus.data.collect import CollectError, Job, done, finalize, fingerprint, plan_jobs, read_suite, run_job
from octopus.files import write_atomic, write_json

ROUNDS = 2  # fresh worker pools for jobs left over by crashed workers


# no Prefect cache: parts on disk are the cache, and hashing every task's inputs costs orchestration CPU
@task(name="collect-episode", retries=2, retry_delay_seconds=1, cache_policy=NO_CACHE, persist_result=False)
def collect_episode(job: Job, params: Params, parts: str) -> dict:
    """Explore one task-episode tree and write its part (a finished one is returned as is)."""
    return run_job(job, params, parts)


def make_task_runner(c: CollectParams):
    """The Prefect task runner named by `collect.runner` (ImportError with the install hint for extras)."""
    from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner
    if c.runner == "process":
        return ProcessPoolTaskRunner(max_workers=c.workers)
    if c.runner == "thread":
        return ThreadPoolTaskRunner(max_workers=c.workers)
    try:
        if c.runner == "dask":
            import dask
            from prefect_dask import DaskTaskRunner
            # each episode runs model-written code in a sandbox *process*; Dask's workers are daemons by
            # default and may not start one (a remote cluster needs the same setting on its workers)
            dask.config.set({"distributed.worker.daemon": False})
            if c.runner_address:
                return DaskTaskRunner(address=c.runner_address)
            return DaskTaskRunner(cluster_kwargs={"n_workers": c.workers, "threads_per_worker": 1, "processes": True})
        from prefect_ray import RayTaskRunner
        return RayTaskRunner(address=c.runner_address or None, init_kwargs={"num_cpus": c.workers})
    except ImportError:
        raise CollectError(f"collect.runner: {c.runner} needs prefect-{c.runner}: "
                           f"pip install -e '.[{c.runner}]'") from None


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
    import re
    import tempfile

    import certifi
    path = Path(tempfile.gettempdir()) / "octopus-local-api-ca.pem"
    if not path.is_file():
        bundle = Path(certifi.where()).read_text()
        first = re.search(r"-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----\n", bundle, re.S)
        write_atomic(path, first.group(0) if first else bundle)
    return path


def _fan_out(jobs: list[Job], params: Params, parts: Path, progress) -> list[dict]:
    """Run the jobs over fresh worker pools until none is left (at most ROUNDS pools)."""
    logger = get_run_logger()
    if params.collect.runner != "thread":
        ensure_prefect_api()
    failures: dict[str, str] = {}
    for round_ in range(ROUNDS):
        pending = [j for j in jobs if done(parts, j) is None]
        if not pending:
            break
        # longest first (by the planner's proof length), so no long episode is left alone at the end
        pending.sort(key=lambda j: -(j.task.get("plan_steps") or 0))
        failures = {}
        episode = collect_episode.with_options(retries=params.collect.task_retries)
        with make_task_runner(params.collect) as runner:
            futures = {runner.submit(episode.with_options(task_run_name=j.name),
                                     {"job": j, "params": params, "parts": str(parts)}): j for j in pending}
            for fut in as_completed(list(futures)):
                job = futures[fut]
                try:
                    summary = fut.result()
                    progress(job, summary)
                except Exception as err:  # noqa: BLE001 - a task's own failure, recorded with its message
                    failures[job.name] = f"{type(err).__name__}: {err}"[:2000]
                    progress(job, None)
        if failures:
            logger.warning("round %d: %d episode(s) failed: %s", round_ + 1, len(failures),
                           "; ".join(f"{k}: {v[:200]}" for k, v in list(failures.items())[:5]))
    return [{"job": k, "error": v} for k, v in sorted(failures.items())]


@flow(name="collect", log_prints=True)
def collect(params_path: str = "params.yaml", show_progress: bool = True) -> dict:
    """Collect the dataset: explore trees for the train tasks, merge them into shards, write metrics."""
    logger = get_run_logger()
    params = load_params(params_path)
    suite_path = paths.SUITE_TASKS
    jobs = plan_jobs(read_suite(suite_path), params)
    try:  # an unknown or unimportable teacher fails here, not in every worker
        make_teacher(params.collect.teacher, params.collect, params.sim, 0)
    except KeyError as err:
        raise CollectError(f"collect.teacher: {err.args[0]}") from None
    parts = paths.COLLECT_PARTS / fingerprint(params, suite_path)
    parts.mkdir(parents=True, exist_ok=True)
    resumed = sum(done(parts, j) is not None for j in jobs)
    logger.info("%d episodes to collect (%d already done in %s) with %s x%d, teacher %s", len(jobs), resumed,
                parts, params.collect.runner, params.collect.workers, params.collect.teacher)
    t0 = time.perf_counter()
    with _Progress(len(jobs), resumed, show_progress) as progress:
        failures = _fan_out(jobs, params, parts, progress)
    seconds = time.perf_counter() - t0
    if len(failures) > params.collect.max_failed_episodes:
        raise CollectError(f"{len(failures)} episode(s) failed (collect.max_failed_episodes="
                           f"{params.collect.max_failed_episodes}); finished episodes are kept in {parts}, "
                           f"rerun to retry the rest. First: {failures[0]['job']}: {failures[0]['error']}")
    manifest = finalize(jobs, params, parts, paths.DATASET, suite_path, failures)
    metrics = _metrics(manifest, progress.nodes, resumed, seconds, params)
    write_json(paths.report("collect"), metrics)
    for stale in paths.COLLECT_PARTS.iterdir():  # parts of other settings can never be reused
        if stale.is_dir() and stale != parts:
            shutil.rmtree(stale, ignore_errors=True)
    logger.info("collected %d rows (%d episodes, %d%% successful) in %.1f s: %.0f steps/min",
                manifest["rows"], manifest["episodes"], 100 * metrics["episode_success_rate"], seconds,
                metrics["steps_per_min"])
    return metrics


def _metrics(manifest: dict, fresh_nodes: int, resumed: int, seconds: float, params: Params) -> dict:
    """reports/collect.json: counts, labels, speed of this run (resumed episodes excluded), teacher usage."""
    return {
        "rows": manifest["rows"], "images": manifest["images"], "episodes": manifest["episodes"],
        "tasks": manifest["tasks"], "episode_success_rate": round(manifest["successful_episodes"] /
                                                                   max(manifest["episodes"], 1), 4),
        "positive": manifest["positive"], "negative": manifest["negative"],
        "step_success_rate": round(manifest["target_states_met"] / max(manifest["rows"], 1), 4),
        "explored": manifest["explored"], "failed_episodes": len(manifest["failures"]),
        "resumed_episodes": resumed, "wall_s": round(seconds, 2),
        "steps_per_min": round(60 * fresh_nodes / seconds, 1) if seconds > 0 else 0.0,
        "workers": params.collect.workers, "runner": params.collect.runner,
        "teacher": params.collect.teacher, "usage": manifest["usage"],
        "dataset_mb": round(sum(f.stat().st_size for f in paths.DATASET.glob("*.parquet")) / 2**20, 2),
    }


class _Progress:
    """A rich progress bar on stderr (episodes, nodes, successes), or nothing."""

    def __init__(self, total: int, completed: int, show: bool) -> None:
        self.total, self.completed, self.show = total, completed, show
        self.nodes = self.ok = self.failed = 0

    def __enter__(self) -> "_Progress":
        if self.show:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
            self._bar = Progress(TextColumn("collect"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                 TextColumn("{task.fields[info]}"), console=Console(stderr=True))
            self._bar.start()
            self._job = self._bar.add_task("collect", total=self.total, completed=self.completed, info="")
        return self

    def __call__(self, job: Job, summary: dict | None) -> None:
        if summary is None:
            self.failed += 1
        else:
            self.nodes += summary["nodes"]
            self.ok += bool(summary["success"])
        if self.show:
            self._bar.update(self._job, advance=int(summary is not None),
                             info=f"{self.nodes} nodes, {self.ok} solved, {self.failed} failed")

    def __exit__(self, *exc) -> None:
        if self.show:
            self._bar.stop()
