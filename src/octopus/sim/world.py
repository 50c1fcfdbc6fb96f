"""World state of the embedded OctoGibson simulator: objects, poses, boxes, unary states, inventory.

Kinematic relations (ontop, inside, nextto, under, touching) are not stored: they are derived from
object poses and axis-aligned boxes on demand, the way OmniGibson's kinematic states are computed,
and cached until the state changes. Unary states (open, cooked, ...) are set by actions; substance
facts (covered, filled, ...) are plain facts. `snapshot()`/`restore()` capture the whole state.

A world is built by `octopus.sim.layout` from a task; actions live in `octopus.sim.actions`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable, Iterator

UNARY = ("open", "toggled_on", "cooked", "burnt", "frozen", "hot", "folded", "unfolded")
KINEMATIC = ("ontop", "inside", "nextto", "under", "touching")
_U = {name: i for i, name in enumerate(UNARY)}

TOL_Z = 0.03  # vertical contact tolerance (m)
TOL_XY = 0.01  # footprint tolerance (m)
TOUCH = 0.01  # box gap still counted as touching (m)


@dataclass(frozen=True)
class ObjectSpec:
    """Static description of one object instance."""

    name: str  # agent-facing name, a valid Python identifier, e.g. "fridge_1"
    bddl: str  # BDDL instance, e.g. "electric_refrigerator.n.01_1"
    synset: str
    category: str
    size: tuple[float, float, float]  # box (x, y, z) in metres, as placed (already rotated)
    kind: str  # "agent" | "floor" | "furniture" | "item"
    abilities: frozenset[str] = frozenset()  # action abilities: openable, toggleable, cookable, ...
    container: bool = False
    room: str | None = None
    front: tuple[float, float] = (1.0, 0.0)  # furniture: unit vector from its centre towards the room

    @property
    def half(self) -> tuple[float, float, float]:
        return (self.size[0] / 2, self.size[1] / 2, self.size[2] / 2)


@dataclass
class Snapshot:
    """Everything that changes during an episode (cheap shallow copies of immutable parts)."""

    pos: list
    unary: list
    held: tuple
    group: list
    placement: list
    facts: frozenset
    robot_at: int
    heading: float
    version: int


@dataclass
class World:
    """Mutable simulator state. Index 0 is always the robot."""

    objects: list[ObjectSpec]
    pos: list[tuple[float, float, float]]  # box centres
    rooms: dict[str, tuple[float, float, float, float]] = field(default_factory=dict)  # x0, y0, x1, y1
    scene: str = ""
    hands: int = 2
    reach_m: float = 1.5
    unary: list[int] = field(default_factory=list)  # bitmask of UNARY per object
    held: tuple[int, ...] = ()  # inventory, a stack: last grasped is last
    group: list[int] = field(default_factory=list)  # 0 = standing in the world; k > 0: held bundle rooted at k
    placement: list[tuple[str, int] | None] = field(default_factory=list)  # ("ontop"|"inside"|"under"|"nextto", support)
    facts: set[tuple] = field(default_factory=set)  # substance and other plain facts, e.g. ("covered", i, j)
    robot_at: int = -1  # furniture the robot stands in front of, -1 if none
    heading: float = 0.0  # robot yaw (radians)
    version: int = 0

    def __post_init__(self) -> None:
        n = len(self.objects)
        self.unary = self.unary or [0] * n
        self.group = self.group or [0] * n
        self.placement = self.placement or [None] * n
        self.index = {}
        for i, spec in enumerate(self.objects):
            self.index[spec.name] = i
            self.index[spec.bddl] = i
        self._half = [spec.half for spec in self.objects]
        self._cache: dict[tuple, bool] = {}

    # ------------------------------------------------------------------ lookup
    def __len__(self) -> int:
        return len(self.objects)

    def idx(self, name: str) -> int:
        """Index of an object by agent name or BDDL instance name (KeyError if unknown)."""
        return self.index[name]

    def name(self, i: int) -> str:
        return self.objects[i].name

    def items(self) -> Iterator[int]:
        return (i for i, o in enumerate(self.objects) if o.kind == "item")

    def furniture(self) -> Iterator[int]:
        return (i for i, o in enumerate(self.objects) if o.kind == "furniture")

    # ------------------------------------------------------------------ state
    def touch(self) -> None:
        """Mark the state as changed (invalidates derived relations and renders)."""
        self.version += 1
        self._cache.clear()

    def get(self, state: str, i: int) -> bool:
        return bool(self.unary[i] >> _U[state] & 1)

    def set(self, state: str, i: int, value: bool) -> None:
        bit = 1 << _U[state]
        self.unary[i] = (self.unary[i] | bit) if value else (self.unary[i] & ~bit)
        self.touch()

    def snapshot(self) -> Snapshot:
        return Snapshot(list(self.pos), list(self.unary), self.held, list(self.group), list(self.placement),
                        frozenset(self.facts), self.robot_at, self.heading, self.version)

    def restore(self, snap: Snapshot) -> None:
        self.pos, self.unary, self.held = list(snap.pos), list(snap.unary), snap.held
        self.group, self.placement = list(snap.group), list(snap.placement)
        self.facts, self.robot_at, self.heading = set(snap.facts), snap.robot_at, snap.heading
        self.touch()

    def state_key(self) -> tuple:
        """Symbolic identity of the state (used by the planner to detect repeats)."""
        return (self.robot_at, self.held, tuple(self.placement), tuple(self.unary), frozenset(self.facts))

    # ------------------------------------------------------------------ geometry
    def box(self, i: int) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
        p, h = self.pos[i], self._half[i]
        return (p[0] - h[0], p[1] - h[1], p[2] - h[2]), (p[0] + h[0], p[1] + h[1], p[2] + h[2])

    def distance(self, a: int, b: int) -> float:
        """Horizontal distance between the centroids of a and b (what the agent is told)."""
        pa, pb = self.pos[a], self.pos[b]
        return math.hypot(pa[0] - pb[0], pa[1] - pb[1])

    def reach_distance(self, b: int) -> float:
        """Horizontal distance from the robot's centre to the nearest point of b's box."""
        pr, pb, hb = self.pos[0], self.pos[b], self._half[b]
        dx = max(abs(pr[0] - pb[0]) - hb[0], 0.0)
        dy = max(abs(pr[1] - pb[1]) - hb[1], 0.0)
        return math.hypot(dx, dy)

    def room_of(self, i: int) -> str | None:
        x, y = self.pos[i][0], self.pos[i][1]
        for room, (x0, y0, x1, y1) in self.rooms.items():
            if x0 <= x <= x1 and y0 <= y <= y1:
                return room
        return None

    def holds(self, relation: str, a: int, b: int) -> bool:
        """Whether kinematic relation(a, b) holds, from poses and boxes (cached per state)."""
        key = (relation, a, b)
        hit = self._cache.get(key)
        if hit is None:
            hit = self._cache[key] = a != b and self.group[a] == self.group[b] and _RELATIONS[relation](self, a, b)
        return hit

    def relations(self, among: Iterable[int] | None = None, kinds: Iterable[str] = KINEMATIC) -> list[tuple[int, str, int]]:
        """All (a, relation, b) triples that hold among the given objects (default: all)."""
        ids = list(range(len(self.objects)) if among is None else among)
        out = []
        for a in ids:
            for b in ids:
                if a == b or self.group[a] != self.group[b] or not _near(self, a, b):
                    continue
                out.extend((a, r, b) for r in kinds if self.holds(r, a, b))
        return out

    # ------------------------------------------------------------------ containment
    def contents(self, i: int) -> list[int]:
        """Objects resting on or inside i, transitively (they move with i)."""
        out, stack = [], [i]
        while stack:
            j = stack.pop()
            for k, pl in enumerate(self.placement):
                if pl is not None and pl[1] == j and pl[0] in ("ontop", "inside") and self.group[k] == self.group[i]:
                    out.append(k)
                    stack.append(k)
        return out

    def enclosing(self, i: int) -> list[int]:
        """Containers that i is (transitively) inside, innermost first."""
        out, j, seen = [], i, set()
        while self.placement[j] is not None and j not in seen:
            seen.add(j)
            mode, j = self.placement[j]
            if mode == "inside":
                out.append(j)
        return out

    def hidden_by(self, i: int) -> int | None:
        """The closed container that hides i, if any (its contents are neither visible nor reachable)."""
        if self.group[i] != 0:
            return None
        for c in self.enclosing(i):
            if "openable" in self.objects[c].abilities and not self.get("open", c):
                return c
        return None

    def move(self, i: int, center: tuple[float, float, float], group: int = 0) -> None:
        """Move i to a new centre, carrying its contents along, and set their group."""
        dx, dy, dz = (center[k] - self.pos[i][k] for k in range(3))
        for j in [i, *self.contents(i)]:
            p = self.pos[j]
            self.pos[j] = (p[0] + dx, p[1] + dy, p[2] + dz)
            self.group[j] = group
        self.touch()


# ---------------------------------------------------------------------- relation predicates
ROBOT_NEXTTO_M = 0.3  # the robot is next to what it stands at (actions.STANDOFF = 0.25 m) whatever its size

def _near(w: World, a: int, b: int) -> bool:
    """Cheap rejection: boxes further apart than any relation's reach."""
    (alo, ahi), (blo, bhi) = w.box(a), w.box(b)
    return not (alo[0] - bhi[0] > 0.7 or blo[0] - ahi[0] > 0.7 or alo[1] - bhi[1] > 0.7 or blo[1] - ahi[1] > 0.7)


def _ontop(w: World, a: int, b: int) -> bool:
    if w.objects[b].kind == "agent" or w.objects[a].kind == "floor":
        return False
    pa, ha, pb, hb = w.pos[a], w._half[a], w.pos[b], w._half[b]
    return (abs((pa[2] - ha[2]) - (pb[2] + hb[2])) <= TOL_Z and abs(pa[0] - pb[0]) <= hb[0] + TOL_XY
            and abs(pa[1] - pb[1]) <= hb[1] + TOL_XY)


def _inside(w: World, a: int, b: int) -> bool:
    if not w.objects[b].container:
        return False
    pa, pb, hb = w.pos[a], w.pos[b], w._half[b]
    return abs(pa[0] - pb[0]) < hb[0] and abs(pa[1] - pb[1]) < hb[1] and abs(pa[2] - pb[2]) < hb[2]


def _under(w: World, a: int, b: int) -> bool:
    ob = w.objects[b]
    if ob.container or ob.kind in ("floor", "agent") or w.objects[a].kind in ("floor", "furniture"):
        return False
    pa, ha, pb, hb = w.pos[a], w._half[a], w.pos[b], w._half[b]
    return (abs(pa[0] - pb[0]) <= hb[0] and abs(pa[1] - pb[1]) <= hb[1]
            and pa[2] + ha[2] <= pb[2] + hb[2] - TOL_Z and pa[2] < pb[2])


def _touching(w: World, a: int, b: int) -> bool:
    (alo, ahi), (blo, bhi) = w.box(a), w.box(b)
    return all(alo[k] - bhi[k] <= TOUCH and blo[k] - ahi[k] <= TOUCH for k in range(3))


def _nextto(w: World, a: int, b: int) -> bool:
    oa, ob = w.objects[a], w.objects[b]
    if oa.kind == "floor" or ob.kind == "floor":
        return False
    (alo, ahi), (blo, bhi) = w.box(a), w.box(b)
    if alo[2] - bhi[2] > TOL_Z or blo[2] - ahi[2] > TOL_Z:  # no vertical overlap
        return False
    if _ontop(w, a, b) or _ontop(w, b, a) or _inside(w, a, b) or _inside(w, b, a):
        return False
    gx = max(alo[0] - bhi[0], blo[0] - ahi[0], 0.0)
    gy = max(alo[1] - bhi[1], blo[1] - ahi[1], 0.0)
    ext = max(oa.size[0], oa.size[1]) + max(ob.size[0], ob.size[1])
    limit = min(0.6, max(0.1, 0.25 * ext))
    if oa.kind == "agent" or ob.kind == "agent":  # MoveBot stands 0.25 m off, even from a small chair
        limit = max(limit, ROBOT_NEXTTO_M)
    return math.hypot(gx, gy) <= limit


_RELATIONS = {"ontop": _ontop, "inside": _inside, "under": _under, "touching": _touching, "nextto": _nextto}
