"""Renamed training steps (sft.rename_objects): the goal's categories swapped the same way everywhere."""

from __future__ import annotations

import random

from octopus.training import augment

PROMPT = """Inventory: None
Task Goal: put swiss cheese in the camera bag
Original Subtasks:
(1) Move to the countertop_1 and grasp the swiss_cheese_1
Previous Action Code:
def act(robot, env, camera):
    swiss_cheese_1 = registry(env, "swiss_cheese_1")
    MoveBot(env, robot, countertop_1, camera)
Execution Error: No error"""

RESPONSE = """Explain:
The task goal is: put swiss cheese in the camera bag. The next one is to put the swiss_cheese_1 in the camera_bag_1.

Code:
```python
def act(robot, env, camera):
    camera_bag_1 = registry(env, "camera_bag_1")
    swiss_cheese_1 = registry(env, "swiss_cheese_1")
    MoveBot(env, robot, countertop_1, camera)
    EasyGrasp(robot, swiss_cheese_1)
```"""

STEP = {"id": "s1", "prompt": PROMPT, "response": RESPONSE}


def test_only_the_categories_the_goal_spells_out_are_renamed():
    assert augment.goal_categories(PROMPT, RESPONSE) == ["swiss_cheese", "camera_bag"]
    assert augment.goal_categories(PROMPT) == ["swiss_cheese"]  # camera_bag_1 is named in the response only
    assert augment.goal_categories("Task Goal: buy an egg\nMoveBot(env, robot, shelf_1, camera)") == []
    assert augment.goal_categories("no goal line, cheese_1") == []


def test_a_renamed_step_swaps_names_and_goal_words_but_never_code_identifiers():
    new = augment.rename_step(STEP, "prompt", ["soup_ladle", "wok", "dahlia"], random.Random(0))
    (old_a, new_a), (old_b, new_b) = [(c, n) for c, n in zip(["swiss_cheese", "camera_bag"], _mapping(new))]
    text = new["prompt"] + new["response"]
    assert "swiss_cheese" not in text and "camera_bag" not in text and "swiss cheese" not in text
    assert f'registry(env, "{new_a}_1")' in new["response"] and f"{new_b}_1" in new["response"]
    assert f"Task Goal: put {new_a.replace('_', ' ')} in the {new_b.replace('_', ' ')}" in new["prompt"]
    assert "def act(robot, env, camera):" in new["response"] and "countertop_1, camera)" in new["response"]
    assert "countertop_1" in new["prompt"]  # not in the goal: comes from the views, left alone
    assert new["id"] == "s1" and STEP["prompt"] == PROMPT  # a copy; the original step is untouched


def _mapping(step: dict) -> list[str]:
    goal = step["prompt"].split("Task Goal: put ", 1)[1].split("\n", 1)[0]
    first, second = goal.split(" in the ")
    return [first.replace(" ", "_"), second.replace(" ", "_")]


def test_a_share_of_the_steps_is_renamed_deterministically():
    steps = [dict(STEP, id=str(i)) for i in range(200)]
    pool = [f"thing{chr(97 + i)}" for i in range(26)]
    a, n = augment.rename_steps(steps, 0.5, "prompt", pool, seed=3)
    b, m = augment.rename_steps(steps, 0.5, "prompt", pool, seed=3)
    assert a == b and n == m and 70 < n < 130
    assert sum(s["prompt"] != PROMPT for s in a) == n
    assert augment.rename_steps(steps, 0.0, "prompt", pool, seed=3) == (steps, 0)


def test_the_pool_is_behavior_object_categories_without_the_excluded_ones():
    pool = augment.category_pool(exclude={"swiss_cheese", "apple"})
    assert len(pool) > 1000 and "swiss_cheese" not in pool and "apple" not in pool
    assert "wok" in pool or "frying_pan" in pool
    assert all(augment.POOL_WORD.match(c) for c in pool)
