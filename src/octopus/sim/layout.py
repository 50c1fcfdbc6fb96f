"""Build a `World` from a task: rooms, furniture along the walls, objects placed so the init holds.

Objects come from the task's BDDL scope with sizes and abilities from BEHAVIOR-1K (`content`). Rooms
are the activity's rooms, laid out side by side; each room's furniture stands against its walls,
facing in, with space in front for the robot. Small objects are placed on, in, under or beside their
supports from the init literals, then every kinematic init literal is checked against the geometry.
Deterministic for a given task and seed.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from octopus.sim import content
from octopus.sim.actions import find_spot, overlaps
from octopus.sim.world import KINEMATIC, UNARY, ObjectSpec, World

ROBOT_SIZE = (0.5, 0.5, 1.2)
GAP = 1.2  # free wall length between neighbouring furniture (m)
SUPPORT_MODES = ("ontop", "inside", "under", "nextto")
# action ability -> content abilities that grant it
ABILITIES = {"openable": ("openable",), "toggleable": ("toggleable",), "cookable": ("cookable",),
             "burnable": ("cookable", "flammable"), "freezable": ("freezable",), "heatable": ("heatable",),
             "foldable": ("cloth", "foldable")}


class LayoutError(ValueError):
    """The task's init cannot be realised geometrically (the task is excluded from the suite)."""


@dataclass(frozen=True)
class LayoutParams:
    reach_m: float = 1.5
    hands: int = 2
    distractors: int = 2
    seed: int = 0


def agent_name(instance: str, clash: set[str]) -> str:
    """'swiss_cheese.n.01_1' -> 'swiss_cheese_1' ('bow.n.08_1' -> 'bow_n08_1' when two senses share a lemma)."""
    synset, _, k = instance.rpartition("_")
    lemma, _, sense = synset.partition(".")
    base = lemma.replace("__of__", "_of_")
    if lemma in clash:
        base += "_" + sense.replace(".", "")
    return re.sub(r"\W", "_", f"{base}_{k}")


def _abilities(info: content.SynsetInfo) -> frozenset[str]:
    return frozenset(a for a, sources in ABILITIES.items() if any(s in info.abilities for s in sources))


def build_world(objects: dict[str, list[str]], init: list, scene: str, task_id: str, p: LayoutParams) -> World:
    rng = random.Random(f"{p.seed}:{task_id}")
    inroom = {lit[1]: lit[2] for lit in init if lit[0] == "inroom"}
    supports = {lit[1]: (lit[0], lit[2]) for lit in init if lit[0] in SUPPORT_MODES and len(lit) == 3}
    rooms: list[str] = list(dict.fromkeys(inroom.values())) or ["living_room"]
    lemmas = [s.partition(".")[0] for s in objects]
    clash = {lm for lm in lemmas if lemmas.count(lm) > 1}

    specs = [ObjectSpec("robot", "agent.n.01_1", "agent.n.01", "robot", ROBOT_SIZE, "agent")]
    furniture: dict[str, list[int]] = {r: [] for r in rooms}
    for synset, insts in objects.items():
        info = content.synset_info(synset)
        for inst in insts:
            if info.is_agent:
                continue
            kind = ("substance" if info.is_substance else "floor" if info.is_floor else
                    "furniture" if info.is_furniture and supports.get(inst, ("ontop", ""))[0] == "ontop"
                    and _is_floor(supports.get(inst, ("", "floor.n.01_1"))[1]) else "item")
            room = inroom.get(inst)
            spec = ObjectSpec(agent_name(inst, clash), inst, synset, info.category, tuple(info.size), kind,
                              _abilities(info), info.is_container and kind != "floor", room)
            if kind == "furniture":
                furniture.setdefault(room or rooms[0], []).append(len(specs))
            specs.append(spec)
    for room in rooms:  # distractor furniture from the scene's own room lists
        present = {s.synset for s in specs}
        pool = sorted(s for s in _scene_room(scene, room) if s not in present)
        for synset in rng.sample(pool, min(p.distractors, len(pool))):
            info = content.synset_info(synset)
            furniture[room].append(len(specs))
            specs.append(ObjectSpec(agent_name(f"{synset}_1", clash), f"{synset}_d1", synset, info.category,
                                    tuple(info.size), "furniture", _abilities(info), info.is_container, room))
    specs, pos, bounds = _arrange(specs, furniture, rooms)
    w = World(specs, pos, rooms=bounds, scene=scene, hands=p.hands, reach_m=p.reach_m)
    for i, s in enumerate(specs):
        if s.kind == "substance":
            w.group[i] = -1 - i  # substances take part in facts only, never in kinematic relations
    _place_items(w, supports, inroom, rooms, rng)
    _apply_states(w, init)
    _check_init(w, init)
    return w


def _is_floor(inst: str) -> bool:
    return inst.startswith("floor.n.")


def _scene_room(scene: str, room: str) -> list[str]:
    try:
        rooms = content.scene_rooms(scene)
    except content.ContentError:
        return []
    for name, objs in rooms.items():
        if content.room_type(name) == room:
            return [s for s in objs if content.synset_info(s).is_furniture]
    return []


def _arrange(specs: list[ObjectSpec], furniture: dict[str, list[int]], rooms: list[str]):
    """Rooms side by side along x; each room's furniture against its four walls, facing inwards."""
    pos: list = [(0.0, 0.0, 0.0)] * len(specs)
    bounds: dict[str, tuple[float, float, float, float]] = {}
    x0 = 0.0
    for room in rooms:
        ids = sorted(furniture.get(room, []), key=lambda i: -max(specs[i].size[:2]))
        need = sum(max(specs[i].size[:2]) + GAP for i in ids)
        side = max(5.0, need / 4 + 2.5)
        while True:
            placed = _along_walls(specs, ids, x0, side)
            if placed is not None:
                break
            side += 1.0
        for i, (spec, center) in placed.items():
            specs[i], pos[i] = spec, center
        bounds[room] = (x0, 0.0, x0 + side, side)
        x0 += side + 0.2
    for i, s in enumerate(specs):
        if s.kind == "floor":
            x_0, y_0, x_1, y_1 = bounds.get(s.room or rooms[0], bounds[rooms[0]])
            specs[i] = ObjectSpec(s.name, s.bddl, s.synset, s.category, (x_1 - x_0, y_1 - y_0, 0.01), "floor",
                                  s.abilities, False, s.room or rooms[0])
            pos[i] = ((x_0 + x_1) / 2, (y_0 + y_1) / 2, -0.005)
    x_0, y_0, x_1, y_1 = bounds[rooms[0]]
    pos[0] = ((x_0 + x_1) / 2, (y_0 + y_1) / 2, ROBOT_SIZE[2] / 2)
    return specs, pos, bounds


def _along_walls(specs, ids, x0, side):
    """Fill the walls in turn (south, east, north, west); None if the room is too small."""
    walls = [((1, 0), (0, 1)), ((0, 1), (-1, 0)), ((-1, 0), (0, -1)), ((0, -1), (1, 0))]  # (run dir, front)
    starts = [(x0, 0.0), (x0 + side, 0.0), (x0 + side, side), (x0, side)]
    margin = 1.2
    cursor, wall, out = margin, 0, {}
    for i in ids:
        s = specs[i]
        long, short = max(s.size[:2]), min(s.size[:2])
        while cursor + long > side - margin:
            wall, cursor = wall + 1, margin
            if wall == 4:
                return None
        (rx, ry), (fx, fy) = walls[wall]
        sx, sy = starts[wall]
        along = cursor + long / 2
        cx = sx + rx * along + fx * (short / 2 + 0.05)
        cy = sy + ry * along + fy * (short / 2 + 0.05)
        size = (long, short, s.size[2]) if rx else (short, long, s.size[2])
        out[i] = (ObjectSpec(s.name, s.bddl, s.synset, s.category, size, s.kind, s.abilities, s.container, s.room,
                             (float(fx), float(fy))), (cx, cy, s.size[2] / 2))
        cursor += long + GAP
    return out


def _place_items(w: World, supports: dict, inroom: dict, rooms: list[str], rng: random.Random) -> None:
    done: set[int] = set()

    def place(i: int, stack: tuple = ()) -> None:
        if i in done or w.objects[i].kind != "item":
            return
        if i in stack:
            raise LayoutError(f"circular placement through {w.objects[i].bddl}")
        mode, target = supports.get(w.objects[i].bddl, ("", ""))
        t = w.index.get(target)
        if t is not None and w.objects[t].kind in ("item",):
            place(t, (*stack, i))
        if t is None or w.objects[t].kind in ("floor", "substance", "agent"):
            room = (w.objects[t].room if t is not None and w.objects[t].kind == "floor" else None) \
                or inroom.get(w.objects[i].bddl) or rooms[0]
            _beside_furniture(w, i, room, rng)
        elif mode == "nextto":
            base = w.placement[t]
            if base is None:
                _beside_furniture(w, i, w.room_of(t) or rooms[0], rng)
            else:
                w.pos[i] = find_spot(w, i, base[1], base[0])
                w.placement[i] = base
        else:
            w.pos[i] = find_spot(w, i, t, mode)
            w.placement[i] = (mode, t)
        done.add(i)

    for i in range(len(w.objects)):
        place(i)
    w.touch()


def _beside_furniture(w: World, i: int, room: str, rng: random.Random) -> None:
    """Stand object i on the floor beside a piece of furniture of the room (reachable from it)."""
    floor = next((k for k, o in enumerate(w.objects) if o.kind == "floor" and o.room == room), None)
    options = [f for f in w.furniture() if w.objects[f].room == room] or list(w.furniture())
    hi = w.objects[i].half
    if not options:
        x0, y0, x1, y1 = w.rooms[room]
        w.pos[i] = ((x0 + x1) / 2 + 1.0, (y0 + y1) / 2, hi[2])
    else:
        f = rng.choice(options)
        of, pf = w.objects[f], w.pos[f]
        lat = (abs(of.front[1]), abs(of.front[0]))  # unit vector along the wall
        for k in range(1, 12):
            side = 1 if k % 2 else -1
            off = (of.half[0] * lat[0] + of.half[1] * lat[1]) + 0.15 + (k - 1) // 2 * 0.5
            d = off + (hi[0] * lat[0] + hi[1] * lat[1])
            c = (pf[0] + side * lat[0] * d, pf[1] + side * lat[1] * d, hi[2])
            if not any(overlaps(w, j, c, hi) for j in range(len(w.objects)) if w.objects[j].kind in ("furniture", "item") and j != i):
                break
        w.pos[i] = c
    w.placement[i] = ("ontop", floor) if floor is not None else None


def _apply_states(w: World, init: list) -> None:
    for lit in init:
        neg = lit[0] == "not"
        pred, *args = lit[1] if neg else lit
        if pred in KINEMATIC or pred == "inroom" or any(a not in w.index for a in args):
            continue
        ids = [w.idx(a) for a in args]
        if pred in UNARY and len(ids) == 1:
            w.set(pred, ids[0], not neg)
        elif not neg:
            w.facts.add((pred, *ids))
    w.touch()


def _check_init(w: World, init: list) -> None:
    for lit in init:
        neg = lit[0] == "not"
        pred, *args = lit[1] if neg else lit
        if pred not in KINEMATIC or any(a not in w.index for a in args):
            continue
        a, b = (w.idx(x) for x in args)
        if w.objects[a].kind == "agent" or w.objects[b].kind == "substance" or w.objects[a].kind == "substance":
            continue
        if w.holds(pred, a, b) == neg:
            raise LayoutError(f"init literal {'not ' if neg else ''}({pred} {args[0]} {args[1]}) does not hold after placement")
