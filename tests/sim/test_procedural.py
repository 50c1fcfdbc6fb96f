"""Procedural training tasks: proven solvable, deterministic for a seed, never leaking evaluation content."""

from __future__ import annotations

import pytest

from octopus.sim.procedural import candidate_literals, head, procedural_tasks
from octopus.sim.tasks import words
from octopus.sim.tasks_stage import layout_params, prove


@pytest.fixture(scope="module")
def generated(suite, params):
    return procedural_tasks(suite.tasks, 40, params.sim, seed=0, prove=prove)


def test_every_task_is_proven_by_the_planner_and_is_a_train_task(generated, params):
    assert len(generated) == 40
    for t in generated:
        assert t.split == "train" and t.source == "procedural" and t.category in ("follow", "reason")
        assert t.plan_steps is not None and 1 <= t.plan_steps <= params.sim.max_steps
        world, goal = t.build(layout_params(params.sim))
        assert not goal.satisfied(), t.id  # a task, not a free success
    assert len({t.id for t in generated}) == 40


def test_the_same_seed_gives_the_same_tasks_and_another_seed_others(generated, suite, params):
    again = procedural_tasks(suite.tasks, 40, params.sim, seed=0, prove=prove)
    assert [(t.id, t.goal, t.instruction) for t in again] == [(t.id, t.goal, t.instruction) for t in generated]
    other = procedural_tasks(suite.tasks, 40, params.sim, seed=1, prove=prove)
    assert [t.goal for t in other] != [t.goal for t in generated]


def test_no_evaluation_activity_goal_or_unseen_scene(generated, suite, params):
    evaluation = suite.evaluation()
    assert not {t.activity for t in generated} & {t.activity for t in evaluation}
    assert not {t.scene for t in generated} & set(params.tasks.unseen_scenes)
    eval_goals = {repr(sorted(map(repr, t.goal))) for t in evaluation}
    assert not {repr(sorted(map(repr, t.goal))) for t in generated} & eval_goals


def test_instructions_name_the_goal_objects_or_a_purpose(generated):
    assert any(t.category == "reason" for t in generated) and any(t.category == "follow" for t in generated)
    assert any(len(t.goal) == 2 for t in generated) and any(len(t.goal) == 1 for t in generated)
    for t in generated:
        for lit in t.goal:
            assert words(lit[1]) in t.instruction, (t.instruction, lit)


def test_candidates_only_ask_what_the_functions_can_reach(suite, params):
    world = suite.select("train")[0].build(layout_params(params.sim))[0]
    by_bddl = {o.bddl: o for o in world.objects}
    for lit in candidate_literals(world):
        o = by_bddl[lit[1]]
        if lit[0] in ("cooked", "frozen", "hot"):
            assert o.kind == "item" and "cookable" in o.abilities, lit  # food, not a heated cabinet
        elif lit[0] == "inside":
            assert by_bddl[lit[2]].container and o.kind == "item", lit
        elif lit[0] == "ontop":
            assert by_bddl[lit[2]].kind == "furniture" and o.kind == "item", lit


def test_none_asked_gives_none(suite, params):
    assert procedural_tasks(suite.tasks, 0, params.sim, seed=0, prove=prove) == []


def test_short_names_change_only_the_words_and_name_one_object_of_the_scene(generated, suite, params):
    short = procedural_tasks(suite.tasks, 40, params.sim, seed=0, prove=prove, short_names=1.0)
    assert [(t.id, t.goal) for t in short] == [(t.id, t.goal) for t in generated]  # same goals, same proofs
    shortened = 0
    for t in short:
        world = t.build(layout_params(params.sim))[0]
        for lit in t.goal:
            for inst in lit[1:]:
                if words(inst) in t.instruction:
                    continue
                shortened += 1
                assert f" {head(inst)}" in f" {t.instruction}", (t.instruction, inst)
                # the short name is one object's: no other object of the scene ends with that word
                assert [o.bddl for o in world.objects if head(o.bddl) == head(inst)] == [inst], (t.id, inst)
    assert shortened > 0


def test_words_are_single_spaced():
    assert words("yogurt__carton.n.01_1") == "yogurt carton"
    assert words("bottle__of__milk.n.01_1") == "bottle of milk" and head("bottle__of__milk.n.01_1") == "bottle"
    assert head("swiss_cheese.n.01_1") == "cheese" and head("apple.n.01_1") == "apple"
