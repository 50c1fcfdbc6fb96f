"""The oracle: the privileged planner writing responses in the paper's format (a perfect teacher).

`OracleAgent` (agent "oracle") answers with the plan's next step. `OracleTeacher` (teacher "oracle",
the collect stage's default) does the same, except that each proposal is, with probability
`collect.oracle.explore`, a plausible wrong step (`octopus.agents.mistakes`), written just as
confidently: the trial-and-error data of paper §4.1 / Fig. 4 needs failures to learn from.

    teacher = make_teacher("oracle", params.collect, params.sim, seed)
    proposals = teacher.propose(obs, info, n=2)   # [Proposal(text, explore="out_of_reach"), Proposal(text)]

Both are privileged: they read the simulator's true state, `info["state"]` (`OctoGibsonEnv(privileged=True)`).
"""

from __future__ import annotations

import random
import time

from octopus.agents import Proposal, register, register_teacher
from octopus.agents.mistakes import Mistake, mistakes
from octopus.agents.writing import describe, write_intended, write_response
from octopus.config import MISTAKES, CollectParams, OracleTeacherParams, SimParams
from octopus.sim.episode import SimState
from octopus.sim.planner import PlanResult, plan

Call = tuple[str, tuple[str, ...]]


def explanation(state: SimState, steps: list[list[Call]]) -> str:
    """The Explain section: the goal, a re-plan after a failed step, and the next subtask."""
    return (f"The task goal is: {state.task.instruction}. "
            + (f"The last step failed ({state.error}), so I re-plan from the current state. " if state.error else "")
            + f"The plan has {len(steps)} subtask(s); the next one is to {describe(steps[0]).lower()}.")


def respond_to(state: SimState, result: PlanResult) -> str:
    """The oracle's response for a plan of the current state (a wait-and-explain one without a plan)."""
    if not result.solved or not result.steps:
        why = "the goal already holds" if result.solved else f"no plan found ({result.reason})"
        return _give_up(why)
    return write_response(state.world, result.steps, explanation(state, result.steps)).render()


@register("oracle")
class OracleAgent:
    """Plans from the true state at every step, so it also recovers from others' mistakes."""

    reads = frozenset({"state"})

    def __init__(self, max_expansions: int = 20_000) -> None:
        self.max_expansions = max_expansions

    def respond(self, obs: dict, info: dict) -> str:
        state: SimState = info["state"]
        budget = state.max_steps - state.steps
        return respond_to(state, plan(state.world, state.goal, max_steps=max(budget, 1),
                                      max_expansions=self.max_expansions))


class OracleTeacher:
    """The oracle as a teacher that sometimes makes (realistic, seeded) mistakes on purpose.

    Each proposal draws from the teacher's own `random.Random(seed)`: with probability `params.explore`
    it is a wrong step of one of `params.mistakes` (tried in a seeded order, so a kind that does not
    apply in this state gives way to the next; none applies: the correct step). The same seed and the
    same episode history give the same proposals. Plans are cached per state: the n proposals of one
    state, and re-proposals after a failed step (the world was restored), plan once.
    """

    name = "oracle"
    reads = frozenset({"state"})

    def __init__(self, params: OracleTeacherParams, sim: SimParams, seed: int = 0) -> None:
        self.params, self.sim, self.seed = params, sim, seed
        self.rng = random.Random(seed)
        self.kinds = tuple(dict.fromkeys(params.mistakes))
        self._plans: dict[tuple, list[tuple[int, PlanResult]]] = {}
        self._usage: dict[str, float] = dict.fromkeys(
            ("proposals", "explored", *(f"explored_{k}" for k in MISTAKES), "explore_fallbacks", "give_ups",
             "plans", "plan_cache_hits", "plan_seconds", "propose_seconds"), 0)

    def propose(self, obs: dict, info: dict, n: int = 1) -> list[Proposal]:
        t0 = time.perf_counter()
        state: SimState = info["state"]
        result = self.plan_for(state)
        out: list[Proposal] = []
        for _ in range(n):
            explore = self.rng.random() < self.params.explore
            order = self.rng.sample(self.kinds, len(self.kinds)) if explore else []
            if not result.solved or not result.steps:
                self._usage["give_ups"] += 1
                out.append(Proposal(respond_to(state, result)))
                continue
            mistake = self._pick(state, result.steps, order, {p.text for p in out})
            if mistake is None:
                self._usage["explore_fallbacks"] += bool(order)
                out.append(Proposal(respond_to(state, result)))
            else:
                self._usage["explored"] += 1
                self._usage[f"explored_{mistake[0].kind}"] += 1
                out.append(Proposal(mistake[1], explore=mistake[0].kind))
        self._usage["proposals"] += n
        self._usage["propose_seconds"] += time.perf_counter() - t0
        return out

    def _pick(self, state: SimState, steps: list[list[Call]], order: list[str],
              taken: set[str]) -> tuple[Mistake, str] | None:
        """The first applicable kind's most plausible mistake not already proposed for this state."""
        for kind in order:
            written = [(m, self._write(state, m)) for m in mistakes(kind, state.world, steps, self.rng)]
            if written:
                return next((w for w in written if w[1] not in taken), written[0])
        return None

    @staticmethod
    def _write(state: SimState, m: Mistake) -> str:
        believed = [m.step, *m.later]
        return write_intended(state.world, believed, explanation(state, believed)).render()

    def plan_for(self, state: SimState) -> PlanResult:
        """The planner's result for the current state and the episode's remaining budget (cached).

        A plan found with a larger budget is reused when it fits the smaller one: the search prunes only
        nodes deeper than the budget, so it would find the very same plan again.
        """
        budget = max(state.max_steps - state.steps, 1)
        key = (state.task.id, state.world.state_key())
        for b, result in self._plans.get(key, ()):
            if b == budget or (b > budget and result.solved and len(result.steps) <= budget):
                self._usage["plan_cache_hits"] += 1
                return result
        t0 = time.perf_counter()
        result = plan(state.world, state.goal, max_steps=budget, max_expansions=self.params.max_expansions)
        self._usage["plan_seconds"] += time.perf_counter() - t0
        self._usage["plans"] += 1
        if len(self._plans) > 4096:  # a teacher lives for one episode; bound it anyway
            self._plans.clear()
        self._plans.setdefault(key, []).append((budget, result))
        return result

    def usage(self) -> dict[str, float]:
        """Proposals, explored (in all and per kind), fallbacks to the correct step, planner calls and time."""
        out = dict(self._usage)
        out["plan_seconds"] = round(out["plan_seconds"], 6)
        out["propose_seconds"] = round(out["propose_seconds"], 6)
        return out


@register_teacher("oracle")
def oracle_teacher(collect: CollectParams, sim: SimParams, seed: int) -> OracleTeacher:
    return OracleTeacher(collect.oracle, sim, seed)


def _give_up(why: str) -> str:
    return ("Explain:\n" + why + "\n\nSubtasks:\n(1) Wait\n\nCode:\n```python\ndef act(robot, env, camera):\n"
            "    donothing(env)\n```\n\nTarget States:\n(1) Inventory: None\n(2) Object Information:\n")
