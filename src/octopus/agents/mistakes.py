"""Plausible wrong steps for the oracle teacher's exploration (paper §4.1, Fig. 4: trial and error).

Each kind turns the privileged plan for the current state into a step that a confident but fallible
teacher could write instead of the plan's next one:

- `wrong_object`: the next step applied to another visible object of a similar kind, or to a wrong
  destination/container (moving to that object first if needed); it often executes and is merely useless;
- `missing_precondition`: a later step of the plan tried now, skipping what it needs (an `open`, a
  grasp, a free hand), e.g. taking bacon from the fridge before opening it;
- `out_of_reach`: an interaction of the plan without the MoveBot that brings the robot within reach;
- `small_object_movebot`: MoveBot to a small item instead of the furniture it is on or in;
- `wrong_furniture`: the plan's MoveBot to another piece of furniture (the guess of an agent that cannot
  tell where the item is), then its interaction, out of reach: the error names the furniture to go to.

Every candidate is tried on the world (which is restored) and kept only if it does what its kind says:
the last three fail with the error their name describes; `wrong_object` prefers candidates that execute.

    for m in mistakes("out_of_reach", world, plan, rng): ...   # preference order; empty: kind not applicable
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

from octopus.sim.actions import PAIR_FUNCTIONS, STATE_ACTIONS, ActionError, apply, stand_point
from octopus.sim.episode import observed
from octopus.sim.world import World

Call = tuple[str, tuple[str, ...]]
Step = list[Call]

PRECONDITION_ERRORS = ("is closed", "hands are full", "not in the robot's hands")


@dataclass(frozen=True)
class Mistake:
    """A wrong step, the plan its writer still believes in afterwards, and what the simulator says to it."""

    kind: str
    step: Step
    later: list[Step]
    error: str | None  # the ActionError it raises from the current state; None: it executes


def try_step(w: World, step: Step) -> str | None:
    """The error the step raises from the world's current state (None: it executes); the world is restored."""
    before = w.snapshot()
    try:
        for fn, args in step:
            apply(w, fn, args)
        return None
    except ActionError as err:
        return str(err)
    finally:
        w.restore(before)


# ---------------------------------------------------------------------- helpers
def _manip(step: Step) -> Call:
    return step[-1]


def _move_target(step: Step) -> str | None:
    return step[0][1][0] if step[0][0] == "MoveBot" else None


def _in_place(w: World, plan: list[Step], j: int) -> Step:
    """Step j of the plan, with the MoveBot that would have put the robot where step j expects it."""
    step = list(plan[j])
    if _move_target(step) is not None:
        return step
    at = next((_move_target(s) for s in reversed(plan[:j]) if _move_target(s) is not None), None)
    if at is None or w.idx(at) == w.robot_at:
        return step
    return [("MoveBot", (at,)), *step]


def _furniture_of(w: World, i: int) -> int | None:
    """The furniture i stands on or in (transitively), i itself if furniture, else the nearest usable one."""
    j, seen = i, set()
    while w.objects[j].kind != "furniture" and w.placement[j] is not None and j not in seen:
        seen.add(j)
        j = w.placement[j][1]
    if w.objects[j].kind == "furniture":
        return j
    best, best_d = None, w.reach_m
    for f in w.furniture():
        x, y, _ = stand_point(w, f)
        p, h = w.pos[i], w.objects[i].half
        d = (max(abs(x - p[0]) - h[0], 0.0) ** 2 + max(abs(y - p[1]) - h[1], 0.0) ** 2) ** 0.5
        if d <= best_d:
            best, best_d = f, d
    return best


def _similarity(w: World, a: int, b: int) -> int:
    """0: same category, 1: on the same furniture, 2: otherwise (lower is a more plausible confusion)."""
    if w.objects[a].category == w.objects[b].category:
        return 0
    return 1 if _furniture_of(w, a) == _furniture_of(w, b) else 2


# ---------------------------------------------------------------------- kinds
def _wrong_object(w: World, plan: list[Step], rng: random.Random) -> list[tuple[Step, list[Step]]]:
    first = plan[0]
    fn, args = _manip(first)
    planned = {c for s in plan for c in s}
    visible = [i for i in observed(w) if w.group[i] == 0]
    options: list[tuple[int, int, Call]] = []  # (similarity, the object confused, the wrong call)
    if fn == "EasyGrasp" or fn in STATE_ACTIONS:
        x = w.idx(args[0])
        ability = STATE_ACTIONS[fn][0] if fn in STATE_ACTIONS else None
        for y in visible:
            o = w.objects[y]
            if y == x or (ability is None and o.kind != "item") or (ability and ability not in o.abilities):
                continue
            if ability and w.get(STATE_ACTIONS[fn][1], y) == STATE_ACTIONS[fn][2]:
                continue  # already in that state: not even a mistake worth recording
            options.append((_similarity(w, x, y), y, (fn, (o.name,))))
    elif fn in PAIR_FUNCTIONS:
        x, t = w.idx(args[0]), w.idx(args[1])
        for y in visible:
            o = w.objects[y]
            if y in (x, t) or (PAIR_FUNCTIONS[fn] == "inside" and not o.container):
                continue
            if PAIR_FUNCTIONS[fn] == "ontop" and o.kind != "furniture" and o.category != w.objects[t].category:
                continue
            options.append((_similarity(w, t, y), y, (fn, (args[0], o.name))))
        for h in w.held:  # the other object in hand
            if h != x:
                options.append((1, t, (fn, (w.name(h), args[1]))))
    options = [o for o in options if o[2] not in planned]
    rng.shuffle(options)
    move = [c for c in first if c[0] == "MoveBot"]
    scored = []
    for similarity, y, call in options:
        step = [*move, call]
        err = try_step(w, step)
        f = _furniture_of(w, y)
        if err is not None and "out of reach" in err and f is not None and f != w.robot_at:
            moved = [("MoveBot", (w.name(f),)), call]
            if try_step(w, moved) is None:
                step, err = moved, None
        scored.append((similarity, err is not None, step))
    scored.sort(key=lambda s: s[:2])  # stable: the shuffle breaks ties
    return [(step, plan[1:]) for _, _, step in scored]


def _missing_precondition(w: World, plan: list[Step], rng: random.Random) -> list[tuple[Step, list[Step]]]:
    return [(_in_place(w, plan, j), plan[j + 1:]) for j in range(1, len(plan))]


def _out_of_reach(w: World, plan: list[Step], rng: random.Random) -> list[tuple[Step, list[Step]]]:
    return [([_manip(s)], plan[j + 1:]) for j, s in enumerate(plan)]


def _small_object_movebot(w: World, plan: list[Step], rng: random.Random) -> list[tuple[Step, list[Step]]]:
    visible = set(observed(w))
    out = []
    for j, s in enumerate(plan):
        fn, args = _manip(s)
        for a in args:
            i = w.idx(a)
            if w.objects[i].kind == "item" and w.group[i] == 0:
                out.append((i not in visible, j, [("MoveBot", (a,)), (fn, args)], plan[j + 1:]))
    out.sort(key=lambda c: c[:2])
    return [(step, later) for _, _, step, later in out]


def _wrong_furniture(w: World, plan: list[Step], rng: random.Random) -> list[tuple[Step, list[Step]]]:
    visible = set(observed(w))
    out = []
    for j, s in enumerate(plan):
        target = _move_target(s)
        if target is None or len(s) < 2:
            continue
        others = [f for f in w.furniture() if w.name(f) != target]
        rng.shuffle(others)
        others.sort(key=lambda f: f not in visible)  # furniture in view is the likelier guess
        out += [(j, [("MoveBot", (w.name(f),)), *s[1:]], plan[j + 1:]) for f in others[:3]]
    out.sort(key=lambda c: c[0])
    return [(step, later) for _, step, later in out]


Generator = Callable[[World, list[Step], random.Random], list[tuple[Step, list[Step]]]]
KINDS: dict[str, tuple[Generator, Callable[[str | None], bool]]] = {
    "wrong_object": (_wrong_object, lambda err: True),
    "missing_precondition": (_missing_precondition,
                             lambda err: err is not None and any(s in err for s in PRECONDITION_ERRORS)),
    "out_of_reach": (_out_of_reach, lambda err: err is not None and "out of reach" in err),
    "small_object_movebot": (_small_object_movebot, lambda err: err is not None and err.startswith("cannot MoveBot")),
    "wrong_furniture": (_wrong_furniture, lambda err: err is not None and "out of reach" in err),
}


def mistakes(kind: str, w: World, plan: list[Step], rng: random.Random) -> list[Mistake]:
    """Wrong steps of `kind` for the state whose plan is `plan`, most plausible first (empty: kind does not apply)."""
    if not plan:
        return []
    generate, intended = KINDS[kind]
    out: list[Mistake] = []
    seen: list[Step] = []
    for step, later in generate(w, plan, rng):
        if step in seen or step == list(plan[0]):
            continue
        seen.append(step)
        err = try_step(w, step)
        if intended(err):
            out.append(Mistake(kind, step, list(later), err))
    return out
