"""Goal evaluation with bddl's own goal machinery over the embedded world.

`SimBackend` maps BDDL predicates to reads of a `World`: unary states from the state bits, kinematic
relations from geometry, everything else (substances, on_fire, ...) from plain facts. `Goal` compiles
a task's BDDL problem once and then checks it (`satisfied`) or scores partial progress (`progress`, the
best fraction of ground goal literals satisfied, bddl's `get_reward`).
"""

from __future__ import annotations

from bddl.activity import (Conditions, evaluate_goal_conditions, get_goal_conditions, get_ground_goal_state_options,
                           get_object_scope, get_reward)
from bddl.backend_abc import BDDLBackend
from bddl.logic_base import BinaryAtomicFormula, UnaryAtomicFormula

from octopus.sim.world import KINEMATIC, UNARY, World


class Handle:
    """A BDDL scope value: one object of one world."""

    __slots__ = ("world", "i", "name")

    def __init__(self, world: World, i: int) -> None:
        self.world, self.i, self.name = world, i, world.objects[i].bddl


def _unary(state: str) -> type:
    def _evaluate(self, obj: Handle) -> bool:
        return obj.world.get(state, obj.i)
    return type(f"{state}_predicate", (UnaryAtomicFormula,),
                {"STATE_NAME": state, "_evaluate": _evaluate, "_sample": lambda self, obj, value: None})


def _kinematic(relation: str) -> type:
    def _evaluate(self, a: Handle, b: Handle) -> bool:
        return a.world.holds(relation, a.i, b.i)
    return type(f"{relation}_predicate", (BinaryAtomicFormula,),
                {"STATE_NAME": relation, "_evaluate": _evaluate, "_sample": lambda self, a, b, value: None})


def _fact(pred: str, arity: int) -> type:
    if arity == 1:
        def _evaluate1(self, obj: Handle) -> bool:
            return (pred, obj.i) in obj.world.facts
        return type(f"{pred}_fact", (UnaryAtomicFormula,),
                    {"STATE_NAME": pred, "_evaluate": _evaluate1, "_sample": lambda self, obj, value: None})

    def _evaluate2(self, a: Handle, b: Handle) -> bool:
        return (pred, a.i, b.i) in a.world.facts
    return type(f"{pred}_fact", (BinaryAtomicFormula,),
                {"STATE_NAME": pred, "_evaluate": _evaluate2, "_sample": lambda self, a, b, value: None})


def _special() -> dict[str, type]:
    def closed(self, obj: Handle) -> bool:
        return not obj.world.get("open", obj.i)

    def real(self, obj: Handle) -> bool:
        return ("future", obj.i) not in obj.world.facts

    def grasped(self, a: Handle, b: Handle) -> bool:
        return b.i in a.world.held

    noop = {"_sample": lambda self, *a: None}
    return {
        "closed": type("closed_predicate", (UnaryAtomicFormula,), {"STATE_NAME": "closed", "_evaluate": closed, **noop}),
        "real": type("real_predicate", (UnaryAtomicFormula,), {"STATE_NAME": "real", "_evaluate": real, **noop}),
        "grasped": type("grasped_predicate", (BinaryAtomicFormula,), {"STATE_NAME": "grasped", "_evaluate": grasped, **noop}),
    }


FACT_UNARY = ("future", "on_fire", "broken", "empty")
FACT_BINARY = ("covered", "filled", "contains", "saturated", "overlaid", "attached", "draped", "insource")
PREDICATES: dict[str, type] = {
    **{s: _unary(s) for s in UNARY},
    **{r: _kinematic(r) for r in KINEMATIC},
    **{p: _fact(p, 1) for p in FACT_UNARY},
    **{p: _fact(p, 2) for p in FACT_BINARY},
    **_special(),
}


class SimBackend(BDDLBackend):
    """bddl backend reading the embedded world (unknown predicates raise KeyError, as bddl expects)."""

    def get_predicate_class(self, predicate_name: str) -> type:
        return PREDICATES[predicate_name]


BACKEND = SimBackend()


class Goal:
    """A task's BDDL goal compiled against one world."""

    def __init__(self, activity: str, problem: str, world: World) -> None:
        conds = Conditions(activity, 0, "omnigibson", predefined_problem=problem)
        scope = get_object_scope(conds)
        for inst in scope:
            scope[inst] = Handle(world, world.idx(inst))
        self.compiled = get_goal_conditions(conds, BACKEND, scope)
        self.options = get_ground_goal_state_options(conds, BACKEND, scope, self.compiled)

    def satisfied(self) -> bool:
        return evaluate_goal_conditions(self.compiled)[0]

    def progress(self) -> float:
        """Best fraction of ground goal literals that hold (1.0 when the goal is met)."""
        return get_reward(self.options)

    def ground_literals(self) -> list[list[list]]:
        """Each ground option as a list of literals like ["inside", "a.n.01_1", "b.n.01_1"] or ["not", [...]]."""
        return [[h.body for h in option] for option in self.options]
