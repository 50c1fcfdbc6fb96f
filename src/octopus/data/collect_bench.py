"""Benchmarks of the collect stage (`octopus bench collect`; numbers, not tests).

steps_per_min[w]: tree nodes (steps, rendering and PNG encoding included) per minute with the oracle
    teacher over the Prefect fan-out with `w` workers of the runner (`--runner`: process pool by
    default, or a local Dask cluster), wall clock from submission (pool or cluster start-up included)
    to the last episode; the median of `repeats` runs over the same episodes.
scaling: steps_per_min[2] / steps_per_min[1].
first_episode_s[w]: submission to the first finished episode (worker start-up: spawn, imports, sandbox).
steady_steps_per_min[w]: the rate once every worker has finished an episode (start-up excluded);
    steady_scaling is its 2-worker / 1-worker ratio.
paper_scale_estimate_min: the paper preset's episodes x the measured nodes per episode, at the
    fastest measured rate.
dvc_repro_noop_s: `dvc repro` when nothing changed (median).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from prefect import flow

from octopus import paths
from octopus.config import Params, RunnerParams
from octopus.data.collect import plan_jobs, read_suite


def _bench_jobs(params: Params, episodes: int) -> list:
    """The first `episodes` of every train task once (0: all of them, the laptop preset's set)."""
    jobs = plan_jobs(read_suite(paths.SUITE_TASKS), params)
    return jobs[:episodes] if episodes > 0 else jobs


# Its parameters are small on purpose, as the stage's flow's are: Prefect copies a flow's parameters into
# every task run's context (pickled per submission, validated in the worker), so a flow that took the
# job list would cost O(episodes) per episode and time Prefect rather than collection.
@flow(name="collect-bench")
def _timed_fan_out(params: Params, episodes: int, parts: str) -> tuple[float, list[tuple[float, int]]]:
    """Seconds from submission to the last episode, and (seconds, nodes) of each finished episode."""
    from octopus.data.flow import fan_out_jobs
    jobs = _bench_jobs(params, episodes)
    finished: list[tuple[float, int]] = []
    t0 = time.perf_counter()
    failures = fan_out_jobs(jobs, params, Path(parts),
                        lambda job, summary: finished.append((time.perf_counter() - t0, summary["nodes"])))
    if failures:
        raise RuntimeError(f"benchmark episodes failed: {failures[:3]}")
    return time.perf_counter() - t0, finished


def _steady(finished: list[tuple[float, int]], workers: int) -> tuple[float, float]:
    """(seconds to the first finished episode, steps/min after each worker finished its first one)."""
    finished = sorted(finished)
    if len(finished) <= workers:
        return finished[0][0], 0.0
    start, end = finished[workers - 1][0], finished[-1][0]
    nodes = sum(n for _, n in finished[workers:])
    return finished[0][0], 60 * nodes / (end - start) if end > start else 0.0


def run_collect_bench(params: Params, workers: list[int], episodes: int, repeats: int, kind: str = "process") -> dict:
    """`kind`: the runner (process | thread | dask | ray; a local pool or cluster of `w` workers, started per run)."""
    from octopus.data.collect import done
    from octopus.orchestration import check_runner, ensure_prefect_api
    runner = RunnerParams(kind=kind, task_retries=0)
    check_runner(runner, "bench collect --runner")
    ensure_prefect_api()  # the temporary server as `octopus collect` starts it, before the first flow
    c = replace(params.collect, teacher="oracle", runner=runner, max_tasks=0, episodes_per_task=1)
    base = replace(params, collect=c)
    jobs = _bench_jobs(base, episodes)
    report: dict = {"runner": kind, "episodes": len(jobs), "render_size": params.render.size,
                    "explore": c.oracle.explore}
    nodes = 0
    for w in workers:
        rates, firsts, steadies = [], [], []
        for _ in range(repeats):
            with tempfile.TemporaryDirectory(prefix="octopus-bench-") as tmp:
                seconds, finished = _timed_fan_out(replace(base, collect=replace(c, runner=replace(runner, workers=w))),
                                                   episodes, tmp)
                nodes = sum(done(Path(tmp), j)["nodes"] for j in jobs)
            rates.append(60 * nodes / seconds)
            first, steady = _steady(finished, w)
            firsts.append(first)
            steadies.append(steady)
        report[f"steps_per_min_{w}w"] = round(statistics.median(rates), 1)
        report[f"steps_per_min_{w}w_runs"] = [round(r, 1) for r in rates]
        report[f"first_episode_s_{w}w"] = round(statistics.median(firsts), 2)
        report[f"steady_steps_per_min_{w}w"] = round(statistics.median(steadies), 1)
    report["nodes"] = nodes
    if 1 in workers and 2 in workers:
        report["scaling_2w_over_1w"] = round(report["steps_per_min_2w"] / report["steps_per_min_1w"], 3)
        report["steady_scaling_2w_over_1w"] = round(
            report["steady_steps_per_min_2w"] / max(report["steady_steps_per_min_1w"], 1e-9), 3)
    paper = replace(base, collect=replace(c, preset="paper", max_tasks=None, episodes_per_task=None))
    paper_jobs = len(plan_jobs(read_suite(paths.SUITE_TASKS), paper))
    best = max(report[f"steps_per_min_{w}w"] for w in workers)
    report["paper_scale_episodes"] = paper_jobs
    report["paper_scale_nodes_estimate"] = round(paper_jobs * nodes / max(len(jobs), 1))
    report["paper_scale_estimate_min"] = round(report["paper_scale_nodes_estimate"] / best, 1)
    return report


def time_noop_repro(repeats: int) -> dict:
    """Median wall time of `dvc repro` when nothing changed (the first call brings everything up to date)."""
    cmd = [sys.executable, "-m", "dvc", "repro"]
    env_path = f"{Path(sys.executable).parent}"
    import os
    env = {**os.environ, "PATH": f"{env_path}{os.pathsep}{os.environ.get('PATH', '')}"}
    first = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if first.returncode != 0:
        return {"error": first.stderr[-500:]}
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        times.append(time.perf_counter() - t0)
        if "changed" in proc.stdout.lower() and "up to date" not in proc.stdout.lower():
            return {"error": "dvc repro was not a no-op: " + proc.stdout[-500:]}
    return {"median_s": round(statistics.median(times), 2), "runs_s": [round(t, 2) for t in times]}
