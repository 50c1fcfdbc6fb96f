"""A trained policy as an agent: it reads what the env shows, asks the model, grounds object names.

    agent = make_agent("policy", model="models/sft/octopus", params=params)
    text = agent.respond(obs, info)        # agent.last_grounding: names the post-processing changed

A vision-language policy reads `obs["views"]` and `obs["text"]`; a blind one (text family) reads the
full message `info["message"]`. Names the scene lacks are mapped to `info["objects"]` (paper §5.1).
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
                 policy=None) -> None:
        from octopus.model.policy import Policy
        self.params = params or Params()
        m = self.params.model
        self.policy = policy or Policy.from_pretrained(model, max_new_tokens=m.max_new_tokens,
                                                       temperature=m.temperature, batch_size=m.batch_size)
        self.ground = ground
        self.last_grounding = None
        self.reads = self.policy.reads | ({"objects"} if ground else frozenset())

    def respond(self, obs: dict[str, Any], info: dict[str, Any]) -> str:
        text = self.policy.respond(self.policy.observe(obs, info), info["objects"] if self.ground else None)
        self.last_grounding = self.policy.last_groundings[0]
        return text
