"""Sampling responses with their log-probabilities, and scoring the same tokens again (any policy family).

    batch = sample(pm, model, states, max_new_tokens=400, temperature=1.0)   # generate(), KV cache on
    logp, entropy, values = score(pm, model, batch, temperature=1.0, value_head=head)

`sample` records log pi(token) from the scores `generate` sampled from (logits / temperature), and
keeps the token ids, so the update scores exactly what was sampled (text is never re-tokenized).
`score` runs one forward pass over prompt + response with the prompt left-padded as in generation
(the same positions, the same image mask), so at the first update the ratio is 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from octopus.model.factory import PolicyModel
from octopus.model.inputs import never_generated


@dataclass
class Batch:
    """One rollout batch: B responses, each to one state, as token ids with what sampling recorded."""

    states: list
    input_ids: torch.Tensor               # (B, P + T): left-padded prompt, then the response, right-padded
    attention_mask: torch.Tensor          # (B, P + T)
    prompt_length: int                    # P
    response_mask: torch.Tensor           # (B, T): 1 up to and including the end-of-sequence token
    logprobs: torch.Tensor                # (B, T) recorded while sampling (0 off the mask)
    texts: list[str]
    vision: dict[str, torch.Tensor] | None = None   # the family's image inputs (pixel_values, its masks), per row

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    @property
    def lengths(self) -> torch.Tensor:
        return self.response_mask.sum(1)

    def select(self, idx: Sequence[int]) -> "Batch":
        idx_t = torch.as_tensor(list(idx), dtype=torch.long)
        vision = None if self.vision is None else {k: v[idx_t] for k, v in self.vision.items()}
        return Batch([self.states[i] for i in idx], self.input_ids[idx_t], self.attention_mask[idx_t],
                     self.prompt_length, self.response_mask[idx_t], self.logprobs[idx_t],
                     [self.texts[i] for i in idx], vision)


class ValueHead(nn.Module):
    """V(s_t) from the policy's last hidden state (the critic of PPO shares the policy's trunk)."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.linear = nn.Linear(hidden_size, 1)
        nn.init.normal_(self.linear.weight, std=1.0 / (hidden_size + 1))
        nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.linear(hidden).squeeze(-1)


def hidden_size(pm: PolicyModel) -> int:
    return pm.model.config.get_text_config().hidden_size


def state_observation(pm: PolicyModel, state) -> dict:
    """What the policy reads at a D_R state: the prompt and 10 views, or (blind) the full message."""
    if not pm.family.reads_views:
        return {"message": state.message}
    if state.views is None:
        from octopus.data.schema import decode_views
        from octopus.model.inputs import resize_views
        state.views = resize_views(decode_views(state.images), pm.spec.image_size)
    return {"text": state.prompt, "views": state.views}


def _prompt_inputs(pm: PolicyModel, states: list) -> dict[str, torch.Tensor]:
    key = pm.family.observation_key
    obs = [state_observation(pm, s) for s in states]
    batch = pm.collate([pm.encode(o[key], o.get("views")) for o in obs], pad_left=True)
    batch.pop("labels", None)
    return batch


def position_ids(attention_mask: torch.Tensor) -> torch.Tensor:
    """Positions counted over real tokens, as `generate` counts them for left-padded prompts."""
    pos = attention_mask.long().cumsum(-1) - 1
    return pos.masked_fill_(attention_mask == 0, 1)


@torch.no_grad()
def sample(pm: PolicyModel, model, states: list, max_new_tokens: int, temperature: float,
           generator_seed: int | None = None, **generate_kwargs) -> Batch:
    """One sampled response per state (greedy when temperature is 0), with its recorded log-probabilities.
    `model` may be a bf16 copy of the policy (`Policy.model`); `generate_kwargs` go to generate (the cache)."""
    device = next(model.parameters()).device
    inputs = {k: v.to(device) for k, v in _prompt_inputs(pm, states).items()}
    if "pixel_values" in inputs:
        inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
    if generator_seed is not None:
        torch.manual_seed(generator_seed)
    was_training = model.training
    model.eval()
    greedy = temperature <= 0
    out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=not greedy,
                         suppress_tokens=never_generated(pm.spec) or None,
                         temperature=None if greedy else temperature, top_k=None, top_p=None,
                         use_cache=True, pad_token_id=pm.spec.pad_token_id, eos_token_id=pm.spec.eos_token_id,
                         return_dict_in_generate=True, output_scores=True, **generate_kwargs)
    model.train(was_training)
    p = inputs["input_ids"].shape[1]
    response = out.sequences[:, p:]
    t = response.shape[1]
    eos = response == pm.spec.eos_token_id
    first = torch.where(eos.any(1), eos.float().argmax(1), torch.full((len(states),), t - 1, device=device))
    mask = (torch.arange(t, device=device).unsqueeze(0) <= first.unsqueeze(1)).long()
    scores = torch.stack(out.scores, 1).float()  # (B, T, V): what was sampled from (logits / temperature)
    logprobs = torch.log_softmax(scores, -1).gather(-1, response.unsqueeze(-1)).squeeze(-1) * mask
    texts = []
    for row, m in zip(response.tolist(), mask.sum(1).tolist()):
        row = row[:m]
        if row and row[-1] == pm.spec.eos_token_id:
            row = row[:-1]
        texts.append(pm.tokenizer.decode(row, skip_special_tokens=True))
    response = response.masked_fill(mask == 0, pm.spec.pad_token_id)
    vision = {k: v for k, v in inputs.items() if k not in ("input_ids", "attention_mask")}
    if "image_attention_mask" in vision:  # Idefics: every response token sees all the views, as in generation
        image_mask = vision["image_attention_mask"]
        vision["image_attention_mask"] = torch.cat([image_mask, image_mask[:, -1:].expand(-1, t, -1)], 1)
    return Batch(list(states), torch.cat([inputs["input_ids"], response], 1),
                 torch.cat([inputs["attention_mask"], mask], 1), p, mask, logprobs, texts, vision or None)


def score(pm: PolicyModel, model, batch: Batch, temperature: float, value_head: ValueHead | None = None,
          with_entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """log pi(response tokens) (B, T), their entropy (or None) and V(s_t) (or None), with gradients."""
    kwargs = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask,
              "position_ids": position_ids(batch.attention_mask), "use_cache": False,
              "output_hidden_states": value_head is not None}
    if batch.vision:
        kwargs.update(batch.vision)
        kwargs["pixel_values"] = batch.vision["pixel_values"].to(model.dtype)
    p = batch.prompt_length
    t = batch.input_ids.shape[1] - p
    out = model(**kwargs, logits_to_keep=t + 1)  # the response's positions only (and the last prompt token's)
    logits = out.logits[:, :-1].float()
    if temperature > 0:
        logits = logits / temperature
    banned = never_generated(pm.spec)
    if banned:  # the distribution sampling drew from: those tokens are suppressed there
        logits[..., banned] = -1e9  # (finite: the entropy below stays a number)
    logp_all = torch.log_softmax(logits, -1)
    tokens = batch.input_ids[:, p:]
    logp = logp_all.gather(-1, tokens.unsqueeze(-1)).squeeze(-1) * batch.response_mask
    entropy = -(logp_all.exp() * logp_all).sum(-1) if with_entropy else None
    values = value_head(out.hidden_states[-1][:, p - 1:-1].float()) if value_head is not None else None
    return logp, entropy, values


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim=None) -> torch.Tensor:
    mask = mask.to(x.dtype)
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    out = (x - mean) * torch.rsqrt(var + 1e-8)
    return (out if shift_mean else out + mean) * mask


def seeded_batches(n: int, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    order = rng.permutation(n)
    return [order[i:i + size] for i in range(0, n, size)]
