"""Prefect flow for an experiment sweep: queue `dvc exp run` variants of params.yaml and run them.

    prefect deployment run octopus-sweep/sweep -p 'overrides=["sft.epochs=1,2"]'
    python flows/sweep.py sft.epochs=1,2          # the same, once, without a deployment

Each override is one `-S` of `dvc exp run --queue`, so DVC's own grid syntax applies: `sft.epochs=1,2`
with `sft.learning_rate=0.001,0.002` queues four experiments. They run with `dvc queue start` (`jobs`
at a time), each in its own temporary copy of the repository (the workspace and its dvc.lock are left
alone); the flow waits for them, logs each one's output, and publishes `dvc exp show` as the
`octopus-sweep` artifact. Experiments see only what git (or DVC) tracks: commit code changes first. Compare them with
`dvc exp show` (or the project's comparison command), apply one with `dvc exp apply NAME`.
"""

from __future__ import annotations

import re
import sys
import time

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from octopus.workspace import WorkspaceError, dvc, resolve_project, workspace_lock

DONE = {"Success", "Failed"}  # final states in `dvc queue status`


@task(task_run_name="queue-{overrides}", cache_policy=NO_CACHE)
def queue(overrides: list[str], root: str) -> list[str]:
    """`dvc exp run --queue -S ...`: the names of the experiments it queued (several for a grid)."""
    proc = dvc(root, "exp", "run", "--queue", *[a for o in overrides for a in ("-S", o)])
    names = re.findall(r"Queued experiment '([^']+)'", proc.stdout + proc.stderr)
    if not names:
        raise WorkspaceError(f"dvc exp run --queue queued nothing: {proc.stdout[-1000:]} {proc.stderr[-1000:]}")
    get_run_logger().info("queued %s", ", ".join(names))
    return names


def queue_status(root: str) -> dict[str, str]:
    """{experiment name: status} from `dvc queue status` (Queued, Running, Success, Failed)."""
    rows = dvc(root, "queue", "status").stdout.splitlines()
    return {cols[1]: cols[-1] for cols in (r.split() for r in rows[1:]) if len(cols) >= 4}


@task(task_run_name="run-{names}", cache_policy=NO_CACHE)
def run_queue(names: list[str], root: str, jobs: int, poll_s: float) -> dict[str, str]:
    """`dvc queue start -j JOBS`, then wait until every named experiment ends; logs each one's output."""
    logger = get_run_logger()
    dvc(root, "queue", "start", "-j", str(jobs))
    states: dict[str, str] = {}
    while True:
        current = {n: s for n, s in queue_status(root).items() if n in names}
        for name, state in current.items():
            if states.get(name) != state:
                logger.info("%s: %s", name, state)
        states.update(current)
        if all(states.get(n) in DONE for n in names):
            break
        time.sleep(poll_s)
    for name in names:
        logs = dvc(root, "queue", "logs", name, check=False)
        logger.info("--- %s (%s) ---\n%s", name, states[name], (logs.stdout or logs.stderr)[-6000:])
    failed = [n for n in names if states[n] != "Success"]
    if failed:
        raise WorkspaceError(f"experiment(s) failed: {', '.join(failed)} (dvc queue logs NAME)")
    return states


@flow(name="octopus-sweep")
def sweep(overrides: list[str] = ["sft.epochs=1,2"],  # noqa: B006 - Prefect parameter
          jobs: int = 1, project_dir: str | None = None, poll_s: float = 5.0) -> dict[str, str]:
    """Queue `dvc exp run -S` variants (one `-S` per override; `a=x,y` is a grid) and run them `jobs` at a time."""
    root = resolve_project(project_dir)
    if not overrides:
        raise WorkspaceError("overrides: give at least one params.yaml override, e.g. sft.epochs=1,2")
    with workspace_lock(root):
        names = queue(list(overrides), str(root))
        states = run_queue(names, str(root), jobs, poll_s)
    table = dvc(root, "exp", "show", "--md", "--only-changed", "--no-pager", check=False).stdout
    if table.strip():
        create_markdown_artifact(markdown=table, key="octopus-sweep",
                                 description=f"dvc exp show after the sweep {list(overrides)}")
    return states


if __name__ == "__main__":
    sweep(overrides=sys.argv[1:] or ["sft.epochs=1,2"])
