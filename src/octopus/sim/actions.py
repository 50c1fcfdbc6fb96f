"""The 16 agent functions (OctoGibson's programming API) and the primitives behind them.

Primitives (`move_bot`, `grasp`, `put`, `change_state`) act on a `World` by object index and raise
`ActionError` with a message an agent can act on when a precondition is violated; they are used by
the planner and by `replay`. `Api` exposes the paper's function names (`MoveBot(env, robot, obj,
camera)`, `EasyGrasp(robot, obj)`, ...) over object handles from `registry(env, name)` and logs each
call, so that code run in the sandbox worker can be replayed exactly on the caller's world.
"""

from __future__ import annotations

import difflib
import math
from typing import Any, Callable

from octopus.sim.world import World

STANDOFF = 0.25  # gap between the robot and the furniture it moves to (m)
ROBOT_HALF = 0.25
# action -> (ability it needs, unary state it sets, value, states it clears)
STATE_ACTIONS: dict[str, tuple[str, str, bool, tuple[str, ...]]] = {
    "open": ("openable", "open", True, ()),
    "close": ("openable", "open", False, ()),
    "toggle_on": ("toggleable", "toggled_on", True, ()),
    "toggle_off": ("toggleable", "toggled_on", False, ()),
    "cook": ("cookable", "cooked", True, ()),
    "burn": ("burnable", "burnt", True, ()),
    "freeze": ("freezable", "frozen", True, ("hot",)),
    "heat": ("heatable", "hot", True, ("frozen",)),
    "fold": ("foldable", "folded", True, ("unfolded",)),
    "unfold": ("foldable", "unfolded", True, ("folded",)),
}
_VERB = {"openable": "opened or closed", "toggleable": "toggled", "cookable": "cooked", "burnable": "burnt",
         "freezable": "frozen", "heatable": "heated", "foldable": "folded or unfolded"}


class ActionError(Exception):
    """A violated precondition of an agent function; the message becomes the next Execution Error."""


# ---------------------------------------------------------------------- checks
def _check_reachable(w: World, i: int, doing: str) -> None:
    """`doing` completes "open it before ...", e.g. "taking bacon_1 out"."""
    o = w.objects[i]
    if w.group[i] != 0:
        return  # held objects are always in reach
    hider = w.hidden_by(i)
    if hider is not None:
        raise ActionError(f"{w.name(hider)} is closed: open it before {doing}")
    d = w.reach_distance(i)
    if d > w.reach_m:
        # the feedback names the furniture to go to, as the small-object MoveBot error does
        j = _support(w, i)
        where = f"move to {w.name(j)}, the furniture it is on or in," if j is not None else \
            "move to the furniture it is on or near"
        raise ActionError(f"{o.name} is {d:.2f} m away, out of reach ({w.reach_m:g} m): {where} with MoveBot first")


def can_move_to(w: World, i: int) -> bool:
    """MoveBot only accepts large objects standing on the floor (furniture)."""
    return w.objects[i].kind == "furniture"


def stand_point(w: World, f: int) -> tuple[float, float, float]:
    """Where the robot stands to face furniture f."""
    o, p = w.objects[f], w.pos[f]
    fx, fy = o.front
    depth = abs(fx) * o.half[0] + abs(fy) * o.half[1]
    d = depth + STANDOFF + ROBOT_HALF
    return (p[0] + fx * d, p[1] + fy * d, w.pos[0][2])


# ---------------------------------------------------------------------- primitives
def move_bot(w: World, f: int) -> None:
    o = w.objects[f]
    if not can_move_to(w, f):
        where = _support_hint(w, f)
        raise ActionError(f"cannot MoveBot to {o.name}: the robot can only move to large objects standing on the "
                          f"floor (tables, counters, cabinets, appliances){where}")
    w.pos[0] = stand_point(w, f)
    w.heading = math.atan2(-o.front[1], -o.front[0])
    w.robot_at = f
    for k, j in enumerate(w.held):  # what the robot holds travels with it
        w.move(j, hand_point(w, k), group=w.group[j])
    w.touch()


def hand_point(w: World, k: int) -> tuple[float, float, float]:
    """Where the k-th held object is carried: beside the robot, right hand first, below its head camera
    (so what it carries never blocks the view straight ahead)."""
    x, y, _ = w.pos[0]
    c, s = math.cos(w.heading), math.sin(w.heading)
    lateral = 0.4 * (-1 if k % 2 == 0 else 1)
    return (x + 0.2 * c - lateral * s, y + 0.2 * s + lateral * c, 0.8 + 0.35 * (k // 2))


def _support(w: World, i: int) -> int | None:
    """The furniture object i stands on or in (through containers), None if it is on the floor."""
    j, seen = i, set()
    while w.placement[j] is not None and j not in seen:
        seen.add(j)
        j = w.placement[j][1]
        if can_move_to(w, j):
            return j
    return None


def _support_hint(w: World, i: int) -> str:
    j = _support(w, i)
    return f"; move to {w.name(j)} instead" if j is not None else ""


def grasp(w: World, i: int) -> None:
    o = w.objects[i]
    if o.kind != "item":
        raise ActionError(f"{o.name} cannot be grasped: it is {'fixed furniture' if o.kind == 'furniture' else 'not an object'}")
    if i in w.held or w.group[i] != 0:
        raise ActionError(f"{o.name} is already in the robot's hands")
    if len(w.held) >= w.hands:
        raise ActionError(f"both hands are full ({', '.join(w.name(j) for j in w.held)}): put something down before grasping {o.name}")
    _check_reachable(w, i, f"taking {o.name} out")
    w.move(i, hand_point(w, len(w.held)), group=i + 1)
    w.placement[i] = None
    w.held = (*w.held, i)
    w.touch()


def fits_inside(w: World, i: int, c: int) -> bool:
    a = sorted(w.objects[i].size)
    b = sorted(w.objects[c].size)
    return all(x <= y * 0.95 for x, y in zip(a, b))


def put(w: World, i: int, t: int, mode: str) -> None:
    """Put held object i onto (mode="ontop") or inside (mode="inside") object t."""
    o, ot = w.objects[i], w.objects[t]
    if i not in w.held:
        raise ActionError(f"{o.name} is not in the robot's hands: grasp it with EasyGrasp first")
    if t == i or w.group[t] != 0:
        raise ActionError(f"cannot put {o.name} {'on' if mode == 'ontop' else 'in'}to {ot.name}: "
                          f"{ot.name} is {'the same object' if t == i else 'being held'}")
    if ot.kind == "agent":
        raise ActionError(f"cannot put {o.name} on the robot")
    _check_reachable(w, t, f"putting {o.name} on or in {ot.name}")
    if mode == "inside":
        if not ot.container:
            raise ActionError(f"{ot.name} is not a container: nothing can be put inside it")
        if "openable" in ot.abilities and not w.get("open", t):
            raise ActionError(f"{ot.name} is closed: open it before putting {o.name} inside")
        if not fits_inside(w, i, t):
            raise ActionError(f"{o.name} is too large to fit inside {ot.name}")
    center = find_spot(w, i, t, mode)
    w.move(i, center, group=0)
    w.placement[i] = (mode, t)
    w.held = tuple(j for j in w.held if j != i)
    w.touch()


def change_state(w: World, action: str, i: int) -> None:
    ability, state, value, clears = STATE_ACTIONS[action]
    o = w.objects[i]
    if ability not in o.abilities:
        raise ActionError(f"{o.name} cannot be {_VERB[ability]}: {action} needs a {ability} object")
    _check_reachable(w, i, f"reaching {o.name}")
    w.set(state, i, value)
    for s in clears:
        w.set(s, i, False)


# ---------------------------------------------------------------------- placement geometry
def find_spot(w: World, i: int, t: int, mode: str) -> tuple[float, float, float]:
    """A free centre for object i on/inside/under/next to t (deterministic; falls back to overlap)."""
    hi, ht, pt = w.objects[i].half, w.objects[t].half, w.pos[t]
    ot = w.objects[t]
    if mode == "ontop":
        levels = [pt[2] + ht[2] + hi[2]]
    elif mode == "inside":
        bottom, height = pt[2] - ht[2] + 0.05, 2 * ht[2] - 0.07  # above the container floor, not on the ground
        n = 3 if ot.kind == "furniture" and height > 0.9 else 1
        levels = [bottom + k * height / n + hi[2] for k in range(n) if bottom + k * height / n + 2 * hi[2] < pt[2] + ht[2]]
        levels = levels or [pt[2]]
    elif mode == "under":
        levels = [hi[2]]
    else:
        raise ValueError(f"unknown placement mode {mode!r}")
    span = [max(ht[k] - hi[k], 0.0) for k in (0, 1)]
    if ot.kind == "furniture":  # keep things near the front centre, where the robot can reach them
        lateral = 0 if abs(ot.front[1]) > 0 else 1
        span[lateral] = min(span[lateral], 0.6)
    others = [j for j, pl in enumerate(w.placement) if pl is not None and pl[1] == t and j != i and w.group[j] == 0]
    for z in levels:
        for x, y in _grid(pt, span, hi, ot.front):
            if not any(overlaps(w, j, (x, y, z), hi) for j in others):
                return (x, y, z)
    return (pt[0], pt[1], levels[0])


def _grid(pt, span, hi, front) -> list[tuple[float, float]]:
    step = [max(2 * hi[k] + 0.04, 0.08) for k in (0, 1)]
    xs = _axis(pt[0], span[0], step[0])
    ys = _axis(pt[1], span[1], step[1])
    pts = [(x, y) for x in xs for y in ys]
    # front-most and central spots first
    pts.sort(key=lambda q: (-(q[0] - pt[0]) * front[0] - (q[1] - pt[1]) * front[1], abs(q[0] - pt[0]) + abs(q[1] - pt[1])))
    return pts


def _axis(c: float, span: float, step: float) -> list[float]:
    n = int(span // step)
    return [c + k * step for k in range(-n, n + 1)]


def overlaps(w: World, j: int, c: tuple[float, float, float], h: tuple[float, float, float]) -> bool:
    """Whether object j's box intersects a box of half-extents h centred at c."""
    pj, hj = w.pos[j], w.objects[j].half
    return (abs(pj[0] - c[0]) < hj[0] + h[0] and abs(pj[1] - c[1]) < hj[1] + h[1]
            and abs(pj[2] - c[2]) < hj[2] + h[2])


# ---------------------------------------------------------------------- the agent-facing API
class Token:
    """The opaque robot, env and camera arguments of act(robot, env, camera)."""

    __slots__ = ("kind",)

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __repr__(self) -> str:
        return self.kind


class Ref:
    """What registry(env, name) returns: a handle on one object, by name."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


ROBOT, ENV, CAMERA = Token("robot"), Token("env"), Token("camera")
OBJECT_FUNCTIONS = ("EasyGrasp", *STATE_ACTIONS)  # (robot, obj)
PAIR_FUNCTIONS = {"put_ontop": "ontop", "put_inside": "inside"}  # (robot, obj1, obj2)
API_NAMES = ("registry", "donothing", "MoveBot", "EasyGrasp", "put_ontop", "put_inside", *STATE_ACTIONS)


MAX_CALLS = 10_000  # API calls in one step's code; a responsible act() makes a few dozen


class Api:
    """The 16 functions bound to one world; every effective call is appended to `log` (at most MAX_CALLS:
    code that loops over the API fails with a clear error instead of filling the sandbox's memory)."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.log: list[tuple[str, tuple[str, ...]]] = []
        self.calls = 0

    def _count(self) -> None:
        self.calls += 1
        if self.calls > MAX_CALLS:
            raise ActionError(f"more than {MAX_CALLS:,} API calls in one step; call each function a few times")

    def namespace(self) -> dict[str, Callable[..., Any]]:
        ns: dict[str, Callable[..., Any]] = {"registry": self.registry, "donothing": self.donothing,
                                             "MoveBot": self.MoveBot}
        for fn in OBJECT_FUNCTIONS:
            ns[fn] = self._object_fn(fn)
        for fn in PAIR_FUNCTIONS:
            ns[fn] = self._pair_fn(fn)
        return ns

    def _obj(self, fn: str, value: Any, arg: str) -> int:
        if not isinstance(value, Ref):
            raise ActionError(f"{fn}: {arg} must be an object from registry(env, name), got {type(value).__name__} {value!r:.40}")
        return self.world.idx(value.name)

    def _check_token(self, fn: str, value: Any, token: Token) -> None:
        if value is not token:
            raise ActionError(f"{fn}: expected `{token.kind}` as this argument, got {value!r:.40}")

    def registry(self, env: Any, name: Any) -> Ref:
        self._count()
        self._check_token("registry", env, ENV)
        if not isinstance(name, str) or name not in self.world.index:
            visible = [o.name for k, o in enumerate(self.world.objects) if self.world.hidden_by(k) is None]
            close = difflib.get_close_matches(str(name), visible, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ActionError(f"there is no object called {name!r} in the scene{hint}")
        self.log.append(("registry", (name,)))
        return Ref(self.world.objects[self.world.idx(name)].name)

    def donothing(self, env: Any) -> None:
        self._count()
        self._check_token("donothing", env, ENV)

    def MoveBot(self, env: Any, robot: Any, obj: Any, camera: Any) -> None:  # noqa: N802 (paper's name)
        self._count()
        self._check_token("MoveBot", env, ENV)
        self._check_token("MoveBot", robot, ROBOT)
        self._check_token("MoveBot", camera, CAMERA)
        f = self._obj("MoveBot", obj, "obj")
        move_bot(self.world, f)
        self.log.append(("MoveBot", (obj.name,)))

    def _object_fn(self, fn: str) -> Callable[[Any, Any], None]:
        def call(robot: Any, obj: Any) -> None:
            self._count()
            self._check_token(fn, robot, ROBOT)
            i = self._obj(fn, obj, "obj")
            grasp(self.world, i) if fn == "EasyGrasp" else change_state(self.world, fn, i)
            self.log.append((fn, (obj.name,)))
        call.__name__ = call.__qualname__ = fn
        return call

    def _pair_fn(self, fn: str) -> Callable[[Any, Any, Any], None]:
        def call(robot: Any, obj1: Any, obj2: Any) -> None:
            self._count()
            self._check_token(fn, robot, ROBOT)
            i, t = self._obj(fn, obj1, "obj1"), self._obj(fn, obj2, "obj2")
            put(self.world, i, t, PAIR_FUNCTIONS[fn])
            self.log.append((fn, (obj1.name, obj2.name)))
        call.__name__ = call.__qualname__ = fn
        return call


def apply(w: World, fn: str, args: tuple[str, ...]) -> None:
    """Apply one logged call by name (replay of sandboxed code, planner and oracle plans)."""
    if fn == "registry":
        return
    ids = [w.idx(a) for a in args]
    if fn == "MoveBot":
        move_bot(w, ids[0])
    elif fn == "EasyGrasp":
        grasp(w, ids[0])
    elif fn in PAIR_FUNCTIONS:
        put(w, ids[0], ids[1], PAIR_FUNCTIONS[fn])
    elif fn in STATE_ACTIONS:
        change_state(w, fn, ids[0])
    else:
        raise ActionError(f"unknown function {fn}")


class SandboxSession:
    """What the sandbox worker runs code against: a private copy of the world and the logging API."""

    def __init__(self, world: World) -> None:
        self.api = Api(world)
        self.globals = self.api.namespace()
        self.args = (ROBOT, ENV, CAMERA)

    def result(self) -> list[tuple[str, tuple[str, ...]]]:
        return self.api.log


def sandbox_session(payload: World) -> SandboxSession:
    """Factory named in the sandbox: `octopus.sim.actions:sandbox_session`."""
    return SandboxSession(payload)
