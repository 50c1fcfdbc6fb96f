"""The privileged planner finds short real plans and leaves the world untouched."""

from octopus.sim.actions import apply
from octopus.sim.planner import plan


def test_plan_reaches_goal_and_restores_world(world, make_goal):
    g = make_goal(world, [["cooked", "bacon.n.01_1"], ["inside", "apple.n.01_1", "wicker_basket.n.01_1"]])
    key = world.state_key()
    result = plan(world, g)
    assert result.solved and len(result.steps) <= 6
    assert world.state_key() == key
    for step in result.steps:
        for fn, args in step:
            apply(world, fn, args)
    assert g.satisfied()


def test_unsolvable_within_budget(world, make_goal):
    g = make_goal(world, [["inside", "apple.n.01_1", "wicker_basket.n.01_1"], ["cooked", "bacon.n.01_1"]])
    assert not plan(world, g, max_steps=1).solved
    g2 = make_goal(world, [["open", "breakfast_table.n.01_1"]])  # a table cannot be opened
    assert not plan(world, g2).solved
