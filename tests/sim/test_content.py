"""Tests of octopus.sim.content against the real BEHAVIOR-1K data in bddl 3.6.0."""

from __future__ import annotations

import subprocess
import sys

import pytest

from octopus.sim import content
from octopus.sim.content import ContentError, synset_info

FURNITURE = ["electric_refrigerator.n.01", "cabinet.n.01", "table.n.02", "breakfast_table.n.01",
             "countertop.n.01", "checkout.n.03", "sink.n.01", "stove.n.01", "oven.n.01",
             "shelf.n.01", "bookcase.n.01", "bed.n.01", "sofa.n.01", "dishwasher.n.01"]
NOT_FURNITURE = ["apple.n.01", "bacon.n.01", "candle.n.01", "swiss_cheese.n.01", "cookie.n.01",
                 "butter_cookie.n.01", "plate.n.04", "bottle.n.01", "bowl.n.01", "wicker_basket.n.01",
                 "water.n.06", "floor.n.01", "agent.n.01", "wall.n.01", "door.n.01", "bookcase_side.n.01",
                 "microwave.n.02", "rug.n.01"]
CONTAINERS = ["wicker_basket.n.01", "box.n.01", "carton.n.02", "bowl.n.01", "stockpot.n.01",
              "electric_refrigerator.n.01", "cabinet.n.01", "ashcan.n.01", "public_trash_can.n.01",
              "hamper.n.02", "oven.n.01"]
NOT_CONTAINERS = ["apple.n.01", "bacon.n.01", "candle.n.01", "table.n.02", "countertop.n.01",
                  "plate.n.04", "tray.n.01", "laptop.n.01", "water.n.06", "floor.n.01", "door.n.01"]


def test_import_is_lazy() -> None:
    """A cold import reads no data and imports neither bddl nor json (its speed: `octopus bench sim`)."""
    code = ("import sys; import octopus.sim; import octopus.sim.content as c; "
            "assert c._tables.cache_info().currsize == 0 and c._scenes.cache_info().currsize == 0; "
            "assert 'bddl' not in sys.modules and 'json' not in sys.modules; print('lazy')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "lazy", out.stderr


@pytest.mark.parametrize("synset", FURNITURE)
def test_furniture(synset: str) -> None:
    info = synset_info(synset)
    assert info.is_furniture and not info.is_substance and info.n_models > 0


@pytest.mark.parametrize("synset", NOT_FURNITURE)
def test_not_furniture(synset: str) -> None:
    assert not synset_info(synset).is_furniture


@pytest.mark.parametrize("synset", CONTAINERS)
def test_containers(synset: str) -> None:
    assert synset_info(synset).is_container


@pytest.mark.parametrize("synset", NOT_CONTAINERS)
def test_not_containers(synset: str) -> None:
    assert not synset_info(synset).is_container


def test_substances_agent_floor() -> None:
    for synset in ["water.n.06", "dust.n.01", "stain.n.01"]:
        assert synset_info(synset).is_substance, synset
    for synset in ["apple.n.01", "electric_refrigerator.n.01", "agent.n.01", "floor.n.01"]:
        assert not synset_info(synset).is_substance, synset
    agent = synset_info("agent.n.01")
    assert agent.is_agent and not agent.is_floor and agent.size == content.AGENT_SIZE
    assert synset_info("floor.n.01").is_floor and synset_info("lawn.n.01").is_floor
    assert not synset_info("table.n.02").is_floor and not synset_info("table.n.02").is_agent


def test_sizes_are_plausible() -> None:
    x, y, z = synset_info("electric_refrigerator.n.01").size
    assert 0.6 <= x <= 1.0 and 0.6 <= y <= 1.0 and 1.5 <= z <= 2.0
    assert all(0.04 <= s <= 0.15 for s in synset_info("apple.n.01").size)
    x, y, z = synset_info("countertop.n.01").size
    assert 0.75 <= z <= 1.0 and max(x, y) >= 1.0
    x, y, z = synset_info("plate.n.04").size
    assert 0.15 <= min(x, y) and z < 0.05


def test_abilities_category_and_size_source() -> None:
    fridge = synset_info("electric_refrigerator.n.01")
    assert {"openable", "coldSource", "sceneObject"} <= fridge.abilities
    assert fridge.category == "electric_refrigerator"
    assert fridge.size_source == "electric_refrigerator.n.01" and fridge.n_models >= 10
    assert "cookable" in synset_info("bacon.n.01").abilities
    glove = synset_info("kid_glove.n.01")  # no model of its own: size inherited from glove.n.02
    assert glove.n_models == 0 and glove.size_source == "glove.n.02"
    assert glove.size == synset_info("glove.n.02").size


def test_synset_info_is_cached() -> None:
    assert synset_info("apple.n.01") is synset_info("apple.n.01")


def test_unknown_synset_suggests_close_matches() -> None:
    with pytest.raises(ContentError, match=r"electric_refrigerator\.n\.01"):
        synset_info("electric_refrigerator.n.02")
    with pytest.raises(ValueError, match="unknown synset 'no_such_thing.n.01'"):
        synset_info("no_such_thing.n.01")


def test_all_synsets() -> None:
    synsets = content.all_synsets()
    assert len(synsets) > 3000 and "wicker_basket.n.01" in synsets and synsets == sorted(synsets)


@pytest.mark.parametrize("scene", ["Rs_int", "Ihlen_0_int"])
def test_scene_rooms(scene: str) -> None:
    rooms = content.scene_rooms(scene)
    assert rooms and all(content.room_type(r) in r for r in rooms)
    synsets = {s for objects in rooms.values() for s in objects}
    infos = [synset_info(s) for s in synsets]  # every synset is known
    assert sum(i.is_furniture for i in infos) >= 5
    dropped = {"wall.n.01", "floor.n.01", "ceiling.n.01", "door.n.01", "switch.n.01",
               "photograph.n.01", "mirror.n.01", "openable_window.n.01", "room_light.n.01"}
    assert not synsets & dropped
    assert all(not i.is_substance for i in infos)


def test_rs_int_kitchen_and_ihlen_living_room() -> None:
    rs = content.scene_rooms("Rs_int")
    assert {"kitchen_0", "living_room_0", "bedroom_0", "bathroom_0"} <= set(rs)
    kitchen = rs["kitchen_0"]
    for synset in ["electric_refrigerator.n.01", "cabinet.n.01", "countertop.n.01", "oven.n.01", "sink.n.01"]:
        assert kitchen.get(synset, 0) >= 1, synset
    ihlen = content.scene_rooms("Ihlen_0_int")
    assert "living_room_0" in ihlen and ihlen["living_room_0"].get("coffee_table.n.01", 0) >= 1
    rs["kitchen_0"]["apple.n.01"] = 99  # callers get a copy
    assert "apple.n.01" not in content.scene_rooms("Rs_int")["kitchen_0"]


def test_unknown_scene_lists_known_scenes() -> None:
    assert "Rs_int" in content.scene_names() and len(content.scene_names()) >= 50
    with pytest.raises(ContentError, match=r"unknown scene 'Rs_intt'.*Ihlen_0_int.*Rs_int"):
        content.scene_rooms("Rs_intt")


def test_room_type() -> None:
    assert content.room_type("kitchen_0") == "kitchen"
    assert content.room_type("living_room_12") == "living_room"
    assert content.room_type("garage") == "garage"


def test_activities() -> None:
    acts = content.activities()
    assert len(acts) == 1016 and "assembling_gift_baskets" in acts and "cook_bacon" in acts
    path = content.activity_problem_path("assembling_gift_baskets")
    assert path.name == "problem0.bddl" and "wicker_basket.n.01" in path.read_text()
    with pytest.raises(ContentError, match="assembling_gift_baskets"):
        content.activity_problem_path("assembling_gift_basket")
    with pytest.raises(ContentError, match="no problem instance 7"):
        content.activity_problem_path("cook_bacon", 7)


def test_renamed_synset() -> None:
    scope = ["wicker_basket.n.01", "floor.n.01", "candle.n.01", "butter_cookie.n.01",
             "swiss_cheese.n.01", "bow.n.08", "table.n.02", "agent.n.01"]
    assert content.renamed_synset("cookie.n.01", scope) == "butter_cookie.n.01"
    assert content.renamed_synset("candle.n.01", scope) == "candle.n.01"
    assert content.renamed_synset("carton.n.02", ["carton.n.02", "apple.n.01"]) == "carton.n.02"
    assert content.renamed_synset("milk.n.01", ["carton__of__milk.n.01", "apple.n.01"]) == "carton__of__milk.n.01"
    assert content.renamed_synset("cookie.n.01", ["butter_cookie.n.01", "sugar_cookie.n.01"]) is None
    assert content.renamed_synset("unicorn.n.01", scope) is None
