"""A small kitchen built from real BEHAVIOR-1K content, for semantic tests of the simulator."""

from __future__ import annotations

import pytest

from octopus.sim.goals import Goal
from octopus.sim.layout import LayoutParams, build_world

from tests.helpers import INIT, OBJECTS, kitchen_task


@pytest.fixture
def world():
    return build_world(OBJECTS, INIT, "Rs_int", "test_kitchen", LayoutParams(distractors=0))


@pytest.fixture
def make_goal():
    def make(world, goal: list) -> Goal:
        return Goal("cook_bacon", kitchen_task(goal).problem(), world)
    return make
