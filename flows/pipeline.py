"""Prefect flow that runs the DVC pipeline stage by stage (DVC skips stages whose inputs did not change).

    python flows/pipeline.py            # run once, locally (Prefect starts a temporary server if none is set)
    make ui                             # a real local server + worker with this flow deployed (prefect.yaml):
                                        #   octopus-pipeline/nightly (paused), collect, evaluate; see docs/ui.md

The flow holds no ML logic: each task run is `dvc repro --single-item <stage>`, its output streamed
line by line into the task run's logs; stages call the `octopus` CLI (collect and evaluate report
their own flow runs, one task run per episode, to the same server). The stages and their order come
from dvc.yaml (`dvc stage list`, foreach stages expanded: sft@octopus, sft@blind, ...), so a stage added
there runs here with no edit. Each stage's progress (episodes, training steps) is a progress artifact on
this run's page, next to the run's own (`octopus-pipeline-progress`). A run holds its workspace's one
concurrency slot (`octopus.workspace`):
a second run waits for the first instead of racing it for dvc.lock.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from prefect.settings import PREFECT_API_URL

from octopus.progress import FLOW_RUN_ENV
from octopus.workspace import (EVAL_ARTIFACT_KEY, StageProgress, WorkspaceError, dvc_env, resolve_project,
                               publish_evaluation, select_stages, workspace_lock)


@task(retries=2, retry_delay_seconds=10, task_run_name="dvc-repro-{stage}", cache_policy=NO_CACHE)
def repro(stage: str, root: str) -> int:
    """Reproduce one DVC stage, streaming its output to the logs; raises (and is retried) when it fails."""
    logger = get_run_logger()
    cmd = [sys.executable, "-m", "dvc", "repro", "--single-item", stage]
    env = dvc_env()
    api = os.environ.get("PREFECT_API_URL") or PREFECT_API_URL.value()
    if flow_run.id and api:  # the stage's own progress artifacts (training steps, episodes) go on this run's page
        env.update({FLOW_RUN_ENV: str(flow_run.id), "PREFECT_API_URL": api})
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, bufsize=1)
    tail: list[str] = []
    for line in proc.stdout:  # a line at a time, so a long stage's progress shows while it runs
        line = line.rstrip()
        if line:
            logger.info(line)
            tail = (tail + [line])[-20:]
    if proc.wait() != 0:
        raise WorkspaceError(f"dvc repro {stage} failed ({proc.returncode}): " + "\n".join(tail))
    return proc.returncode


@flow(name="octopus-pipeline")
def pipeline(stages: list[str] | None = None, target: str | None = None, project_dir: str | None = None,
             retries: int = 2) -> list[str]:
    """Reproduce DVC stages in dvc.yaml order: `stages` as listed, else `target` and what it depends on,
    else all. `project_dir`: the DVC project (default: this checkout). `retries`: per failing stage."""
    logger = get_run_logger()
    root = resolve_project(project_dir)
    selected = select_stages(root, stages, target)
    with workspace_lock(root) as lock:
        logger.info("holding %s; stages: %s", lock, ", ".join(selected))
        progress = StageProgress(len(selected))
        for stage in selected:
            repro.with_options(retries=retries)(stage, str(root))
            logger.info("%s done (%.0f%% of this run)", stage, progress.advance())
    if "evaluate" in selected and publish_evaluation(root):
        logger.info("published reports/evaluate.md as the artifact %r", EVAL_ARTIFACT_KEY)
    return selected


if __name__ == "__main__":
    if "--serve" in sys.argv:
        pipeline.serve(name="octopus-pipeline")
    else:
        pipeline()
