"""A long stage's progress as a Prefect progress artifact (0-100 %), shown on its run's page in the UI.

    progress = RunProgress("collect", total=len(jobs))   # key octopus-collect-progress
    progress.advance(1)                                    # ... as work ends; progress.done() at the end
    trainer.add_callback(TrainerProgress("sft-octopus"))   # a Hugging Face Trainer's steps (octopus.training.hf)

The artifact belongs to the run named by `OCTOPUS_FLOW_RUN_ID`, which the pipeline flow sets for the
`dvc repro` subprocesses it starts, so every stage's progress shows on the page of the pipeline run a
user started; else to the flow or task run the code runs in (collect's and evaluate's own flows). With
neither, nothing is created: a stage run from a shell stays offline and quiet. Updates are throttled
(a whole percent and `min_interval_s` apart, and always the last), and a Prefect API that cannot be
reached is logged once and never fails the stage.
"""

from __future__ import annotations

import logging
import os
import re
import time
from typing import Any

FLOW_RUN_ENV = "OCTOPUS_FLOW_RUN_ID"  # the pipeline flow run that started this stage (flows/pipeline.py)

log = logging.getLogger(__name__)


def artifact_key(name: str) -> str:
    """'sft@blind' -> 'octopus-sft-blind-progress' (keys take lowercase letters, digits and dashes)."""
    return f"octopus-{re.sub(r'[^a-z0-9]+', '-', name.lower()).strip('-')}-progress"


def _run_ids() -> tuple[Any, Any] | None:
    """(flow run id, task run id) to attach an artifact to, or None when there is no run to show it on.

    The pipeline run that started this stage comes first (a user watches that page), then the flow or task
    run this code runs in."""
    if os.environ.get(FLOW_RUN_ENV) and os.environ.get("PREFECT_API_URL"):  # (the pipeline exports both)
        return os.environ[FLOW_RUN_ENV], None
    from prefect.context import FlowRunContext, TaskRunContext
    task_run, flow_run = TaskRunContext.get(), FlowRunContext.get()
    if task_run is None and flow_run is None:
        return None
    return (flow_run.flow_run.id if flow_run and flow_run.flow_run else None,
            task_run.task_run.id if task_run else None)


class RunProgress:
    """Work done out of `total` as the progress artifact `octopus-NAME-progress` of the current run."""

    def __init__(self, name: str, total: int, done: int = 0, description: str = "",
                 min_interval_s: float = 2.0) -> None:
        self.key, self.total, self.count = artifact_key(name), max(int(total), 1), int(done)
        self.min_interval_s, self.id = min_interval_s, None
        self._sent, self._at = -1.0, 0.0
        ids = _run_ids()
        if ids is None:
            return
        try:  # the client itself: Prefect's helpers warn (deprecated) when the run is another process's
            from prefect.client.orchestration import get_client
            from prefect.client.schemas.actions import ArtifactCreate
            self._client = get_client(sync_client=True)
            flow_run_id, task_run_id = ids
            self.id = self._client.create_artifact(ArtifactCreate(
                key=self.key, type="progress", data=self.percent, flow_run_id=flow_run_id, task_run_id=task_run_id,
                description=description or f"{name}: share done")).id
            self._sent, self._at = self.percent, time.monotonic()
        except Exception as err:  # noqa: BLE001 - progress is for people; the stage goes on without it
            log.warning("no progress artifact %s: %s: %s", self.key, type(err).__name__, err)

    @property
    def percent(self) -> float:
        return round(min(100.0, 100.0 * self.count / self.total), 1)

    def advance(self, n: int = 1) -> None:
        self.set(self.count + n)

    def set(self, count: int) -> None:
        self.count = count
        now = time.monotonic()
        if self.id is None or self.percent == self._sent:
            return
        if self.percent < 100 and (int(self.percent) == int(self._sent) or now - self._at < self.min_interval_s):
            return
        self._send(now)

    def done(self) -> None:
        self.count = max(self.count, self.total)
        if self.id is not None and self._sent != 100.0:
            self._send(time.monotonic())

    def _send(self, now: float) -> None:
        from prefect.client.schemas.actions import ArtifactUpdate
        try:
            self._client.update_artifact(self.id, ArtifactUpdate(data=self.percent))
            self._sent, self._at = self.percent, now
        except Exception as err:  # noqa: BLE001
            log.warning("progress artifact %s not updated (%s: %s); no more updates", self.key,
                        type(err).__name__, err)
            self.id = None
