"""Turn planned calls into responses in the paper's format (Explain, Subtasks, Code, Target States)."""

from __future__ import annotations

from octopus.sim.actions import PAIR_FUNCTIONS, STATE_ACTIONS, ActionError, apply
from octopus.protocol import UNARY_STATES, Response, TargetState
from octopus.sim.world import World

_FORMAT1 = {state: name for name, state in UNARY_STATES.items()}
Call = tuple[str, tuple[str, ...]]


def describe(step: list[Call]) -> str:
    parts = []
    for fn, args in step:
        if fn == "MoveBot":
            parts.append(f"move to the {args[0]}")
        elif fn == "EasyGrasp":
            parts.append(f"grasp the {args[0]}")
        elif fn in PAIR_FUNCTIONS:
            parts.append(f"put the {args[0]} {'on' if PAIR_FUNCTIONS[fn] == 'ontop' else 'inside'} the {args[1]}")
        else:
            parts.append(f"{fn.replace('_', ' ')} the {args[0]}")
    text = " and ".join(parts)
    return text[0].upper() + text[1:]


def code_for(step: list[Call], number: int) -> str:
    lines = ["def act(robot, env, camera):", f"    # Subtask {number}: {describe(step)}"]
    registered: list[str] = []
    for _, args in step:
        for a in args:
            if a not in registered:
                registered.append(a)
                lines.append(f'    {a} = registry(env, "{a}")')
    for fn, args in step:
        call = {"MoveBot": f"MoveBot(env, robot, {args[0]}, camera)"}.get(fn, f"{fn}(robot, {', '.join(args)})")
        lines += [f"    {call}", "    donothing(env)"]
    return "\n".join(lines)


def effects(world: World, step: list[Call]) -> tuple[tuple[str, ...], tuple[TargetState, ...]]:
    """Inventory and target states the step should reach (computed by trying it on the world)."""
    before = world.snapshot()
    states: list[TargetState] = []
    try:
        for fn, args in step:
            apply(world, fn, args)
        for fn, args in step:
            if fn == "MoveBot":
                states.append(TargetState("robot", "nextto", args[0], True))
            elif fn in PAIR_FUNCTIONS:
                states.append(TargetState(args[0], PAIR_FUNCTIONS[fn], args[1], True))
            elif fn in STATE_ACTIONS:
                _, state, value, _ = STATE_ACTIONS[fn]
                states.append(TargetState(args[0], _FORMAT1[state], None, value))
        inventory = tuple(world.name(i) for i in world.held)
    except ActionError:
        inventory = tuple(world.name(i) for i in before.held)
    finally:
        world.restore(before)
    return inventory, tuple(dict.fromkeys(states))


def write_response(world: World, plan: list[list[Call]], explain: str) -> Response:
    """Response for the first step of `plan` (its subtasks are the whole remaining plan, numbered from 1)."""
    step = plan[0]
    inventory, states = effects(world, step)
    subtasks = tuple(describe(s) for s in plan)
    return Response(explain=explain, subtasks=subtasks, code=code_for(step, 1),
                    inventory=inventory, target_states=states)


def intended_effects(world: World, step: list[Call]) -> tuple[tuple[str, ...], tuple[TargetState, ...]]:
    """Inventory and target states the step means to reach, from the calls alone (nothing is executed):
    what a confident writer states for a step that may well fail (exploration's wrong steps)."""
    held = [world.name(i) for i in world.held]
    states: list[TargetState] = []
    for fn, args in step:
        if fn == "MoveBot":
            states.append(TargetState("robot", "nextto", args[0], True))
        elif fn == "EasyGrasp" and args[0] not in held:
            held.append(args[0])
        elif fn in PAIR_FUNCTIONS:
            held = [h for h in held if h != args[0]]
            states.append(TargetState(args[0], PAIR_FUNCTIONS[fn], args[1], True))
        elif fn in STATE_ACTIONS:
            _, state, value, _ = STATE_ACTIONS[fn]
            states.append(TargetState(args[0], _FORMAT1[state], None, value))
    return tuple(held), tuple(dict.fromkeys(states))


def write_intended(world: World, plan: list[list[Call]], explain: str) -> Response:
    """Like `write_response`, but with the targets the first step intends rather than those it reaches."""
    inventory, states = intended_effects(world, plan[0])
    return Response(explain=explain, subtasks=tuple(describe(s) for s in plan), code=code_for(plan[0], 1),
                    inventory=inventory, target_states=states)
