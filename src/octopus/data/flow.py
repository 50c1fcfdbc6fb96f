"""The collect stage as a Prefect flow: one task run per task-episode, fanned out over workers.

    octopus collect                         # what `dvc repro collect` runs; calls `collect` below
    python flows/collect.py                 # the same flow from flows/ (serve or deploy it from there)

The task runner comes from `collect.runner` (`octopus.orchestration`): `kind: process` (default;
`workers` processes on this machine), `thread`, `dask` (`pip install -e .[dask]`; `address` = a
scheduler, or a local cluster; workers must run with `distributed.worker.daemon: false`, since
episodes start a sandbox process) or `ray` (`pip install -e .[ray]`; address of a cluster, or a local
one). A task run that raises is retried `collect.runner.task_retries` times; a crashed worker process
is replaced by running the jobs it left over in a fresh pool. Episodes that still fail are listed in the manifest and the
metrics, and fail the stage when there are more than `collect.max_failed_episodes`; finished ones
are kept, so a rerun only does what is missing.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Callable

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from octopus import paths
from octopus.agents import make_teacher
from octopus.config import Params, load_params
from octopus.data.collect import CollectError, Job, done, finalize, fingerprint, plan_jobs, read_suite, run_job
from octopus.files import write_json
from octopus.orchestration import Call, Progress, fan_out

ROUNDS = 2  # fresh worker pools for jobs left over by crashed workers


# no Prefect cache: parts on disk are the cache, and hashing every task's inputs costs orchestration CPU
@task(name="collect-episode", retries=2, retry_delay_seconds=1, cache_policy=NO_CACHE, persist_result=False)
def collect_episode(job: Job, params: Params, parts: str) -> dict:
    """Explore one task-episode tree and write its part (a finished one is returned as is)."""
    return run_job(job, params, parts)


def fan_out_jobs(jobs: list[Job], params: Params, parts: Path, progress: Callable[[Job, dict | None], None]) -> list[dict]:
    """Run the jobs over fresh worker pools until none is left (at most ROUNDS pools); failures of the last."""
    logger = get_run_logger()
    # longest first (by the planner's proof length), so no long episode is left alone at the end
    pending = sorted(jobs, key=lambda j: -(j.task.get("plan_steps") or 0))
    calls = [Call(j.name, {"job": j, "params": params, "parts": str(parts)}, j) for j in pending]
    failures = fan_out(collect_episode, calls, params.collect.runner, "collect.runner", rounds=ROUNDS,
                       on_result=lambda c, summary: progress(c.key, summary),
                       on_failure=lambda c, error: progress(c.key, None),
                       finished=lambda c: done(parts, c.key) is not None)
    if failures:
        logger.warning("%d episode(s) failed: %s", len(failures),
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
                parts, params.collect.runner.kind, params.collect.runner.workers, params.collect.teacher)
    t0 = time.perf_counter()
    with _Progress(len(jobs), resumed, show_progress) as progress:
        failures = fan_out_jobs(jobs, params, parts, progress)
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
        "workers": params.collect.runner.workers, "runner": params.collect.runner.kind,
        "teacher": params.collect.teacher, "usage": manifest["usage"],
        "dataset_mb": round(sum(f.stat().st_size for f in paths.DATASET.glob("*.parquet")) / 2**20, 2),
    }


class _Progress(Progress):
    """The collect bar: episodes, with nodes, solved and failed episodes as its info."""

    def __init__(self, total: int, completed: int, show: bool) -> None:
        super().__init__("collect", total, completed, show)
        self.nodes = self.ok = self.failed = 0

    def __call__(self, job: Job, summary: dict | None) -> None:
        if summary is None:
            self.failed += 1
        else:
            self.nodes += summary["nodes"]
            self.ok += bool(summary["success"])
        self.update(int(summary is not None), f"{self.nodes} nodes, {self.ok} solved, {self.failed} failed")
