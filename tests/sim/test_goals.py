"""Goal evaluation through bddl's machinery against hand-built states."""

from octopus.sim.actions import apply


def test_unary_and_negated_goals(world, make_goal):
    g = make_goal(world, [["cooked", "bacon.n.01_1"], ["not", ["open", "electric_refrigerator.n.01_1"]]])
    assert not g.satisfied() and g.progress() == 0.5
    world.set("cooked", world.idx("bacon_1"), True)
    assert g.satisfied() and g.progress() == 1.0
    world.set("open", world.idx("electric_refrigerator_1"), True)
    assert not g.satisfied()


def test_kinematic_goal_follows_geometry(world, make_goal):
    g = make_goal(world, [["ontop", "apple.n.01_1", "countertop.n.01_1"]])
    assert not g.satisfied()
    apply(world, "MoveBot", ("breakfast_table_1",))
    apply(world, "EasyGrasp", ("apple_1",))
    assert not g.satisfied()
    apply(world, "MoveBot", ("countertop_1",))
    apply(world, "put_ontop", ("apple_1", "countertop_1"))
    assert g.satisfied()


def test_quantified_goal_any_instance(world, make_goal):
    g = make_goal(world, [["exists", ["?a", "-", "apple.n.01"], ["ontop", "?a", "countertop.n.01_1"]]])
    assert g.satisfied(), "apple_2 starts on the countertop"
    g2 = make_goal(world, [["forall", ["?a", "-", "apple.n.01"], ["ontop", "?a", "countertop.n.01_1"]]])
    assert not g2.satisfied()


def test_substance_facts_and_grasped(world, make_goal):
    g = make_goal(world, [["grasped", "agent.n.01_1", "apple.n.01_1"]])
    assert not g.satisfied()
    apply(world, "MoveBot", ("breakfast_table_1",))
    apply(world, "EasyGrasp", ("apple_1",))
    assert g.satisfied()
    g2 = make_goal(world, [["covered", "breakfast_table.n.01_1", "apple.n.01_2"]])
    assert not g2.satisfied()
    world.facts.add(("covered", world.idx("breakfast_table_1"), world.idx("apple_2")))
    assert g2.satisfied()
