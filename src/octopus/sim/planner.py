"""Privileged planner: A* search over the symbolic state for a plan that reaches a task's BDDL goal.

A plan is a list of steps; a step is one subtask = an optional MoveBot followed by one manipulation
(grasp, put, open, cook, ...), i.e. what one `act(robot, env, camera)` does. Candidate actions are
generated from the objects relevant to the goal (goal objects, what holds or hides them, furniture
from which they can be reached); every candidate is executed with the simulator's own actions, so a
found plan is a proof that the task is solvable within the step budget. The heuristic is the number of
unsatisfied literals of the closest ground goal option.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field

from octopus.sim.actions import PAIR_FUNCTIONS, STATE_ACTIONS, ActionError, apply, stand_point
from octopus.sim.goals import Goal
from octopus.sim.world import World

Call = tuple[str, tuple[str, ...]]


@dataclass
class PlanResult:
    steps: list[list[Call]] | None  # None: no plan within the budget
    expanded: int
    reason: str = ""

    @property
    def solved(self) -> bool:
        return self.steps is not None


@dataclass(order=True)
class _Node:
    f: float
    tie: int
    g: int = field(compare=False)
    steps: tuple = field(compare=False)
    snap: object = field(compare=False)


def _literal_objects(goal: Goal, w: World) -> set[int]:
    out: set[int] = set()
    for option in goal.ground_literals():
        for lit in option:
            body = lit[1] if lit[0] == "not" else lit
            out.update(w.index[a] for a in body[1:] if a in w.index)
    return out


def _unsatisfied(goal: Goal) -> int:
    return min(sum(not h.evaluate() for h in option) for option in goal.options)


def candidates(w: World, goal_objs: set[int]) -> list[list[Call]]:
    """Macro-steps worth trying in this state (MoveBot + one manipulation, or a manipulation alone)."""
    names = w.objects
    relevant = set(goal_objs)
    for i in goal_objs:
        relevant.update(w.enclosing(i))
        if w.placement[i] is not None:
            relevant.add(w.placement[i][1])
    relevant.discard(0)
    manips: list[Call] = []
    for i in sorted(relevant):
        o = names[i]
        if o.kind == "item" and i not in w.held and w.group[i] == 0:
            manips.append(("EasyGrasp", (o.name,)))
        for fn, (ability, state, value, _) in STATE_ACTIONS.items():
            if ability in o.abilities and w.get(state, i) != value:
                manips.append((fn, (o.name,)))
    targets = [t for t in sorted(goal_objs) if names[t].kind in ("item", "furniture", "floor") and w.group[t] == 0]
    if w.robot_at >= 0:
        targets.append(w.robot_at)
    for h in w.held:
        for t in dict.fromkeys(targets):
            if t != h:
                for fn, mode in PAIR_FUNCTIONS.items():
                    if mode == "ontop" or names[t].container:
                        manips.append((fn, (names[h].name, names[t].name)))
    moves = [f for f in w.furniture() if f != w.robot_at and _useful_stand(w, f, relevant | set(targets))]
    steps = [[m] for m in manips]
    steps += [[("MoveBot", (names[f].name,)), m] for f in moves for m in manips]
    return steps


def _useful_stand(w: World, f: int, relevant: set[int]) -> bool:
    x, y, _ = stand_point(w, f)
    for i in relevant:
        p, h = w.pos[i], w.objects[i].half
        if w.group[i] != 0 or w.objects[i].kind == "floor":
            continue
        dx, dy = max(abs(x - p[0]) - h[0], 0.0), max(abs(y - p[1]) - h[1], 0.0)
        if (dx * dx + dy * dy) ** 0.5 <= w.reach_m:
            return True
    return False


def plan(w: World, goal: Goal, max_steps: int = 10, max_expansions: int = 20_000, weight: float = 1.5) -> PlanResult:
    """Search from the world's current state; the world is left as it was."""
    start = w.snapshot()
    goal_objs = _literal_objects(goal, w)
    tie = itertools.count()
    try:
        if goal.satisfied():
            return PlanResult([], 0)
        frontier = [_Node(weight * _unsatisfied(goal), next(tie), 0, (), start)]
        seen = {w.state_key(): 0}
        expanded = 0
        while frontier and expanded < max_expansions:
            node = heapq.heappop(frontier)
            if node.g >= max_steps:
                continue
            expanded += 1
            w.restore(node.snap)
            for step in candidates(w, goal_objs):
                w.restore(node.snap)
                try:
                    for fn, args in step:
                        apply(w, fn, args)
                except ActionError:
                    continue
                if goal.satisfied():
                    return PlanResult([*node.steps, step], expanded)
                key = w.state_key()
                g = node.g + 1
                if seen.get(key, max_steps + 1) <= g:
                    continue
                seen[key] = g
                heapq.heappush(frontier, _Node(g + weight * _unsatisfied(goal), next(tie), g, (*node.steps, step), w.snapshot()))
        reason = "search budget exhausted" if frontier else f"no plan within {max_steps} steps"
        return PlanResult(None, expanded, reason)
    finally:
        w.restore(start)
