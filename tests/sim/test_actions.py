"""Each agent function's effect and each violated precondition's message."""

import pytest

from octopus.sim.actions import CAMERA, ENV, ROBOT, ActionError, Api, apply, fits_inside


def idx(w, name):
    return w.idx(name)


def go_near(world, name: str) -> None:
    """MoveBot to the furniture nearest to the named object (small objects stand beside furniture)."""
    o = world.idx(name)
    f = min(world.furniture(), key=lambda f: world.distance(f, o))
    apply(world, "MoveBot", (world.name(f),))


def err(world, fn, *args) -> str:
    with pytest.raises(ActionError) as e:
        apply(world, fn, args)
    return str(e.value)


def test_movebot_only_to_furniture_and_puts_robot_next_to_it(world):
    msg = err(world, "MoveBot", "apple_1")
    assert "can only move to large objects" in msg and "breakfast_table_1" in msg
    apply(world, "MoveBot", ("breakfast_table_1",))
    assert world.holds("nextto", 0, idx(world, "breakfast_table_1"))
    assert world.robot_at == idx(world, "breakfast_table_1")


def test_interaction_needs_reach(world):
    msg = err(world, "EasyGrasp", "apple_1")
    assert "out of reach" in msg and "MoveBot" in msg
    assert "move to breakfast_table_1, the furniture it is on or in," in msg  # the feedback says where to go
    apply(world, "MoveBot", ("breakfast_table_1",))
    apply(world, "EasyGrasp", ("apple_1",))
    assert world.held == (idx(world, "apple_1"),)


def test_grasp_needs_accessible_object_and_free_hand(world):
    apply(world, "MoveBot", ("electric_refrigerator_1",))
    assert err(world, "EasyGrasp", "bacon_1") == "electric_refrigerator_1 is closed: open it before taking bacon_1 out"
    apply(world, "open", ("electric_refrigerator_1",))
    apply(world, "EasyGrasp", ("bacon_1",))
    go_near(world, "wicker_basket_1")
    apply(world, "EasyGrasp", ("wicker_basket_1",))
    apply(world, "MoveBot", ("breakfast_table_1",))
    msg = err(world, "EasyGrasp", "apple_1")
    assert "hands are full" in msg
    assert "fixed furniture" in err(world, "EasyGrasp", "breakfast_table_1")
    assert "already in the robot's hands" in err(world, "EasyGrasp", "bacon_1")


def test_put_ontop_and_inside(world):
    apply(world, "MoveBot", ("breakfast_table_1",))
    assert "not in the robot's hands" in err(world, "put_ontop", "apple_1", "breakfast_table_1")
    apply(world, "EasyGrasp", ("apple_1",))
    apply(world, "MoveBot", ("electric_refrigerator_1",))
    msg = err(world, "put_inside", "apple_1", "electric_refrigerator_1")
    assert msg == "electric_refrigerator_1 is closed: open it before putting apple_1 inside"
    apply(world, "open", ("electric_refrigerator_1",))
    apply(world, "put_inside", ("apple_1", "electric_refrigerator_1"))
    a, f = idx(world, "apple_1"), idx(world, "electric_refrigerator_1")
    assert world.holds("inside", a, f) and world.held == ()
    apply(world, "EasyGrasp", ("apple_1",))
    go_near(world, "wicker_basket_1")
    apply(world, "put_inside", ("apple_1", "wicker_basket_1"))
    assert world.holds("inside", a, idx(world, "wicker_basket_1"))


def test_put_inside_needs_a_container_that_fits(world):
    apply(world, "MoveBot", ("breakfast_table_1",))
    apply(world, "EasyGrasp", ("apple_1",))
    assert "not a container" in err(world, "put_inside", "apple_1", "breakfast_table_1")
    apply(world, "put_ontop", ("apple_1", "breakfast_table_1"))
    assert world.holds("ontop", idx(world, "apple_1"), idx(world, "breakfast_table_1"))
    basket, fridge, apple = idx(world, "wicker_basket_1"), idx(world, "electric_refrigerator_1"), idx(world, "apple_1")
    assert fits_inside(world, apple, basket) and fits_inside(world, basket, fridge)
    assert not fits_inside(world, fridge, basket)
    go_near(world, "wicker_basket_1")
    apply(world, "EasyGrasp", ("wicker_basket_1",))
    apply(world, "MoveBot", ("countertop_1",))
    apply(world, "EasyGrasp", ("apple_2",))
    assert "being held" in err(world, "put_inside", "apple_2", "wicker_basket_1")


def test_carrying_a_container_carries_its_contents(world):
    apply(world, "MoveBot", ("electric_refrigerator_1",))
    apply(world, "open", ("electric_refrigerator_1",))
    apply(world, "EasyGrasp", ("bacon_1",))
    go_near(world, "wicker_basket_1")
    apply(world, "put_inside", ("bacon_1", "wicker_basket_1"))
    apply(world, "EasyGrasp", ("wicker_basket_1",))
    apply(world, "MoveBot", ("breakfast_table_1",))
    apply(world, "put_ontop", ("wicker_basket_1", "breakfast_table_1"))
    b, k = idx(world, "bacon_1"), idx(world, "wicker_basket_1")
    assert world.holds("inside", b, k) and world.holds("ontop", k, idx(world, "breakfast_table_1"))


@pytest.mark.parametrize("fn,state,value", [("cook", "cooked", True), ("burn", "burnt", True), ("freeze", "frozen", True),
                                            ("heat", "hot", True)])
def test_state_changes_need_the_ability(world, fn, state, value):
    apply(world, "MoveBot", ("breakfast_table_1",))
    apply(world, fn, ("apple_1",))
    assert world.get(state, idx(world, "apple_1")) is value
    assert "cannot be" in err(world, fn, "breakfast_table_1")


def test_freeze_and_heat_exclude_each_other(world):
    apply(world, "MoveBot", ("breakfast_table_1",))
    a = idx(world, "apple_1")
    apply(world, "heat", ("apple_1",))
    apply(world, "freeze", ("apple_1",))
    assert world.get("frozen", a) and not world.get("hot", a)


def test_open_close_toggle(world):
    f, s = idx(world, "electric_refrigerator_1"), idx(world, "stove_1")
    apply(world, "MoveBot", ("electric_refrigerator_1",))
    apply(world, "open", ("electric_refrigerator_1",))
    assert world.get("open", f)
    apply(world, "close", ("electric_refrigerator_1",))
    assert not world.get("open", f)
    assert "cannot be toggled" in err(world, "toggle_on", "electric_refrigerator_1")
    apply(world, "MoveBot", ("stove_1",))
    apply(world, "toggle_on", ("stove_1",))
    assert world.get("toggled_on", s)
    apply(world, "toggle_off", ("stove_1",))
    assert not world.get("toggled_on", s)
    assert "cannot be opened" in err(world, "open", "stove_1")


def test_api_checks_arguments_and_logs_calls(world):
    api = Api(world)
    ns = api.namespace()
    table = ns["registry"](ENV, "breakfast_table_1")
    ns["MoveBot"](ENV, ROBOT, table, CAMERA)
    with pytest.raises(ActionError, match="must be an object from registry"):
        ns["EasyGrasp"](ROBOT, "apple_1")
    with pytest.raises(ActionError, match="did you mean apple_1"):
        ns["registry"](ENV, "aple_1")
    with pytest.raises(ActionError, match="expected `robot`"):
        ns["EasyGrasp"](ENV, table)
    assert api.log == [("registry", ("breakfast_table_1",)), ("MoveBot", ("breakfast_table_1",))]
