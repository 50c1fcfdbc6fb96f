"""Tests for octopus.model.postprocess: grounding unknown object names to the scene's objects."""
from __future__ import annotations

import random

import pytest

from octopus.model.postprocess import Grounding, ground_names, resolve
from octopus.protocol import Response, TargetState, parse_response

SAMPLE = '''Explain:
The next subtask is to grasp the rag.

Subtasks:
(1) Grasp the rag_3

Code:
```python
def act(robot, env, camera):
    # Subtask 1: Grasp the rag_3
    rag_3 = registry(env, "rag_3")
    EasyGrasp(robot, rag_3)
    donothing(env)
```

Target States:
(1) Inventory: rag_3
'''

SCENE = {"rag_1": 2.5, "rag_2": 0.7, "cabinet_1": 1.2, "electric_refrigerator_1": 3.0, "bacon_1": 3.1,
         "apple_1": 4.0, "apple_2": 1.5, "countertop_1": 1.0}

CODE = '''def act(robot, env, camera):
    # Subtask 2: Put the bacon from the refridgerator_1 into the cabinet
    refridgerator_1 = registry(env, "refridgerator_1")
    bacon_2 = registry(env, 'bacon_2')
    cabinet_1 = registry(env, "cabinet_1")
    open(robot, refridgerator_1)
    donothing(env)
    EasyGrasp(robot, bacon_2)
    donothing(env)
    put_inside(robot, bacon_2, cabinet_1)
    donothing(env)'''


def full_response() -> str:
    return Response(
        explain="The bacon_2 is in the refridgerator_1; open it and move the bacon into the cabinet.",
        subtasks=("Move to the refridgerator_1", "Put the bacon_2 into the cabinet_1"),
        code=CODE, inventory=(),
        target_states=(TargetState("refridgerator_1", "openable", None, True),
                       TargetState("bacon_2", "inside", "cabinet_1", True),
                       TargetState("robot", "nextto", "refridgerator_1", True)),
    ).render()


def test_unknown_index_goes_to_nearest_instance_of_same_category():
    g = ground_names(SAMPLE, SCENE)
    assert g.mapping == {"rag_3": "rag_2"}  # rag_2 (0.7 m) is nearer than rag_1 (2.5 m)
    assert g.unresolved == ()
    assert "rag_3" not in g.text
    assert 'rag_2 = registry(env, "rag_2")' in g.text and "EasyGrasp(robot, rag_2)" in g.text
    assert "(1) Grasp the rag_2" in g.text and "(1) Inventory: rag_2" in g.text
    assert "grasp the rag." in g.text  # the bare word "rag" is not an object name: untouched


def test_distances_decide_between_instances():
    assert ground_names(SAMPLE, {**SCENE, "rag_1": 0.1}).mapping == {"rag_3": "rag_1"}
    # Equal distances: the tie is broken by name, so the result is deterministic.
    assert resolve("rag_9", {"rag_2": 1.0, "rag_1": 1.0}) == "rag_1"


def test_misspelled_category_and_consistent_rewrite():
    text = full_response()
    g = ground_names(text, SCENE)
    assert g.mapping == {"refridgerator_1": "electric_refrigerator_1", "bacon_2": "bacon_1"}
    assert g.unresolved == ()
    assert "refridgerator_1" not in g.text and "bacon_2" not in g.text
    r = parse_response(g.text)  # still parses, and code and target states agree
    assert 'electric_refrigerator_1 = registry(env, "electric_refrigerator_1")' in r.code
    assert "bacon_1 = registry(env, 'bacon_1')" in r.code and "open(robot, electric_refrigerator_1)" in r.code
    assert r.target_states == (TargetState("electric_refrigerator_1", "openable", None, True),
                               TargetState("bacon_1", "inside", "cabinet_1", True),
                               TargetState("robot", "nextto", "electric_refrigerator_1", True))
    assert r.subtasks == ("Move to the electric_refrigerator_1", "Put the bacon_1 into the cabinet_1")
    assert r.explain.startswith("The bacon_1 is in the electric_refrigerator_1;")


def test_exact_names_state_words_and_robot_untouched():
    text = full_response()
    exact = {**SCENE, "refridgerator_1": 9.0, "bacon_2": 9.0}
    g = ground_names(text, exact)
    assert g == Grounding(text, {}, ())
    # Even if the scene had objects named like state words, those words are never candidates.
    g = ground_names(text, {**exact, "opener_1": 0.1, "inside_1": 0.1, "robot_1": 0.1, "rob_1": 0.1})
    assert g.text == text and g.mapping == {}
    assert ground_names(SAMPLE.replace("rag_3", "Rag_2"), SCENE).mapping == {"Rag_2": "rag_2"}  # case only


def test_unrelated_name_is_unresolved_and_unchanged():
    text = SAMPLE.replace("rag_3", "spaceship_1")
    g = ground_names(text, SCENE)
    assert g.text == text and g.mapping == {} and g.unresolved == ("spaceship_1",)
    both = full_response().replace("bacon_2", "spaceship_1")
    g = ground_names(both, SCENE)
    assert g.mapping == {"refridgerator_1": "electric_refrigerator_1"} and g.unresolved == ("spaceship_1",)
    assert g.text.count("spaceship_1") == both.count("spaceship_1")
    # A stricter threshold leaves the misspelling unresolved too.
    assert ground_names(full_response(), SCENE, min_similarity=0.9).unresolved == ("refridgerator_1",)


def test_whole_word_only():
    text = SAMPLE.replace("donothing(env)", "my_rag_3 = rag_33\n    donothing(env)")
    g = ground_names(text, SCENE)
    assert "my_rag_3 = rag_33" in g.text and "rag_2 = registry" in g.text


def test_unparseable_text_is_still_grounded():
    text = 'blah\nrag_9 = registry(env, "rag_9")\nTarget states:\n- apple_7, ontop, countertop_2, 1 # note\n'
    with pytest.raises(ValueError):
        parse_response(text)
    g = ground_names(text, SCENE)
    assert g.mapping == {"rag_9": "rag_2", "apple_7": "apple_2", "countertop_2": "countertop_1"}
    assert "- apple_2, ontop, countertop_1, 1 # note" in g.text


@pytest.mark.parametrize("text", ["", "   \n", "garbage ``` (", "Target States:\n(1) Inventory: None\n",
                                  "registry(env, \"\")", "registry(", "\x00\ufffd" * 50])
def test_garbage_returned_unchanged(text):
    assert ground_names(text, SCENE) == Grounding(text, {}, ())


def test_never_raises_on_random_text():
    rng = random.Random(0)
    alphabet = list('abc_123 ,()"\'\n:`') + ["registry(env, ", "Target States:", "(a) ", "Inventory:", "rag_"]
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        g = ground_names(text, SCENE)
        assert isinstance(g.text, str) and set(g.mapping.values()) <= set(SCENE)
    assert ground_names(SAMPLE, {}).unresolved == ("rag_3",)  # empty scene: nothing to map to
