"""Faster generation on a CPU: grouped-query decoding that reads the KV cache in place, and a cache that grows
without copying itself at every token.

    from octopus.model.decoding import GrowingCache, use_fast_attention
    use_fast_attention(model)          # any transformers model on the attention interface (Llama, Idefics, ...)
    model.generate(..., past_key_values=GrowingCache())

Decoding one token at a time, `transformers`' SDPA path on a CPU spends most of a step in PyTorch's flash
kernel (built for long queries) and, for grouped-query models such as SmolLM2 (9 query heads, 3 KV heads),
in `repeat_kv`, which copies the whole cache three times per layer per token. Here a one-token query is
reshaped so each KV head serves its group of query heads in two small matmuls, and the cache is read in
place; longer queries (prefill, training) go to SDPA unchanged. Same results as SDPA (tested); measured
on SmolLM2-135M in bf16, 16 responses of 250 tokens on 2 cores: 2.3x the responses/s.
"""

from __future__ import annotations

import torch
from transformers import AttentionInterface
from transformers.cache_utils import Cache, DynamicLayer
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

NAME = "octopus_gqa"


def grouped_attention(module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      attention_mask: torch.Tensor | None, scaling: float | None = None, dropout: float = 0.0,
                      **kwargs) -> tuple[torch.Tensor, None]:
    """SDPA for queries longer than one token; for one token, grouped heads over the cache as stored.

    query (B, H, q, d); key, value (B, Hkv, L, d); mask bool (True: attend) or additive, (B, 1|H, q, L)."""
    b, h, q, d = query.shape
    if q != 1 or h % key.shape[1] or (module is not None and module.training and dropout > 0):
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout,
                                      **kwargs)
    hkv, length = key.shape[1], key.shape[2]
    group = h // hkv
    scores = torch.matmul(query.reshape(b, hkv, group, d), key.transpose(2, 3))   # (B, Hkv, group, L)
    scores = scores * (scaling if scaling is not None else d ** -0.5)
    if attention_mask is not None:
        mask = attention_mask[..., -1, :length]                                  # (B, 1|H, L): the one query row
        mask = mask.reshape(b, -1, 1, length) if mask.shape[1] == 1 else mask.reshape(b, hkv, group, length)
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
        else:
            scores = scores + mask.to(scores.dtype)
    weights = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
    out = torch.matmul(weights, value)                                           # (B, Hkv, group, d)
    return out.reshape(b, h, 1, d).transpose(1, 2).contiguous(), None


AttentionInterface.register(NAME, grouped_attention)
AttentionMaskInterface.register(NAME, sdpa_mask)


def use_fast_attention(model) -> bool:
    """Switch `model` (and its sub-models) to the grouped decoding attention where it supports SDPA; True if it did."""
    if not getattr(model, "_supports_sdpa", False) or getattr(model.config, "_attn_implementation", None) != "sdpa":
        return False
    from transformers.utils import logging as hf_logging
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # sub-configs without a sub-model of their own (Idefics' perceiver) warn
    try:
        model.set_attn_implementation(NAME)
    except (ValueError, AttributeError, KeyError):
        return False
    finally:
        hf_logging.set_verbosity(level)
    return True


class GrowingLayer(DynamicLayer):
    """A dynamic cache layer in preallocated storage: a token's keys and values are written in place and the layer
    shows the filled part as a view, so a step neither copies the cache (DynamicLayer concatenates: the whole cache
    per token) nor attends over unused slots (a static cache's full length). Storage grows by `CHUNK` tokens."""

    CHUNK = 256

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        super().lazy_initialization(key_states, value_states)
        self._keys = self._values = None
        self.length = 0

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        n = key_states.shape[-2]
        if self._keys is None or self.length + n > self._keys.shape[-2]:
            size = self.length + n + self.CHUNK
            keys = key_states.new_empty((*key_states.shape[:-2], size, key_states.shape[-1]))
            values = value_states.new_empty((*value_states.shape[:-2], size, value_states.shape[-1]))
            if self.length:
                keys[..., :self.length, :] = self._keys[..., :self.length, :]
                values[..., :self.length, :] = self._values[..., :self.length, :]
            self._keys, self._values = keys, values
        self._keys[..., self.length:self.length + n, :] = key_states
        self._values[..., self.length:self.length + n, :] = value_states
        self.length += n
        self.keys, self.values = self._keys[..., :self.length, :], self._values[..., :self.length, :]
        return self.keys, self.values

    def reset(self) -> None:
        self._keys = self._values = None
        self.length = 0
        super().reset()

    def crop(self, tokens_to_remove: int) -> None:
        super().crop(tokens_to_remove)
        if self.is_initialized and self.keys is not None:
            self.length = self.keys.shape[-2]

    def batch_repeat_interleave(self, repeats: int) -> None:
        super().batch_repeat_interleave(repeats)
        self._keys, self._values, self.length = self.keys, self.values, self.keys.shape[-2]

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        super().batch_select_indices(indices)
        self._keys, self._values, self.length = self.keys, self.values, self.keys.shape[-2]


def GrowingCache() -> Cache:  # noqa: N802 - a factory that reads as the cache class it makes
    """A cache of `GrowingLayer`s, one per layer as the model asks for it (for models with full attention in every
    layer; sliding-window layers need their own cache)."""
    return Cache(layer_class_to_replicate=GrowingLayer)


def supports_growing_cache(model) -> bool:
    """Whether every attention layer of the model's text part attends to the whole sequence (no sliding windows)."""
    config = model.config.get_text_config()
    return not any("sliding" in str(t) for t in (getattr(config, "layer_types", None) or ())) and \
        not getattr(config, "sliding_window", None)
