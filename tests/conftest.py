"""Session-wide fixtures: the task suite is built once (about a minute) into a shared cache directory."""

from __future__ import annotations

import os

import pytest

from octopus.config import Params


@pytest.fixture
def no_recompute(monkeypatch):
    """Training must not turn on activation checkpointing (TRL's configs default to it; on the CPU
    presets it recomputes every forward pass for no memory worth saving: ~1.2x slower steps)."""
    from transformers import PreTrainedModel

    def refuse(self, *args, **kwargs):
        raise AssertionError(f"activation checkpointing enabled on {type(self).__name__}")
    monkeypatch.setattr(PreTrainedModel, "activation_checkpointing_enable", refuse, raising=False)
    monkeypatch.setattr(PreTrainedModel, "gradient_checkpointing_enable", refuse)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("octopus-cache")
    old = os.environ.get("OCTOPUS_CACHE")
    os.environ["OCTOPUS_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("OCTOPUS_CACHE", None)
    else:
        os.environ["OCTOPUS_CACHE"] = old


@pytest.fixture(scope="session")
def params() -> Params:
    return Params()


@pytest.fixture(scope="session")
def suite(cache_dir, params):
    from octopus.sim.tasks_stage import load_suite
    return load_suite(params.sim, params.tasks)


@pytest.fixture(scope="session")
def suite_snapshot(suite, tmp_path_factory):
    """data/tasks/tasks.json for the session's suite (what the tasks stage writes)."""
    from octopus.sim.tasks_stage import write_suite
    path = tmp_path_factory.mktemp("suite") / "tasks.json"
    write_suite(suite, path)
    return path


@pytest.fixture(scope="session")
def prefect_api():
    """One Prefect test server for the whole run; subprocesses (the CLI, dvc stages) reach it through PREFECT_API_URL."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness
    with prefect_test_harness(server_startup_timeout=120):
        old = os.environ.get("PREFECT_API_URL")
        os.environ["PREFECT_API_URL"] = PREFECT_API_URL.value()
        yield PREFECT_API_URL.value()
        if old is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = old
