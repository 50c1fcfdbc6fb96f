"""A trained policy as an agent: it reads what the env shows, asks the model, grounds object names.

    agent = make_agent("policy", model="models/sft/octopus", params=params)
    text = agent.respond(obs, info)        # agent.last_grounding: names the post-processing changed
    texts = agent.respond_batch([obs1, obs2], [info1, info2])   # one batched generate; agent.last_groundings

A vision-language policy reads `obs["views"]` and `obs["text"]`; a blind one (text family) reads the
full message `info["message"]`. Names the scene lacks are mapped to `info["objects"]` (paper §5.1);
`constrain_names=True` also decodes names inside `registry(...)` from `info["objects"]` only
(`octopus.model.constrained`, the `NAME_sft_names` rows). `views="shuffle"` or `"noise"` perturbs the
views before the policy reads them (`evaluate.views`, the paper's vision ablation, Fig. 6c).
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import numpy as np

from octopus import paths
from octopus.agents import register
from octopus.config import EVAL_VIEWS, Params


def perturb_views(obs: dict[str, Any], mode: str, seed: int = 0) -> dict[str, Any]:
    """`obs` with its views as `mode` says: normal (unchanged), shuffle (the 10 views in a random order),
    noise (uniform noise of the same shape). The same step text and seed give the same perturbation."""
    if mode not in EVAL_VIEWS:
        raise ValueError(f"views: unknown mode {mode!r}; known: {', '.join(EVAL_VIEWS)}")
    if mode == "normal" or obs.get("views") is None:
        return obs
    views = np.asarray(obs["views"])
    rng = np.random.default_rng([seed, zlib.crc32(str(obs.get("text", "")).encode())])
    if mode == "shuffle":
        views = views[rng.permutation(len(views))]
    else:
        views = rng.integers(0, 256, size=views.shape, dtype=np.uint8)
    return {**obs, "views": views}


@register("policy")
class PolicyAgent:
    def __init__(self, model: str | Path = paths.sft_model("octopus"), params: Params | None = None, ground: bool = True,
                 policy=None, constrain_names: bool = False, views: str = "normal", views_seed: int = 0) -> None:
        from octopus.model.policy import Policy
        self.params = params or Params()
        m = self.params.model
        self.policy = policy or Policy.from_pretrained(model, max_new_tokens=m.max_new_tokens,
                                                       temperature=m.temperature, batch_size=m.batch_size,
                                                       constrain_names=constrain_names)
        self.ground = ground
        if views not in EVAL_VIEWS:
            raise ValueError(f"views: unknown mode {views!r}; known: {', '.join(EVAL_VIEWS)}")
        self.views, self.views_seed = views, views_seed
        self.last_grounding = None
        self.reads = self.policy.reads | ({"objects"} if ground else frozenset())

    def respond(self, obs: dict[str, Any], info: dict[str, Any]) -> str:
        text = self.policy.respond(self.policy.observe(self._seen(obs), info), info["objects"] if self.ground else None)
        self.last_grounding = self.policy.last_groundings[0]
        return text

    def respond_batch(self, observations: list[dict[str, Any]], infos: list[dict[str, Any]]) -> list[str]:
        """One batched generate for several episodes' steps (`rollout_batch`); `last_groundings` per step."""
        texts = self.policy.respond_batch([self.policy.observe(self._seen(o), i) for o, i in zip(observations, infos)],
                                          [i["objects"] for i in infos] if self.ground else None)
        self.last_groundings = list(self.policy.last_groundings)
        self.last_grounding = self.last_groundings[-1] if self.last_groundings else None
        return texts

    def _seen(self, obs: dict[str, Any]) -> dict[str, Any]:
        return perturb_views(obs, self.views, self.views_seed) if self.views != "normal" else obs
