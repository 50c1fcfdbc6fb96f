"""A small kitchen built from real BEHAVIOR-1K content, for semantic tests of the simulator."""

from __future__ import annotations

import pytest

from octopus.sim.goals import Goal
from octopus.sim.layout import LayoutParams, build_world
from octopus.sim.tasks import Task

OBJECTS = {
    "electric_refrigerator.n.01": ["electric_refrigerator.n.01_1"],
    "breakfast_table.n.01": ["breakfast_table.n.01_1"],
    "countertop.n.01": ["countertop.n.01_1"],
    "bacon.n.01": ["bacon.n.01_1"],
    "apple.n.01": ["apple.n.01_1", "apple.n.01_2"],
    "wicker_basket.n.01": ["wicker_basket.n.01_1"],
    "stove.n.01": ["stove.n.01_1"],
    "floor.n.01": ["floor.n.01_1"],
    "agent.n.01": ["agent.n.01_1"],
}
INIT = [
    ["inside", "bacon.n.01_1", "electric_refrigerator.n.01_1"],
    ["ontop", "apple.n.01_1", "breakfast_table.n.01_1"],
    ["ontop", "apple.n.01_2", "countertop.n.01_1"],
    ["ontop", "wicker_basket.n.01_1", "floor.n.01_1"],
    ["ontop", "electric_refrigerator.n.01_1", "floor.n.01_1"],
    ["ontop", "breakfast_table.n.01_1", "floor.n.01_1"],
    ["ontop", "countertop.n.01_1", "floor.n.01_1"],
    ["ontop", "stove.n.01_1", "floor.n.01_1"],
    ["inroom", "electric_refrigerator.n.01_1", "kitchen"],
    ["inroom", "breakfast_table.n.01_1", "kitchen"],
    ["inroom", "countertop.n.01_1", "kitchen"],
    ["inroom", "stove.n.01_1", "kitchen"],
    ["inroom", "floor.n.01_1", "kitchen"],
    ["ontop", "agent.n.01_1", "floor.n.01_1"],
]


def kitchen_task(goal: list, task_id: str = "test_kitchen", instruction: str = "test") -> Task:
    return Task(task_id, "cook_bacon", "Rs_int", instruction, "follow",
                {k: list(v) for k, v in OBJECTS.items()}, [list(x) for x in INIT], goal)


@pytest.fixture
def world():
    return build_world(OBJECTS, INIT, "Rs_int", "test_kitchen", LayoutParams(distractors=0))


@pytest.fixture
def make_goal():
    def make(world, goal: list) -> Goal:
        return Goal("cook_bacon", kitchen_task(goal).problem(), world)
    return make
