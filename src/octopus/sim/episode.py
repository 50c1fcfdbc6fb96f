"""Episodes: environment messages out, responses in, executed safely, judged by target states and the goal.

A step parses a response in the paper's format, runs its `act(robot, env, camera)` in the sandbox
worker against a copy of the world, replays the logged calls on the real world, and keeps the result
only if the code ran without error and the response's Target States hold; otherwise the world is
restored to the state before the step. The task succeeds when its BDDL goal holds.
"""

from __future__ import annotations

import atexit
import threading
from dataclasses import asdict, dataclass, field

from octopus.config import SimParams
from octopus.sim.actions import ActionError, apply
from octopus.protocol import (UNARY_STATES, EnvMessage, ObservedObject, Response, ResponseFormatError,
                                  TargetState, parse_response)
from octopus.sim.sandbox import Sandbox, SandboxLimits
from octopus.sim.tasks import Task
from octopus.sim.goals import Goal
from octopus.sim.world import KINEMATIC, Snapshot, World

# observed state name (paper's format1) -> (ability needed, unary state)
OBSERVED_STATES = {name: ("foldable" if state in ("folded", "unfolded") else
                          "toggleable" if name == "togglable" else name, state)
                   for name, state in UNARY_STATES.items()}
OBSERVED_RELATIONS = ("inside", "ontop", "under")
SANDBOX_FACTORY = "octopus.sim.actions:sandbox_session"

_sandboxes: dict[tuple, Sandbox] = {}
_lock = threading.Lock()


def shared_sandbox(sim: SimParams) -> Sandbox:
    """One sandbox worker per process and limits (started lazily, closed at exit)."""
    key = (sim.sandbox_timeout_s, sim.sandbox_memory_mb)
    with _lock:
        if key not in _sandboxes:
            _sandboxes[key] = Sandbox(SANDBOX_FACTORY, SandboxLimits(timeout_s=sim.sandbox_timeout_s,
                                                                     memory_mb=sim.sandbox_memory_mb))
            atexit.register(_sandboxes[key].close)
        return _sandboxes[key]


@dataclass
class StepResult:
    parsed: bool
    executed: bool
    error: str | None
    target_states_met: bool
    task_success: bool
    calls: list = field(default_factory=list)
    unmet: list = field(default_factory=list)
    progress: float = 0.0
    step: int = 0
    truncated: bool = False
    code: str | None = None  # the response's parsed act(...) code (None when it did not parse)

    @property
    def done(self) -> bool:
        return self.task_success or self.truncated

    def feedback(self) -> dict:
        """The contract of `octopus sim step --json`."""
        return {k: v for k, v in asdict(self).items()
                if k in ("parsed", "executed", "error", "target_states_met", "task_success")}


def observed(world: World) -> list[int]:
    """Objects the agent can see: everything not hidden in a closed container, not held, not structural."""
    return [i for i, o in enumerate(world.objects)
            if o.kind in ("item", "furniture") and world.group[i] == 0 and world.hidden_by(i) is None]


def observation_text(world: World) -> tuple[tuple[ObservedObject, ...], tuple[tuple[str, str, str], ...]]:
    """The Observed Objects and Observed Relations sections (what text-only agents get instead of images)."""
    ids = observed(world)
    objs = []
    for i in ids:
        o = world.objects[i]
        states = tuple((name, int(world.get(state, i))) for name, (ability, state) in OBSERVED_STATES.items()
                       if ability in o.abilities)
        objs.append(ObservedObject(o.name, states, round(world.distance(0, i), 2)))
    rels = [(world.name(a), r, world.name(b)) for a, r, b in world.relations(ids, OBSERVED_RELATIONS)]
    rels += [("robot", "nextto", world.name(b)) for b in ids if world.holds("nextto", 0, b)]
    return tuple(objs), tuple(rels)


def unmet_targets(world: World, response: Response) -> list[str]:
    """Which of the response's Target States do not hold (empty: the step reached its targets)."""
    unmet = []
    if response.inventory is not None:
        held = {world.name(i) for i in world.held}
        if set(response.inventory) != held:
            unmet.append(f"Inventory: {', '.join(response.inventory) or 'None'} "
                         f"(actually {', '.join(sorted(held)) or 'None'})")
    for ts in response.target_states:
        actual = _state_value(world, ts)
        if actual is None:
            unmet.append(f"{ts} (unknown object)")
        elif actual != ts.value:
            unmet.append(f"{ts} (actually {int(actual)})")
    return unmet


def _state_value(world: World, ts: TargetState) -> bool | None:
    a = world.index.get(ts.subject)
    b = world.index.get(ts.obj) if ts.obj is not None else None
    if a is None or (ts.obj is not None and b is None):
        return None
    if ts.obj is None:
        return world.get(UNARY_STATES[ts.relation], a)
    if ts.relation in KINEMATIC:
        return world.holds(ts.relation, a, b)
    return (ts.relation, a, b) in world.facts


@dataclass(frozen=True)
class Checkpoint:
    """Everything an `Episode` changes in a step (`Episode.checkpoint()`), to go back to that state."""

    world: Snapshot
    steps: int
    subtasks: tuple[str, ...] | None
    previous_code: str | None
    error: str | None
    success: bool


@dataclass(frozen=True)
class SimState:
    """The simulator's true state, for privileged agents (the planner, the random baseline).

    `world` and `goal` are the live episode's: read them, and leave the world as found (an agent that
    tries actions on it restores `world.snapshot()` afterwards, as the planner does)."""

    task: Task
    world: World
    goal: Goal
    steps: int
    max_steps: int
    error: str | None


class Episode:
    """One task from its initial state, stepped with responses in the paper's format."""

    def __init__(self, task: Task, sim: SimParams, sandbox: Sandbox | None = None) -> None:
        from octopus.sim.tasks_stage import layout_params
        self.task, self.sim = task, sim
        self.world, self.goal = task.build(layout_params(sim))
        self.sandbox = sandbox or shared_sandbox(sim)
        self.steps = 0
        self.subtasks: tuple[str, ...] | None = None
        self.previous_code: str | None = None
        self.error: str | None = None
        self.success = self.goal.satisfied()

    def message(self, with_observations: bool = True) -> EnvMessage:
        objs, rels = observation_text(self.world) if with_observations else (None, None)
        return EnvMessage(observed_objects=objs, observed_relations=rels,
                          inventory=tuple(self.world.name(i) for i in self.world.held),
                          task_goal=self.task.instruction, original_subtasks=self.subtasks,
                          previous_code=self.previous_code, execution_error=self.error)

    def checkpoint(self) -> Checkpoint:
        return Checkpoint(self.world.snapshot(), self.steps, self.subtasks, self.previous_code, self.error,
                          self.success)

    def restore(self, cp: Checkpoint) -> None:
        """Back to the state of `cp` (taken from this episode): world, step count and the message's history."""
        self.world.restore(cp.world)
        self.steps, self.subtasks, self.previous_code = cp.steps, cp.subtasks, cp.previous_code
        self.error, self.success = cp.error, cp.success

    def state(self) -> SimState:
        return SimState(self.task, self.world, self.goal, self.steps, self.sim.max_steps, self.error)

    def objects(self) -> dict[str, float]:
        """Every object an agent could name (items and furniture) -> its distance to the robot (m)."""
        w = self.world
        return {o.name: round(w.distance(0, i), 3) for i, o in enumerate(w.objects) if o.kind in ("item", "furniture")}

    def step(self, text: str) -> StepResult:
        if self.success or self.steps >= self.sim.max_steps:
            raise RuntimeError("the episode is over: reset before stepping again")
        self.steps += 1
        try:
            response = parse_response(text)
        except ResponseFormatError as err:
            self.error = f"Response format error: {err}"
            return self._result(False, False, self.error)
        self.subtasks, self.previous_code = response.subtasks, response.code
        before = self.world.snapshot()
        run = self.sandbox.run(response.code, self.world)
        calls: list = []
        try:
            calls = list(run.value or [])
            for fn, args in calls:
                apply(self.world, fn, args)
        except (ActionError, KeyError, TypeError, ValueError, IndexError) as err:  # only if the worker lied: never trust it
            self.world.restore(before)
            self.error = f"Replay mismatch: {err}"
            return self._result(True, False, self.error, calls)
        if run.error:
            self.world.restore(before)
            self.error = run.error
            return self._result(True, False, run.error, calls)
        unmet = unmet_targets(self.world, response)
        if unmet:
            self.world.restore(before)
            self.success = self.goal.satisfied()
            self.error = "Target states not reached: " + "; ".join(unmet)
            return self._result(True, True, self.error, calls, unmet)
        self.success = self.goal.satisfied()
        self.error = None
        return self._result(True, True, None, calls)

    def _result(self, parsed: bool, executed: bool, error: str | None, calls: list | None = None,
                unmet: list | None = None) -> StepResult:
        met = parsed and executed and not unmet and error is None
        return StepResult(parsed, executed, error, met, self.success, calls or [], unmet or [],
                          self.goal.progress(), self.steps, not self.success and self.steps >= self.sim.max_steps,
                          self.previous_code if parsed else None)
