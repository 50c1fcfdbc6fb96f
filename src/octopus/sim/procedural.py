"""Procedural training tasks: new goals over the scenes and objects of the train split (issue: data at scale).

    tasks = procedural_tasks(suite_tasks, n=500, sim=params.sim, seed=0)    # each one proven by the planner

Each task starts from a train task's BEHAVIOR-1K scene and initial state (its objects, with their real
sizes and abilities) and asks for one or two goal literals the 16 functions can reach there: an item
`ontop` a piece of furniture, `inside` a container, something `open`, `cooked`, `frozen`, `hot`,
`toggled_on`, `folded` or `unfolded`. Instructions come in several phrasings; about one in five is a
`reason` task that names a purpose ("keep the milk cold") instead of spelling out the steps, in the
manner of the published list. Every task is proven solvable by the planner within `sim.max_steps`, and
the set is deterministic for a seed.

Objects are named by their whole category ("the swiss cheese") or, in a share `short_names` of the
mentions, by its last word ("the cheese") where no other object of the scene ends with that word: the
way the published list names them, so that the name a response writes (`swiss_cheese_1`) must come from
the views or the object list, not only from the instruction. Naming draws from its own random stream:
the goals, and so the proofs, do not depend on `short_names`.

No leakage: a base task's activity is never one an evaluation task uses, its scene is never an unseen
one (train tasks come from seen scenes only), and no goal equals an evaluation task's goal.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace
from typing import Callable

from octopus.config import SimParams
from octopus.sim.tasks import Task, words
from octopus.sim.world import World

#: predicate -> (ability an object needs, follow phrasings, reason phrasings); {0}, {1}: object words
_UNARY = {
    "open": ("openable", ("open the {0}", "open up the {0}"), ("let me see what is in the {0}",)),
    "cooked": ("cookable", ("cook the {0}", "get the {0} cooked"), ("get the {0} ready to eat",)),
    "frozen": ("freezable", ("freeze the {0}", "make the {0} frozen"), ("keep the {0} from going bad",)),
    "hot": ("heatable", ("heat the {0}", "warm up the {0}"), ("I would like the {0} warm",)),
    "toggled_on": ("toggleable", ("turn on the {0}", "switch the {0} on"), ("the {0} should be running",)),
    "folded": ("foldable", ("fold the {0}",), ("tidy the {0} away neatly",)),
    "unfolded": ("foldable", ("unfold the {0}", "spread out the {0}"), ("get the {0} ready to use",)),
}
_BINARY = {
    "ontop": (("put the {0} on the {1}", "place the {0} on top of the {1}", "move the {0} onto the {1}"),
              ("the {0} belongs on the {1}",)),
    "inside": (("put the {0} in the {1}", "place the {0} inside the {1}", "store the {0} in the {1}"),
               ("keep the {0} in the {1}", "the {0} should be in the {1}")),
}
_FOOD_STATES = ("cooked", "frozen", "hot")
REASON_SHARE = 0.2
TWO_GOAL_SHARE = 0.3


def head(inst: str) -> str:
    """The last word of an instance's category words, what a person calls it ("swiss cheese" -> "cheese";
    "bottle of milk" -> "bottle")."""
    return words(inst).split(" of ")[0].split(" ")[-1]


def namer(world: World, rng: random.Random, short_names: float) -> Callable[[str], str]:
    """instance -> its words in an instruction: the last word alone in a share `short_names` of the mentions
    where it names one object of this scene, the whole category otherwise."""
    counts = Counter(head(o.bddl) for o in world.objects)

    def name(inst: str) -> str:
        full, short = words(inst), head(inst)
        return short if short != full and counts.get(short) == 1 and rng.random() < short_names else full
    return name


def candidate_literals(world: World) -> list[list[str]]:
    """Goal literals over this world's objects that the 16 functions could make true and that do not hold yet."""
    objs = world.objects
    items = [i for i, o in enumerate(objs) if o.kind == "item"]
    furniture = [i for i, o in enumerate(objs) if o.kind == "furniture"]
    out: list[list[str]] = []
    for pred, (ability, _, _) in _UNARY.items():
        # BEHAVIOR-1K calls most things freezable and heatable: only food (cookable items) is cooked, frozen, heated
        food_only = pred in _FOOD_STATES
        out += [[pred, objs[i].bddl] for i, o in enumerate(objs)
                if o.kind in ("item", "furniture") and ability in o.abilities and not world.get(pred, i)
                and (not food_only or (o.kind == "item" and "cookable" in o.abilities))]
    for i in items:
        out += [["ontop", objs[i].bddl, objs[f].bddl] for f in furniture
                if not objs[f].container and not world.holds("ontop", i, f)]
        out += [["inside", objs[i].bddl, objs[c].bddl] for c in (*furniture, *items)
                if c != i and objs[c].container and not world.holds("inside", i, c)]
    return out


def instruction(goal: list[list[str]], rng: random.Random, reason: bool,
                name: Callable[[str], str] = words) -> str:
    """A phrasing of the goal literals, joined with "and"; `name` writes each object (default: its category)."""
    parts = []
    for lit in goal:
        if lit[0] in _UNARY:
            follow, why = _UNARY[lit[0]][1:]
        else:
            follow, why = _BINARY[lit[0]]
        parts.append(rng.choice(why if reason else follow).format(*(name(a) for a in lit[1:])))
    return " and ".join(parts)


def procedural_tasks(tasks: list[Task], n: int, sim: SimParams, seed: int,
                     prove: Callable[[Task, SimParams], str | None],
                     progress: Callable[[int, int], None] | None = None, short_names: float = 0.0) -> list[Task]:
    """`n` new train tasks built on the train tasks among `tasks` (the evaluation ones define what to avoid)."""
    if n <= 0:
        return []
    from octopus.sim.tasks_stage import layout_params
    evaluation = [t for t in tasks if t.split != "train"]
    banned_activities = {t.activity for t in evaluation}
    banned_goals = {_key(t.goal) for t in evaluation}
    bases = sorted((t for t in tasks if t.split == "train" and t.source != "procedural"
                    and t.activity not in banned_activities), key=lambda t: t.id)
    if not bases:
        return []
    rng = random.Random(f"procedural/{seed}")
    worlds: dict[str, tuple[World, list[list[str]]]] = {}
    out: list[Task] = []
    seen: set[tuple] = set()
    attempts = 0
    while len(out) < n and attempts < 20 * n:
        attempts += 1
        base = rng.choice(bases)
        if base.id not in worlds:
            world = base.build(layout_params(sim))[0]
            worlds[base.id] = (world, candidate_literals(world))
        world, cands = worlds[base.id]
        if not cands:
            continue
        goal = [list(lit) for lit in rng.sample(cands, min(len(cands), 2 if rng.random() < TWO_GOAL_SHARE else 1))]
        key = (base.scene, base.activity, _key(goal))
        if key in seen or _key(goal) in banned_goals:
            continue
        seen.add(key)
        reason = rng.random() < REASON_SHARE
        task_id = f"procedural_{len(out):05d}__{base.id}"
        name = namer(world, random.Random(f"procedural-names/{seed}/{task_id}"), short_names)
        task = replace(base, id=task_id, goal=goal, split="train",
                       instruction=instruction(goal, rng, reason, name), category="reason" if reason else "follow",
                       source="procedural", plan_steps=None)
        if prove(task, sim) is None:
            out.append(task)
            if progress:
                progress(len(out), n)
    return out


def _key(goal: list) -> tuple:
    """A goal as a hashable, order-free value."""
    return tuple(sorted(repr(lit) for lit in goal))
