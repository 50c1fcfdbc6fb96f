"""Relations come from geometry; snapshot/restore captures the whole state."""

from octopus.sim.actions import apply, find_spot
from octopus.sim.world import World


def rel(world: World, a: str, r: str, b: str) -> bool:
    return world.holds(r, world.idx(a), world.idx(b))


def test_init_relations_follow_from_poses(world):
    assert rel(world, "apple_1", "ontop", "breakfast_table_1")
    assert rel(world, "apple_1", "touching", "breakfast_table_1")
    assert not rel(world, "breakfast_table_1", "ontop", "apple_1")
    assert rel(world, "bacon_1", "inside", "electric_refrigerator_1")
    assert not rel(world, "bacon_1", "ontop", "floor_1"), "contents of a fridge do not lie on the floor"
    assert rel(world, "wicker_basket_1", "ontop", "floor_1")
    assert rel(world, "robot", "ontop", "floor_1")
    assert not rel(world, "apple_1", "inside", "breakfast_table_1"), "a table is not a container"


def test_relations_change_when_an_object_moves(world):
    a, t = world.idx("apple_1"), world.idx("breakfast_table_1")
    x, y, z = world.pos[a]
    world.pos[a] = (x, y, z + 0.5)
    world.touch()
    assert not world.holds("ontop", a, t) and not world.holds("touching", a, t)
    world.pos[a] = (x, y, z)
    world.touch()
    assert world.holds("ontop", a, t)


def test_under_and_nextto_from_geometry(world):
    a, t = world.idx("apple_2"), world.idx("breakfast_table_1")
    world.pos[a] = find_spot(world, a, t, "under")
    world.touch()
    assert world.holds("under", a, t) and not world.holds("ontop", a, t)
    b = world.idx("apple_1")
    pa = world.pos[b]
    world.pos[a] = (pa[0] + 0.12, pa[1], pa[2])
    world.touch()
    assert world.holds("nextto", a, b) and world.holds("nextto", b, a)
    world.pos[a] = (pa[0] + 2.0, pa[1], pa[2])
    world.touch()
    assert not world.holds("nextto", a, b)


def test_hidden_inside_closed_container(world):
    bacon, fridge = world.idx("bacon_1"), world.idx("electric_refrigerator_1")
    assert world.hidden_by(bacon) == fridge
    world.set("open", fridge, True)
    assert world.hidden_by(bacon) is None


def test_snapshot_restore_is_complete(world):
    snap = world.snapshot()
    key = world.state_key()
    pos = list(world.pos)
    apply(world, "MoveBot", ("breakfast_table_1",))
    apply(world, "EasyGrasp", ("apple_1",))
    apply(world, "MoveBot", ("electric_refrigerator_1",))
    apply(world, "open", ("electric_refrigerator_1",))
    world.facts.add(("covered", 1, 2))
    assert world.state_key() != key
    world.restore(snap)
    assert world.state_key() == key and world.pos == pos and world.held == ()
    assert world.holds("ontop", world.idx("apple_1"), world.idx("breakfast_table_1"))
    assert not world.get("open", world.idx("electric_refrigerator_1"))


def test_held_objects_have_no_world_relations(world):
    apply(world, "MoveBot", ("breakfast_table_1",))
    apply(world, "EasyGrasp", ("apple_1",))
    a = world.idx("apple_1")
    assert not any(world.holds(r, a, j) or world.holds(r, j, a) for j in range(len(world)) for r in ("ontop", "touching", "nextto"))


def test_world_pickles_for_the_sandbox(world):
    import pickle
    copy = pickle.loads(pickle.dumps(world))
    assert copy.state_key() == world.state_key()
    assert copy.holds("ontop", copy.idx("apple_1"), copy.idx("breakfast_table_1"))
