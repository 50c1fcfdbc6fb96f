"""BEHAVIOR-1K content (the data shipped in ``bddl==3.6.0``) as typed, cached lookups.

The embedded simulator needs to know, for any BDDL synset, what it can do (abilities), how big it
typically is, and whether it is furniture, a container, a substance, the agent or the floor; and,
for a scene, which objects stand in which room. All of this is read straight from bddl's
``generated_data`` JSON/CSV files (``bddl.knowledge_base`` is never imported: it is slow and tries
to download). Nothing is read at import time; each table is loaded once per process on first use.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass

TYPE_CHECKING = False  # no typing import, pathlib only when used: keeps a cold import cheap
if TYPE_CHECKING:
    from pathlib import Path

Size = tuple[float, float, float]

FALLBACK_SIZE: Size = (0.3, 0.3, 0.3)  # no model for the synset, its hyponyms or any hypernym
AGENT_SIZE: Size = (0.6, 0.6, 1.2)  # agent.n.01 has no model: rough mobile manipulator (Fetch-like)

SUBSTANCE_TYPES = frozenset({"liquid", "macroPhysicalSubstance", "microPhysicalSubstance", "visualSubstance"})
FLOOR_SYNSETS = frozenset({"floor.n.01", "lawn.n.01", "road.n.01", "driveway.n.01"})
"""Ground that objects and the robot stand on (their hyponyms count too)."""
STRUCTURAL_SYNSETS = frozenset({
    "wall.n.01", "stone_wall.n.01", "ceiling.n.01", "roof.n.01", "baseboard.n.01", "column.n.07",
    "skeleton.n.04", "step.n.04", "window.n.01", "window_blind.n.01", "door.n.01", "gate.n.01",
    "elevator_door.n.01", "rail_fence.n.01", "railing.n.01", "switch.n.01", "wall_socket.n.01",
    "wall_nail.n.01", "wall_clock.n.01", "photograph.n.01", "painting.n.01", "portrait.n.02",
    "picture_frame.n.01", "mirror.n.01", "map.n.01", "periodic_table.n.01", "banner.n.01",
    "hanging.n.01", "information_bulletin.n.01", "decorative_sign.n.01", "display_panel.n.01",
    "blackboard.n.01", "screen.n.01", "scoreboard.n.01", "room_light.n.01", "chandelier.n.01",
    "spotlight.n.02", "ceiling_fan.n.01", "air_conditioner.n.01", "ventilator.n.01",
    "fire_alarm.n.02", "fire_sprinkler.n.01", "security_camera.n.01", "photoelectric_cell.n.01",
    "range_hood.n.01", "showerhead.n.01", "hand_dryer.n.01", "towel_rack.n.01",
    "toilet_paper_dispenser.n.01", "toilet_paper_holder.n.01", "paper_towel_dispenser.n.01",
    "tissue_dispenser.n.01", "hook.n.05", "ceiling_rack.n.01",
})
"""Structure and wall/ceiling-mounted things (and hyponyms): not furniture/containers, not in rooms."""
STRUCTURAL_CATEGORY = re.compile(r"wall_mounted|ceiling|hanging|window|door|^walls$|^floors$")
"""Scene object categories dropped from :func:`scene_rooms` whatever their synset."""
FURNITURE_ROOTS = ("furniture.n.01",)
RECEPTACLE_ROOTS = ("basket.n.01", "box.n.01", "bin.n.01", "bag.n.01", "bag.n.04", "bag.n.06",
                    "bowl.n.01", "bowl.n.03", "pot.n.01", "crate.n.01")
FURNITURE_MIN_FOOTPRINT = 0.4  # m, longest horizontal side
FURNITURE_MIN_EXTENT = 0.55    # m, longest side overall
FURNITURE_MIN_THIN = 0.05      # m, shortest side: excludes loose panels (bookcase_side.n.01, ...)
CONTAINER_MIN_SIDE = 0.1       # m, longest side: room inside for at least a small object
CONTAINER_MIN_THIN = 0.04      # m, shortest side: excludes plates, trays, laptops, test tubes


class ContentError(ValueError):
    """An unknown synset, scene or activity, or bddl data that cannot be found."""


@dataclass(frozen=True)
class SynsetInfo:
    """What the simulator needs to know about one BDDL synset.

    ``size`` is the per-axis median bounding box (x, y, z; z up; metres) over all object models
    whose category maps to this synset or one of its hyponyms (``n_models`` of them). When there
    are none, ``n_models`` is 0 and the size is inherited from the nearest hypernym with models
    (``size_source`` names it); failing that it is :data:`FALLBACK_SIZE` (``size_source`` is
    ``"fallback"``); the agent uses :data:`AGENT_SIZE` (``"agent"``).
    """

    synset: str
    abilities: frozenset[str]
    size: Size
    n_models: int
    is_substance: bool
    is_furniture: bool
    is_container: bool
    is_agent: bool
    is_floor: bool
    category: str
    size_source: str = ""


@functools.cache
def _bddl_root() -> Path:
    """Folder of the installed bddl package, found without importing it."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("bddl")
    if spec is None or not spec.submodule_search_locations:
        raise ContentError("bddl is not installed (pip install bddl==3.6.0)")
    return Path(next(iter(spec.submodule_search_locations)))


def _read_json(name: str) -> dict:
    import json  # data readers import lazily: module import stays cheap

    with open(_bddl_root() / "generated_data" / name, encoding="utf-8") as f:
        return json.load(f)


def _read_csv(name: str) -> list[dict[str, str]]:
    import csv

    with open(_bddl_root() / "generated_data" / name, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def lemma(synset: str) -> str:
    """``"electric_refrigerator.n.01"`` -> ``"electric_refrigerator"``."""
    return re.sub(r"\.[a-z]\.\d+$", "", synset)


@dataclass
class _Tables:
    abilities: dict[str, frozenset[str]]
    object_type: dict[str, str]
    parents: dict[str, tuple[str, ...]]
    children: dict[str, tuple[str, ...]]
    category_synset: dict[str, str]
    models: dict[str, list[Size]]  # synset -> bounding boxes of its own categories' models


@functools.cache
def _tables() -> _Tables:
    """Load the synset tables (abilities, hierarchy, categories, model sizes) once."""
    abilities = {s: frozenset(a) for s, a in _read_json("propagated_annots_canonical.json").items()}
    object_type = {r["synset"]: r["objectType"] for r in _read_csv("synsets.csv")}
    parents: dict[str, set[str]] = {}
    children: dict[str, set[str]] = {}
    stack = [(_read_json("output_hierarchy.json"), None)]
    while stack:  # the tree repeats a node under each of its hypernyms
        node, parent = stack.pop()
        name = node["name"]
        parents.setdefault(name, set()).update([parent] if parent else [])
        children.setdefault(name, set())
        if parent:
            children[parent].add(name)
        stack.extend((c, name) for c in node.get("children", ()))
    category_synset = {r["category"]: r["synset"] for r in _read_csv("category_mapping.csv")}
    inventory = _read_json("object_inventory.json")
    boxes = inventory["bounding_box_sizes"]
    models: dict[str, list[Size]] = {}
    for key in inventory["providers"]:
        category, model = key.rsplit("-", 1)
        if category in category_synset and model in boxes:
            models.setdefault(category_synset[category], []).append(tuple(boxes[model]))
    return _Tables(abilities, object_type, {k: tuple(sorted(v)) for k, v in parents.items()},
                   {k: tuple(sorted(v)) for k, v in children.items()}, category_synset, models)


@functools.lru_cache(maxsize=None)
def descendants(synset: str) -> frozenset[str]:
    """The synset and all its hyponyms."""
    children, out, stack = _tables().children, {synset}, [synset]
    while stack:
        for c in children.get(stack.pop(), ()):
            if c not in out:
                out.add(c)
                stack.append(c)
    return frozenset(out)


@functools.lru_cache(maxsize=None)
def ancestors(synset: str) -> tuple[str, ...]:
    """All hypernyms, nearest first (breadth-first), without the synset itself."""
    parents, out = _tables().parents, []
    queue = list(parents.get(synset, ()))
    while queue:
        p = queue.pop(0)
        if p not in out:
            out.append(p)
            queue.extend(parents.get(p, ()))
    return tuple(out)


def _under(synset: str, roots: Iterable[str]) -> bool:
    return any(r == synset or r in ancestors(synset) for r in roots)


@functools.lru_cache(maxsize=None)
def _substance(synset: str) -> bool:
    t = _tables()
    if "substance" in t.abilities.get(synset, ()) or t.object_type.get(synset) in SUBSTANCE_TYPES:
        return True
    if t.abilities.get(synset):  # annotated and not a substance
        return False
    below = [d for d in descendants(synset) if d != synset and t.abilities.get(d)]
    return bool(below) and all(_substance(d) for d in below)  # unannotated hypernym of substances


@functools.lru_cache(maxsize=None)
def _own_size(synset: str) -> tuple[Size | None, int]:
    """Median box over the models of the synset and its hyponyms (substance hyponyms skipped
    unless the synset is itself a substance: particle models say nothing about objects)."""
    from statistics import median  # not at import time: keeps module import cheap

    t, sub = _tables(), _substance(synset)
    boxes = [b for d in descendants(synset) if sub or not _substance(d) for b in t.models.get(d, ())]
    if not boxes:
        return None, 0
    return tuple(round(median(b[i] for b in boxes), 4) for i in range(3)), len(boxes)


def _size(synset: str) -> tuple[Size, int, str]:
    if synset == "agent.n.01":
        return AGENT_SIZE, 0, "agent"
    size, n = _own_size(synset)
    if size is not None:
        return size, n, synset
    for hyper in ancestors(synset):
        size, _ = _own_size(hyper)
        if size is not None:
            return size, 0, hyper
    return FALLBACK_SIZE, 0, "fallback"


def _unknown(kind: str, name: str, known: Iterable[str], show_all: bool = False) -> ContentError:
    import difflib  # only on the error path

    if show_all:
        return ContentError(f"unknown {kind} {name!r}; known {kind}s: {', '.join(sorted(known))}")
    close = difflib.get_close_matches(name, known, n=5, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return ContentError(f"unknown {kind} {name!r} (not in bddl 3.6.0 content){hint}")


@functools.lru_cache(maxsize=None)
def synset_info(synset: str) -> SynsetInfo:
    """Abilities, typical size and simulator roles of a BDDL synset.

    Furniture: ``sceneObject`` ability or a ``furniture.n.01`` hyponym, not floor, structural,
    substance or agent, and large: longest horizontal side >= 0.4 m, longest side >= 0.55 m,
    shortest side >= 0.05 m (loose panels such as bookcase parts are not furniture).
    Container: ``openable`` or ``fillable`` ability or a receptacle hyponym (basket, box, bin, bag,
    bowl, pot, crate), not floor/structural/substance/agent, longest side >= 0.1 m and shortest
    side >= 0.04 m (so plates, trays, laptops and test tubes are not containers).
    """
    t = _tables()
    if synset not in t.abilities:
        raise _unknown("synset", synset, t.abilities)
    abilities = t.abilities[synset]
    size, n, source = _size(synset)
    is_agent = synset == "agent.n.01"
    is_floor = _under(synset, FLOOR_SYNSETS)
    is_substance = _substance(synset)
    excluded = is_agent or is_floor or is_substance or _under(synset, STRUCTURAL_SYNSETS)
    furniture_kind = "sceneObject" in abilities or _under(synset, FURNITURE_ROOTS)
    is_furniture = (not excluded and furniture_kind and max(size[:2]) >= FURNITURE_MIN_FOOTPRINT
                    and max(size) >= FURNITURE_MIN_EXTENT and min(size) >= FURNITURE_MIN_THIN)
    container_kind = bool(abilities & {"openable", "fillable"}) or _under(synset, RECEPTACLE_ROOTS)
    is_container = (not excluded and container_kind and max(size) >= CONTAINER_MIN_SIDE
                    and min(size) >= CONTAINER_MIN_THIN)
    return SynsetInfo(synset, abilities, size, n, is_substance, is_furniture, is_container,
                      is_agent, is_floor, lemma(synset), source)


def all_synsets() -> list[str]:
    """Every synset of the current BEHAVIOR hierarchy (pruned synsets of synsets.csv excluded)."""
    return sorted(_tables().abilities)


@functools.cache
def _scenes() -> dict[str, dict[str, dict[str, int]]]:
    return _read_json("combined_room_object_list.json")["scenes"]


def scene_names() -> list[str]:
    """Scenes with a room/object list (51 in bddl 3.6.0: Rs_int, Ihlen_0_int, ...)."""
    return sorted(_scenes())


@functools.cache
def _scene_rooms(scene: str) -> dict[str, dict[str, int]]:
    scenes, t = _scenes(), _tables()
    if scene not in scenes:
        raise _unknown("scene", scene, scenes, show_all=True)
    rooms: dict[str, dict[str, int]] = {}
    for room, objects in scenes[scene].items():
        counts = rooms.setdefault(room, {})
        for key, count in objects.items():
            category = key.rsplit("-", 1)[0]
            synset = t.category_synset.get(category)
            if (synset is None or synset not in t.abilities or STRUCTURAL_CATEGORY.search(category)
                    or _under(synset, STRUCTURAL_SYNSETS | FLOOR_SYNSETS) or _substance(synset)):
                continue
            counts[synset] = counts.get(synset, 0) + int(count)
    return rooms


def scene_rooms(scene: str) -> dict[str, dict[str, int]]:
    """Room instance (``"kitchen_0"``) -> {synset: count} of the objects in it.

    Structure and wall/ceiling-mounted things (walls, floors, ceilings, windows, doors, switches,
    pictures, mirrors, lights, ...) are dropped; furniture, appliances and loose objects are kept.
    Returns a fresh copy (the cached table is never exposed).
    """
    return {room: dict(counts) for room, counts in _scene_rooms(scene).items()}


def room_type(room_instance: str) -> str:
    """``"kitchen_0"`` -> ``"kitchen"``; a name without an instance suffix is returned as is."""
    return re.sub(r"_\d+$", "", room_instance)


@functools.cache
def activities() -> list[str]:
    """BEHAVIOR activities that have a BDDL problem (1,016 in bddl 3.6.0)."""
    root = _bddl_root() / "activity_definitions"
    return sorted(p.parent.name for p in root.glob("*/problem0.bddl"))


def activity_problem_path(activity: str, instance: int = 0) -> Path:
    """Path of ``activity_definitions/<activity>/problem<instance>.bddl``."""
    path = _bddl_root() / "activity_definitions" / activity / f"problem{instance}.bddl"
    if not path.is_file():
        if activity in activities():
            raise ContentError(f"activity {activity!r} has no problem instance {instance}")
        raise _unknown("activity", activity, activities())
    return path


@functools.cache
def _renames() -> dict[str, frozenset[str]]:
    """Old synset, or old category lemma, -> new synsets, from bddl's object_renames.csv."""
    out: dict[str, set[str]] = {}
    for row in _read_csv("object_renames.csv"):
        new = row.get("New Synset (auto)", "")
        for old in (row.get("Original Synset (auto)", ""), row.get("Original category (auto)", "")):
            if old and new and not old.startswith("#") and not new.startswith("#"):
                out.setdefault(old, set()).add(new)
    return {k: frozenset(v) for k, v in out.items()}


def renamed_synset(old: str, candidates: Iterable[str]) -> str | None:
    """Map a synset from an older BEHAVIOR release to the one used now among ``candidates``.

    Tried in order; the first rule that matches any candidate decides (one match: it; several:
    ambiguous, None): the name itself; bddl's object_renames.csv (by old synset or old category);
    hyponyms of ``old``; candidates whose lemma is or ends with ``_<old lemma>``; candidates whose
    lemma contains the old lemma; candidates sharing a direct hypernym with ``old``.
    """
    cands = list(dict.fromkeys(candidates))
    if old in cands:
        return old
    old_lemma, renames = lemma(old), _renames()
    old_parents = set(_tables().parents.get(old, ()))
    rules = [
        lambda c: c in renames.get(old, ()) or c in renames.get(old_lemma, ()),
        lambda c: old in ancestors(c),
        lambda c: lemma(c) == old_lemma or lemma(c).endswith("_" + old_lemma),
        lambda c: old_lemma in lemma(c),
        lambda c: bool(old_parents & set(_tables().parents.get(c, ()))),
    ]
    for rule in rules:
        hits = [c for c in cands if rule(c)]
        if hits:
            return hits[0] if len(hits) == 1 else None
    return None
