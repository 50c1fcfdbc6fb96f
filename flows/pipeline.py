"""Prefect flow that runs the DVC pipeline stage by stage (DVC skips stages whose inputs did not change).

    python flows/pipeline.py            # run once, locally (Prefect starts a temporary server if none is set)
    python flows/pipeline.py --serve    # serve it, so runs and schedules can be started from the Prefect UI
    prefect deploy / serve              # schedule it from the Prefect UI (see infra/)

The flow holds no ML logic: each task is `dvc repro <stage>`; stages call the `octopus` CLI. The stages and
their order come from dvc.yaml (`dvc stage list`, foreach stages expanded: sft@octopus, sft@blind, ...), so
a stage added there runs here with no edit.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from prefect import flow, get_run_logger, task

ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    """The environment with this interpreter's bin directory first (dvc stages call `octopus`)."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def dvc_stages() -> list[str]:
    """The pipeline's stages in dvc.yaml order, foreach stages expanded (`dvc stage list --name-only`)."""
    proc = subprocess.run([sys.executable, "-m", "dvc", "stage", "list", "--name-only"], cwd=ROOT, env=_env(),
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"dvc stage list failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return [line.strip() for line in proc.stdout.splitlines() if line.strip()]


@task(retries=2, retry_delay_seconds=10, task_run_name="dvc-repro-{stage}")
def repro(stage: str) -> str:
    """Reproduce one DVC stage; raises (and is retried) when the stage fails."""
    proc = subprocess.run([sys.executable, "-m", "dvc", "repro", "--single-item", stage], cwd=ROOT, env=_env(),
                          capture_output=True, text=True)
    logger = get_run_logger()
    logger.info(proc.stdout[-4000:])
    if proc.returncode != 0:
        raise RuntimeError(f"dvc repro {stage} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc.stdout


@flow(name="octopus-pipeline")
def pipeline(stages: list[str] | None = None) -> None:
    """Run the pipeline's stages in dvc.yaml order (default: all of them)."""
    known = dvc_stages()
    unknown = [s for s in stages or [] if s not in known]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; dvc.yaml has: {', '.join(known)}")
    for stage in stages or known:
        repro(stage)


if __name__ == "__main__":
    if "--serve" in sys.argv:
        pipeline.serve(name="octopus-pipeline")
    else:
        pipeline()
