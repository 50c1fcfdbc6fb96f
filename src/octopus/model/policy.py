"""A trained policy, loaded in one line, answering observations with responses in the paper's format.

    policy = Policy.from_pretrained("models/sft/octopus")
    text = policy.respond(obs)                               # obs from OctoGibsonEnv: {"views", "text"}
    texts = policy.respond_batch([obs1, obs2, ...])          # batched generate() calls, KV cache on
    g = policy.respond(obs, objects={"rag_1": 0.8, ...})     # ... with names grounded (see postprocess)
    Policy(pm, constrain_names=True).respond(obs, objects)   # names in registry(...) decoded from the scene's only
    blind.respond({"message": info["message"]})              # a blind (text family) policy reads the full message
    text = policy.respond(policy.observe(obs, info))         # either kind, from an env step's (obs, info)

Generation is greedy by default (`temperature` > 0 samples), stops at the end-of-sequence token, and
reuses the image features and the KV cache across decoding steps. A model of `BF16_MIN_PARAMETERS` or
more generates from a bf16 copy where the chip computes bf16 natively (`precision`, default auto), with a
KV cache written in place and grouped-query decoding (`octopus.model.decoding`): on SmolLM2-135M and 2
CPU cores, 3.4x the responses/s of fp32 SDPA with transformers' default cache. Small models stay in fp32,
where bf16 buys nothing and batched and one-by-one responses stay identical. With `objects` (every scene
object -> its distance to the robot) names the scene does not have are mapped to existing ones
(paper §5.1); `last_groundings` reports what was changed.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from octopus.model.factory import PolicyModel, load_model
from octopus.model.inputs import never_generated
from octopus.model.postprocess import Grounding, ground_names

BF16_MIN_PARAMETERS = 50_000_000  # below this, generation is overhead-bound: bf16 buys nothing
MEMO_SIZE = 1024                  # inputs a greedy policy remembers its answer to


class Policy:
    """Observations (10 views + instruction text) in, responses out."""

    def __init__(self, pm: PolicyModel, max_new_tokens: int = 320, temperature: float = 0.0,
                 batch_size: int = 8, seed: int = 0, constrain_names: bool = False, precision: str = "auto",
                 memo: bool = True) -> None:
        self.pm, self.max_new_tokens, self.temperature, self.batch_size = pm, max_new_tokens, temperature, batch_size
        self.constrain_names = constrain_names  # with `objects`: names in registry(...) only from the scene
        self._token_index = None
        self.pm.model.eval()
        self.model = self._generation_model(pm.model, precision)  # what generates (pm.model itself, or a bf16 copy)
        self.generator_seed = seed
        self.last_groundings: list[Grounding | None] = []
        self.memo = memo  # a greedy policy answers an input it has answered before from memory
        self._memo: dict = {}  # input digest -> raw response (insertion-ordered, oldest dropped)
        self.stats = {"responses": 0, "generated_tokens": 0, "seconds": 0.0}

    @classmethod
    def from_pretrained(cls, path: str | Path, **kwargs) -> "Policy":
        """Load a checkpoint; generation settings not given default to the ones it was trained with
        (`model.max_new_tokens`, `temperature`, `batch_size` saved by the sft stage), else the class's."""
        pm = load_model(path)
        saved = (pm.meta.get("params") or {}).get("model") or {}
        for key in ("max_new_tokens", "temperature", "batch_size"):
            if key in saved:
                kwargs.setdefault(key, saved[key])
        return cls(pm, **kwargs)

    @property
    def reads(self) -> frozenset[str]:
        """What it reads of the env's (obs, info): the views and text, or (a blind policy) the full message."""
        return frozenset({"views", "text"} if self.pm.family.reads_views else {"message"})

    def observe(self, obs: Mapping, info: Mapping) -> dict:
        """The part of an env step's (obs, info) this policy reads, for `respond`."""
        if self.pm.family.reads_views:
            return {"views": obs["views"], "text": obs["text"]}
        return {"message": info["message"]}

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @staticmethod
    def _generation_model(model, precision: str):
        """`model`, or for a large one where bf16 pays, a bf16 copy (the trained fp32 weights stay as they are);
        either way with the grouped-query decoding attention."""
        import copy

        from octopus.model.decoding import use_fast_attention
        from octopus.model.device import resolve_precision
        big = sum(p.numel() for p in model.parameters()) >= BF16_MIN_PARAMETERS
        if big and resolve_precision(precision, "precision") == "bf16" and next(model.parameters()).dtype == torch.float32:
            model = copy.deepcopy(model).to(torch.bfloat16).eval()
        if big:
            use_fast_attention(model)
        return model

    def refresh(self) -> None:
        """Take the weights of `pm.model` again (after it trained) into the generating copy."""
        self._memo.clear()
        if self.model is not self.pm.model:
            self.model.load_state_dict(self.pm.model.state_dict())

    def respond(self, obs: Mapping, objects: Mapping[str, float] | None = None) -> str:
        return self.respond_batch([obs], [objects] if objects is not None else None)[0]

    def respond_batch(self, observations: Sequence[Mapping],
                      objects: Sequence[Mapping[str, float] | None] | None = None) -> list[str]:
        """One response per observation, generated `batch_size` at a time."""
        out: list[str] = []
        key = self.pm.family.observation_key
        for o in observations:
            if key not in o:
                raise ValueError(f"a {self.pm.family.name} policy reads obs[{key!r}]" + (
                    "" if self.pm.family.reads_views else
                    ": the full message with Observed Objects/Relations (the env's info['message'])"))
        if objects is not None and len(objects) != len(observations):
            raise ValueError(f"{len(objects)} object maps for {len(observations)} observations")
        names = [list(o) if o is not None else None for o in objects] if objects is not None and self.constrain_names \
            else [None] * len(observations)
        items = [(o[key], o.get("views")) for o in observations]
        out = self._answers(items, names)
        self.last_groundings = [None] * len(out)
        if objects is not None:
            for k, objs in enumerate(objects):
                if objs is not None:
                    g = ground_names(out[k], objs)
                    out[k], self.last_groundings[k] = g.text, g
        return out

    def _answers(self, items: list[tuple], names: list) -> list[str]:
        """The raw responses, generated `batch_size` at a time. A greedy policy answers the same input with the same
        text, so it answers an input it has seen from memory: an episode stuck in a loop (the same failed program,
        the same error, the same state) costs no generation after its first repeat."""
        if self.temperature > 0 or not self.memo:  # sampling: every request is its own
            return [t for i in range(0, len(items), self.batch_size)
                    for t in self._generate(items[i:i + self.batch_size], names[i:i + self.batch_size])]
        keys = [self._memo_key(text, views, n, self.max_new_tokens) for (text, views), n in zip(items, names)]
        first: dict[str, int] = {}  # each input not yet answered -> its first position
        for i, k in enumerate(keys):
            if k not in self._memo:
                first.setdefault(k, i)
        todo = list(first)
        for i in range(0, len(todo), self.batch_size):
            chunk = todo[i:i + self.batch_size]
            self._memo.update(zip(chunk, self._generate([items[first[k]] for k in chunk],
                                                        [names[first[k]] for k in chunk])))
        out = [self._memo[k] for k in keys]
        self.stats["memo_hits"] = self.stats.get("memo_hits", 0) + len(keys) - len(todo)
        while len(self._memo) > MEMO_SIZE:
            self._memo.pop(next(iter(self._memo)))
        return out

    @staticmethod
    def _memo_key(text: str, views, names, max_new_tokens: int) -> str:
        h = hashlib.sha1(f"{max_new_tokens}\0{text}".encode())  # a shorter budget is another answer
        if views is not None:
            v = np.ascontiguousarray(views)
            h.update(str(v.shape).encode() + v.tobytes())
        if names:
            h.update("\0".join(names).encode())
        return h.hexdigest()

    def generate_kwargs(self) -> dict:
        """generate()'s cache for one call: on a large model a cache written in place (`GrowingCache`: no copy of the
        cache per token, attention over the filled part only), or a static one where layers slide over windows;
        the default cache otherwise."""
        from octopus.model.decoding import GrowingCache, supports_growing_cache
        big = self.model is not self.pm.model or sum(p.numel() for p in self.model.parameters()) >= BF16_MIN_PARAMETERS
        if not big:
            return {}
        if supports_growing_cache(self.model):
            return {"past_key_values": GrowingCache()}
        return {"cache_implementation": "static"} if self.pm.family.static_cache else {}

    @torch.no_grad()
    def _generate(self, items: list[tuple[str, np.ndarray]], names: list[list[str] | None]) -> list[str]:
        t0 = time.perf_counter()
        pm = self.pm
        batch = pm.collate([pm.encode(text, views) for text, views in items], pad_left=True)
        batch.pop("labels", None)
        batch = {k: v.to(self.device) for k, v in batch.items()}
        if "pixel_values" in batch:
            batch["pixel_values"] = batch["pixel_values"].to(self.model.dtype)
        sample = self.temperature > 0
        if sample:
            torch.manual_seed(self.generator_seed)
            self.generator_seed += 1
        tok = pm.tokenizer
        processors = None
        if any(names):
            from transformers import LogitsProcessorList

            from octopus.model.constrained import SceneNames, TokenIndex
            if self._token_index is None:
                self._token_index = TokenIndex(tok)
            processors = LogitsProcessorList([SceneNames(self._token_index, batch["input_ids"].shape[1], names)])
        ids = self.model.generate(**batch, max_new_tokens=self.max_new_tokens, do_sample=sample,
                                  logits_processor=processors, suppress_tokens=never_generated(pm.spec) or None,
                                  temperature=self.temperature if sample else None, top_p=None, top_k=None,
                                  use_cache=True, pad_token_id=pm.spec.pad_token_id,
                                  eos_token_id=pm.spec.eos_token_id, **self.generate_kwargs())
        new = ids[:, batch["input_ids"].shape[1]:]
        texts = []
        for row in new.tolist():
            if pm.spec.eos_token_id in row:
                row = row[:row.index(pm.spec.eos_token_id)]
            self.stats["generated_tokens"] += len(row)
            texts.append(tok.decode(row, skip_special_tokens=True))
        self.stats["responses"] += len(texts)
        self.stats["seconds"] += time.perf_counter() - t0
        return texts
