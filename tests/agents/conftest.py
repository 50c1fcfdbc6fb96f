"""Fixtures for the agent tests: a live OpenAI-compatible server and a cheap kitchen episode."""

from __future__ import annotations

import pytest

from octopus.config import SimParams
from octopus.sim.episode import Episode

from tests.agents.openai_server import FakeOpenAI
from tests.helpers import kitchen_task

SIM = SimParams(sandbox_timeout_s=1.0)
GOAL = [["cooked", "bacon.n.01_1"]]


@pytest.fixture
def openai_server():
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def make_episode():
    def make(task_id: str = "llm_kitchen") -> Episode:
        return Episode(kitchen_task(GOAL, task_id, "cook the bacon"), SIM)
    return make


@pytest.fixture
def episode(make_episode) -> Episode:
    return make_episode()
