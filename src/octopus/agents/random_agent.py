"""The random agent: one random API call on a random visible object per step (a lower bound)."""

from __future__ import annotations

import random

from octopus.agents import register
from octopus.agents.writing import code_for, describe, effects
from octopus.sim.actions import OBJECT_FUNCTIONS, PAIR_FUNCTIONS
from octopus.sim.episode import SimState, observed
from octopus.protocol import Response


@register("random")
class RandomAgent:
    reads = frozenset({"state"})  # which objects exist and are visible (privileged, though it uses little of it)

    def __init__(self, seed: int = 0) -> None:
        self.rng = random.Random(seed)

    def respond(self, obs: dict, info: dict) -> str:
        state: SimState = info["state"]
        w = state.world
        names = [w.name(i) for i in observed(w)] + [w.name(i) for i in w.held]
        fn = self.rng.choice(["MoveBot", *OBJECT_FUNCTIONS, *PAIR_FUNCTIONS])
        args = (self.rng.choice(names),) if fn not in PAIR_FUNCTIONS else (self.rng.choice(names), self.rng.choice(names))
        step = [(fn, args)]
        inventory, states = effects(w, step)
        return Response(explain="A random action.", subtasks=(describe(step),), code=code_for(step, 1),
                        inventory=inventory, target_states=states).render()
