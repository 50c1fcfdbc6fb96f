"""The oracle: the privileged planner writing responses in the paper's format (a perfect teacher)."""

from __future__ import annotations

from octopus.agents import register
from octopus.agents.writing import describe, write_response
from octopus.sim.episode import Episode
from octopus.sim.planner import plan


@register("oracle")
class OracleAgent:
    """Plans from the true state at every step, so it also recovers from others' mistakes."""

    def __init__(self, max_expansions: int = 20_000) -> None:
        self.max_expansions = max_expansions

    def respond(self, episode: Episode) -> str:
        budget = episode.sim.max_steps - episode.steps
        result = plan(episode.world, episode.goal, max_steps=max(budget, 1), max_expansions=self.max_expansions)
        if not result.solved or not result.steps:
            why = "the goal already holds" if result.solved else f"no plan found ({result.reason})"
            return _give_up(why)
        steps = result.steps
        explain = (f"The task goal is: {episode.task.instruction}. "
                   + (f"The last step failed ({episode.error}), so I re-plan from the current state. " if episode.error else "")
                   + f"The plan has {len(steps)} subtask(s); the next one is to {describe(steps[0]).lower()}.")
        return write_response(episode.world, steps, explain).render()


def _give_up(why: str) -> str:
    return ("Explain:\n" + why + "\n\nSubtasks:\n(1) Wait\n\nCode:\n```python\ndef act(robot, env, camera):\n"
            "    donothing(env)\n```\n\nTarget States:\n(1) Inventory: None\n(2) Object Information:\n")
