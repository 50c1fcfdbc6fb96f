"""A trained policy as an agent: it reads what the env shows, asks the model, grounds object names.

    agent = make_agent("policy", model="models/sft/octopus", params=params)
    text = agent.respond(obs, info)        # agent.last_grounding: names the post-processing changed
    texts = agent.respond_batch([obs1, obs2], [info1, info2])   # one batched generate; agent.last_groundings

A vision-language policy reads `obs["views"]` and `obs["text"]`; a blind one (text family) reads the
full message `info["message"]`. Names the scene lacks are mapped to `info["objects"]` (paper §5.1);
`constrain_names=True` also decodes names inside `registry(...)` from `info["objects"]` only
(`octopus.model.constrained`, the `NAME_sft_names` rows).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from octopus import paths
from octopus.agents import register
from octopus.config import Params


@register("policy")
class PolicyAgent:
    def __init__(self, model: str | Path = paths.sft_model("octopus"), params: Params | None = None, ground: bool = True,
                 policy=None, constrain_names: bool = False) -> None:
        from octopus.model.policy import Policy
        self.params = params or Params()
        m = self.params.model
        self.policy = policy or Policy.from_pretrained(model, max_new_tokens=m.max_new_tokens,
                                                       temperature=m.temperature, batch_size=m.batch_size,
                                                       constrain_names=constrain_names)
        self.ground = ground
        self.last_grounding = None
        self.reads = self.policy.reads | ({"objects"} if ground else frozenset())

    def respond(self, obs: dict[str, Any], info: dict[str, Any]) -> str:
        text = self.policy.respond(self.policy.observe(obs, info), info["objects"] if self.ground else None)
        self.last_grounding = self.policy.last_groundings[0]
        return text

    def respond_batch(self, observations: list[dict[str, Any]], infos: list[dict[str, Any]]) -> list[str]:
        """One batched generate for several episodes' steps (`rollout_batch`); `last_groundings` per step."""
        texts = self.policy.respond_batch([self.policy.observe(o, i) for o, i in zip(observations, infos)],
                                          [i["objects"] for i in infos] if self.ground else None)
        self.last_groundings = list(self.policy.last_groundings)
        self.last_grounding = self.last_groundings[-1] if self.last_groundings else None
        return texts
