"""A DVC workspace as the Prefect flows in `flows/` see it: its stages, one `dvc repro` at a time, its reports.

    stages = dvc_stages(root)                    # dvc.yaml order, foreach stages expanded (sft@octopus, ...)
    with workspace_lock(root): repro(...)        # a global concurrency limit of 1 per workspace
    publish_evaluation(root)                     # reports/evaluate.md as a keyed markdown artifact

Only the flows import this module (no stage does), so editing it never invalidates a DVC stage.

One workspace takes one `dvc repro` at a time: DVC itself refuses a second one (its lock file) and a
refused stage would fail a scheduled run; so every flow that runs DVC here first takes the one slot of
a Prefect global concurrency limit named after the workspace, and a second run waits for it (its state
says so in the UI). The limit is created on first use (limit 1); its slot is leased, so a run that
crashes frees it when the lease expires.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from octopus import paths

PROJECT_ROOT = Path(__file__).resolve().parents[2]  # the checkout this package is installed from (editable)
EVAL_ARTIFACT_KEY = "octopus-evaluation"
PROGRESS_ARTIFACT_KEY = "octopus-pipeline-progress"


class WorkspaceError(RuntimeError):
    """A DVC command failed or a stage name is unknown; the message says which and why."""


def resolve_project(path: str | Path | None) -> Path:
    """The DVC project a flow runs in: `path`, or this checkout; an error names a folder without dvc.yaml."""
    root = Path(path).expanduser().resolve() if path else PROJECT_ROOT
    if not (root / "dvc.yaml").is_file():
        raise WorkspaceError(f"project_dir: {root} has no dvc.yaml (expected a DVC project, e.g. {PROJECT_ROOT})")
    return root


def dvc_env() -> dict[str, str]:
    """The environment with this interpreter's bin directory first (dvc stages call `octopus`)."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def dvc(root: Path | str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run `dvc ARGS` in `root` with this interpreter; WorkspaceError with its stderr when `check` and it fails."""
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root, env=dvc_env(),
                          capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise WorkspaceError(f"dvc {' '.join(args)} failed ({proc.returncode}): "
                             f"{(proc.stderr or proc.stdout)[-2000:].strip()}")
    return proc


def dvc_stages(root: Path) -> list[str]:
    """The pipeline's stages in dvc.yaml order, foreach stages expanded (`dvc stage list --name-only`)."""
    return [line.strip() for line in dvc(root, "stage", "list", "--name-only").stdout.splitlines() if line.strip()]


def upstream(root: Path, target: str, known: list[str]) -> list[str]:
    """`target` and every stage it depends on, in dvc.yaml order (`dvc dag --dot TARGET`)."""
    dot = dvc(root, "dag", "--dot", target).stdout
    names = set(re.findall(r'"([^"]+)"', dot))  # node names are quoted in DVC's dot output
    return [s for s in known if s in names]


def select_stages(root: Path, stages: list[str] | None, target: str | None) -> list[str]:
    """The stages a run reproduces: `stages` as given, else `target` and its upstream, else all."""
    known = dvc_stages(root)
    unknown = [s for s in [*(stages or []), *([target] if target else [])] if s not in known]
    if unknown:
        raise WorkspaceError(f"unknown stage(s) {unknown}; dvc.yaml has: {', '.join(known)}")
    if stages:
        return list(stages)
    return upstream(root, target, known) if target else known


# ---------------------------------------------------------------------- one repro at a time
def lock_name(root: Path) -> str:
    """The global concurrency limit of a workspace: `dvc-workspace-<folder>-<hash of its path>`."""
    digest = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:8]
    folder = re.sub(r"[^a-z0-9-]+", "-", root.resolve().name.lower()).strip("-") or "root"
    return f"dvc-workspace-{folder}-{digest}"


def ensure_lock(root: Path) -> str:
    """Create the workspace's global concurrency limit (limit 1) unless the server has it; returns its name."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
    name = lock_name(root)
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            try:
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
            except ObjectAlreadyExists:  # another run created it first
                pass
    return name


@contextmanager
def workspace_lock(root: Path, timeout_s: float | None = None) -> Iterator[str]:
    """Hold the workspace's one slot (waiting for it, at most `timeout_s`; None: as long as it takes)."""
    from prefect.concurrency.sync import concurrency
    name = ensure_lock(root)
    with concurrency(name, occupy=1, timeout_seconds=timeout_s, strict=True):
        yield name


# ---------------------------------------------------------------------- artifacts
def publish_evaluation(root: Path) -> str | None:
    """reports/evaluate.md as the markdown artifact `octopus-evaluation`, linking the rollout report."""
    from prefect.artifacts import create_markdown_artifact
    table = root / paths.EVAL_TABLE
    if not table.is_file():
        return None
    report = (root / paths.EVAL_HTML / "index.html").resolve()
    link = (f"\n\n**Rollout report** (every episode, step by step): [{report}]({report.as_uri()})"
            f" — open it from this machine (`xdg-open {report}`).\n" if report.is_file() else "")
    artifact_id = create_markdown_artifact(markdown=table.read_text() + link, key=EVAL_ARTIFACT_KEY,
                                           description="Task completion per agent and split (reports/evaluate.md)")
    return str(artifact_id)


class StageProgress:
    """A progress artifact for a run's stages: the share done, updated as each stage ends."""

    def __init__(self, total: int) -> None:
        from prefect.artifacts import create_progress_artifact
        self.total, self.done = max(total, 1), 0
        self.id = create_progress_artifact(progress=0.0, key=PROGRESS_ARTIFACT_KEY,
                                           description=f"DVC stages reproduced (of {total})")

    def advance(self) -> float:
        from prefect.artifacts import update_progress_artifact
        self.done += 1
        value = round(100.0 * self.done / self.total, 1)
        if self.id is not None:
            update_progress_artifact(self.id, progress=value)
        return value
