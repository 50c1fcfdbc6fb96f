"""The task suite: size, splits without leakage, the paper's evaluation shape, solvability."""

import re
from collections import Counter

from octopus.sim.tasks import _fix_literal, goal_from_targets


def test_suite_size_and_shape(suite):
    assert len(suite.tasks) >= 400
    ev = suite.evaluation()
    assert len(ev) == 60 and len(suite.select("eval_seen")) == 45 and len(suite.select("eval_unseen")) == 15
    assert Counter(t.category for t in ev) == {"follow": 45, "reason": 15}
    assert all(t.plan_steps is not None and t.plan_steps <= 10 for t in suite.tasks)
    assert suite.excluded, "excluded tasks are counted with their reasons"


def test_no_leakage(suite, params):
    train = suite.select("train")
    train_scenes = {t.scene for t in train}
    assert not train_scenes & {t.scene for t in suite.select("eval_unseen")}
    assert not train_scenes & set(params.tasks.unseen_scenes)
    assert {t.scene for t in suite.select("eval_seen")} <= train_scenes
    ids = [t.id for t in suite.tasks]
    assert len(ids) == len(set(ids))


def test_every_task_builds_with_its_init_holding(suite, params):
    from octopus.sim.tasks_stage import layout_params
    for t in suite.evaluation():
        world, goal = t.build(layout_params(params.sim))
        assert not goal.satisfied()
        assert len(world) <= 80


def test_malformed_target_states_are_repaired_or_rejected():
    assert _fix_literal(["cookie.n.01_1inside", "carton.n.02_1", "1"]) == ["cookie.n.01_1", "inside", "carton.n.02_1", "1"]
    assert _fix_literal(["ice_cube.n.01", "inside", "water_glass.n.02_1，1"]) == ["ice_cube.n.01", "inside", "water_glass.n.02_1", "1"]
    assert _fix_literal([""]) is None
    objects = {"apple.n.01": ["apple.n.01_1"], "bowl.n.01": ["bowl.n.01_1"]}
    assert goal_from_targets([["apple.n.01_1", "inside", "bowl.n.01_1"]], objects) == [["inside", "apple.n.01_1", "bowl.n.01_1"]]
    ex = goal_from_targets([["apple.n.01", "inside", "bowl.n.01_1", "1"]], objects)
    assert ex[0][0] == "exists"
    import pytest
    with pytest.raises(ValueError, match="not in the activity's scope"):
        goal_from_targets([["zebra_crossing.n.01_1", "inside", "bowl.n.01_1", "1"]], objects)
    with pytest.raises(ValueError, match="unknown state"):
        goal_from_targets([["apple.n.01_1", "shiny", "1"]], objects)


def test_behavior_task_instructions_name_categories_in_words(suite):
    """Tasks from BEHAVIOR-1K goals read `put mug in the dishwasher`, never the BDDL variable `?mug`."""
    behavior = [t for t in suite.tasks if t.source == "behavior"]
    assert behavior and not [t.instruction for t in behavior if "?" in t.instruction or "." in t.instruction]
    assert all(re.fullmatch(r"[a-z][a-z ]*[a-z]", t.instruction) for t in behavior), behavior[0].instruction
