"""The trained policy as an agent: renders the episode's 10 views, asks the model, grounds object names.

    agent = make_agent("policy", model="models/sft/octopus", params=params)
    text = agent.respond(episode)          # agent.last_grounding: names the post-processing changed
"""

from __future__ import annotations

from pathlib import Path

from octopus import paths
from octopus.agents import register
from octopus.config import Params
from octopus.sim.env import sanitize
from octopus.sim.episode import Episode


def scene_objects(episode: Episode) -> dict[str, float]:
    """Every object the agent could name (items and furniture) -> its distance to the robot (m)."""
    w = episode.world
    return {o.name: round(w.distance(0, i), 3) for i, o in enumerate(w.objects) if o.kind in ("item", "furniture")}


@register("policy")
class PolicyAgent:
    def __init__(self, model: str | Path = paths.sft_model("octopus"), params: Params | None = None, ground: bool = True,
                 policy=None) -> None:
        from octopus.model.policy import Policy
        self.params = params or Params()
        m = self.params.model
        self.policy = policy or Policy.from_pretrained(model, max_new_tokens=m.max_new_tokens,
                                                       temperature=m.temperature, batch_size=m.batch_size)
        self.ground = ground
        self._renderer = None
        self._world = None
        self.last_grounding = None
        self.last_views = None  # the views of the last observation (the rollout report reuses them)

    def observation(self, episode: Episode) -> dict:
        """What the policy reads: the 10 views and the message without Observed Objects/Relations, or,
        for a blind policy (text family), the full message with them and no views."""
        from octopus.sim.render import SceneRenderer
        if not self.policy.pm.family.reads_views:
            return {"message": episode.message(with_observations=True).render()}
        if self._world is not episode.world:
            self.close()
            self._renderer = SceneRenderer(episode.world, self.params.render, seed=self.params.sim.seed)
            self._world = episode.world
        return {"views": self._renderer.observe().rgb, "text": sanitize(episode.message(with_observations=False).render())}

    def respond(self, episode: Episode) -> str:
        obs = self.observation(episode)
        self.last_views = obs.get("views")
        text = self.policy.respond(obs, scene_objects(episode) if self.ground else None)
        self.last_grounding = self.policy.last_groundings[0]
        return text

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
        self._renderer = self._world = None
