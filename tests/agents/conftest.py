"""Fixtures for the agent tests: a live OpenAI-compatible server and a cheap kitchen env, as a text-only teacher sees it."""

from __future__ import annotations

import pytest

from octopus.config import SimParams

from tests.agents.openai_server import FakeOpenAI
from tests.helpers import COOK_BACON, kitchen_env

SIM = SimParams(sandbox_timeout_s=1.0)


@pytest.fixture
def openai_server():
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def make_kitchen():
    """`make(task_id)` -> (env, obs, info): the kitchen reset, no views and no privileged state (what an LLM reads)."""
    envs = []

    def make(task_id: str = "llm_kitchen"):
        env, obs, info = kitchen_env(COOK_BACON, task_id, "cook the bacon", sim=SIM, views=False, privileged=False)
        envs.append(env)
        return env, obs, info
    yield make
    for env in envs:
        env.close()


@pytest.fixture
def kitchen(make_kitchen):
    """(env, obs, info) of a freshly reset kitchen."""
    return make_kitchen()


@pytest.fixture
def shown(kitchen) -> tuple[dict, dict]:
    """(obs, info): what the env showed at the start of the kitchen episode."""
    return kitchen[1], kitchen[2]
