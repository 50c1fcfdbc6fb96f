"""Progress artifacts: a stage's share done on its run's page in the Prefect UI, and silence without a run."""

from __future__ import annotations

import pytest

from octopus.progress import FLOW_RUN_ENV, RunProgress, artifact_key
from tests.helpers import artifacts


def test_keys_are_what_prefect_accepts():
    assert artifact_key("sft@blind") == "octopus-sft-blind-progress"
    assert artifact_key("rlef-ppo-model") == "octopus-rlef-ppo-model-progress"
    assert artifact_key("Collect") == "octopus-collect-progress"


def test_outside_a_run_nothing_is_created_and_nothing_fails(monkeypatch):
    monkeypatch.delenv(FLOW_RUN_ENV, raising=False)
    p = RunProgress("collect", 4)
    p.advance(2)
    p.done()
    assert p.id is None and p.percent == 100.0
    monkeypatch.setenv(FLOW_RUN_ENV, "0b6f5c2e-0000-4000-8000-000000000000")  # a run id without an API to reach
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    assert RunProgress("sft", 3).id is None


def _artifacts(flow_run_id) -> dict:
    return {a.key: a for a in artifacts(flow_run_id)}


@pytest.mark.slow
def test_a_flow_runs_progress_is_throttled_and_ends_at_100(prefect_api, monkeypatch):
    from prefect import flow
    from prefect.runtime import flow_run
    monkeypatch.delenv(FLOW_RUN_ENV, raising=False)
    sent = []

    @flow
    def work():
        p = RunProgress("evaluate", 200, min_interval_s=0.0)
        real = p._send
        p._send = lambda now: sent.append(p.percent) or real(now)
        for i in range(1, 201):
            p.set(i)
        return flow_run.id

    run_id = work()
    art = _artifacts(run_id)["octopus-evaluate-progress"]
    assert art.type == "progress" and art.data == 100.0
    assert sent == [float(k) for k in range(1, 101)]  # one update per whole percent, not 200


@pytest.mark.slow
def test_a_stage_outside_the_flow_reports_to_the_pipeline_run_named_in_its_env(prefect_api, monkeypatch, tmp_path):
    """What a `dvc repro` subprocess of the pipeline does: a Trainer's steps land on the pipeline run's page."""
    import torch
    from prefect import flow
    from prefect.runtime import flow_run
    from transformers import Trainer, TrainingArguments

    from octopus.training.hf import quiet

    @flow
    def pipeline():
        return flow_run.id
    run_id = pipeline()
    monkeypatch.setenv(FLOW_RUN_ENV, str(run_id))

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Linear(2, 1)

        def forward(self, x, labels=None):
            return {"loss": ((self.w(x).squeeze(-1) - labels) ** 2).mean()}
    data = [{"x": torch.randn(2), "labels": torch.tensor(1.0)} for _ in range(24)]
    trainer = quiet(Trainer(model=Tiny(), train_dataset=data, args=TrainingArguments(
        output_dir=str(tmp_path), per_device_train_batch_size=4, num_train_epochs=1, report_to=[], use_cpu=True,
        save_strategy="no", disable_tqdm=True)), progress="sft@octopus")
    trainer.train()
    art = _artifacts(run_id)["octopus-sft-octopus-progress"]
    assert art.type == "progress" and art.data == 100.0 and str(art.flow_run_id) == str(run_id)
