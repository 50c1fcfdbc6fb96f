"""Prefect flow that runs the DVC pipeline stage by stage (DVC skips stages whose inputs did not change).

    python flows/pipeline.py            # run once, locally (Prefect starts a temporary server if none is set)
    python flows/pipeline.py --serve    # serve it, so runs and schedules can be started from the Prefect UI
    prefect deploy / serve              # schedule it from the Prefect UI (see infra/)

The flow holds no ML logic: each task is `dvc repro <stage>`; stages call the `octopus` CLI.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prefect import flow, get_run_logger, task

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("tasks", "collect", "validate", "sft", "evaluate")  # later: reward, rlef before evaluate


@task(retries=2, retry_delay_seconds=10, task_run_name="dvc-repro-{stage}")
def repro(stage: str) -> str:
    """Reproduce one DVC stage; raises (and is retried) when the stage fails."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run([sys.executable, "-m", "dvc", "repro", "--single-item", stage], cwd=ROOT, env=env,
                          capture_output=True, text=True)
    logger = get_run_logger()
    logger.info(proc.stdout[-4000:])
    if proc.returncode != 0:
        raise RuntimeError(f"dvc repro {stage} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc.stdout


@flow(name="octopus-pipeline")
def pipeline(stages: tuple[str, ...] = STAGES) -> None:
    """Run the pipeline's stages in order."""
    for stage in stages:
        repro(stage)


if __name__ == "__main__":
    if "--serve" in sys.argv:
        pipeline.serve(name="octopus-pipeline")
    else:
        pipeline()
