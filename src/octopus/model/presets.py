"""Presets of the Octopus policy family (Flamingo/Otter-style, `transformers`' Idefics v1).

vision encoder (ViT) -> Perceiver Resampler -> gated cross-attention into a causal LM.

- `tiny`: random init, sized to train on 2 CPU cores in minutes (~2M parameters: vision d64 x 2 layers
  at 96 px with 16 px patches, 8 latents per view, text d128 x 2 layers with cross-attention before
  each). Its gates start open (`alpha_initializer="ones"`): Idefics' default zero gates make a
  random-init model ignore its images. Its tokenizer is trained offline on the training texts.
- `small`: the same design ~5x larger (~9M parameters: vision d128 x 3 layers, 16 latents per view, text
  d256 x 4 layers with cross-attention every 2), the scaling step between `tiny` and `paper`.
- `paper`: the paper's scale, CLIP-ViT-class vision and a 7B LLaMA LM with cross-attention every 4
  layers, started from the public Flamingo-style checkpoint `HuggingFaceM4/idefics-9b`. Its config is
  built here without a download; its weights load only where they exist.

    config = preset_config("tiny", vocab_size=len(tok), special_ids=...)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class Preset:
    """A model preset: its config (or the checkpoint it starts from) and how it reads images."""

    name: str
    image_size: int
    from_scratch: bool                     # random init + offline tokenizer, or a pretrained checkpoint
    checkpoint: str = ""                   # hub id of the pretrained start (empty: from scratch)
    text: dict[str, Any] = field(default_factory=dict)
    vision: dict[str, Any] = field(default_factory=dict)
    perceiver: dict[str, Any] = field(default_factory=dict)
    help: str = ""


PRESETS: dict[str, Preset] = {
    "tiny": Preset(
        "tiny", image_size=96, from_scratch=True,
        text=dict(hidden_size=128, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
                  cross_layer_interval=1, max_position_embeddings=2048, alpha_initializer="ones",
                  alpha_type="float", qk_layer_norms=False, tie_word_embeddings=False),
        vision=dict(embed_dim=64, intermediate_size=256, patch_size=16, num_hidden_layers=2,
                    num_attention_heads=4),
        perceiver=dict(use_resampler=True, resampler_n_latents=8, resampler_depth=1, resampler_n_heads=4,
                       resampler_head_dim=16),
        help="random init, ~2M parameters, trains on 2 CPU cores in minutes"),
    "small": Preset(
        "small", image_size=96, from_scratch=True,
        text=dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=8,
                  cross_layer_interval=2, max_position_embeddings=2048, alpha_initializer="ones",
                  alpha_type="float", qk_layer_norms=False, tie_word_embeddings=False),
        vision=dict(embed_dim=128, intermediate_size=512, patch_size=16, num_hidden_layers=3,
                    num_attention_heads=4),
        perceiver=dict(use_resampler=True, resampler_n_latents=16, resampler_depth=2, resampler_n_heads=4,
                       resampler_head_dim=32),
        help="random init, ~9M parameters (text d256 x 4 layers, cross-attention every 2), CPU"),
    "paper": Preset(
        "paper", image_size=224, from_scratch=False, checkpoint="HuggingFaceM4/idefics-9b",
        text=dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                  cross_layer_interval=4, max_position_embeddings=2048, alpha_initializer="zeros",
                  alpha_type="float", qk_layer_norms=False, tie_word_embeddings=False,
                  vocab_size=32000, additional_vocab_size=2),
        vision=dict(embed_dim=1280, intermediate_size=5120, patch_size=14, num_hidden_layers=32,
                    num_attention_heads=16),
        perceiver=dict(use_resampler=True, resampler_n_latents=64, resampler_depth=6, resampler_n_heads=16,
                       resampler_head_dim=96),
        help="7B LLaMA + CLIP ViT from HuggingFaceM4/idefics-9b (needs the weights and a GPU)"),
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise KeyError(f"unknown model preset {name!r}; known presets: {', '.join(PRESETS)}")
    return PRESETS[name]


def preset_config(name: str, vocab_size: int | None = None, pad_id: int = 0, bos_id: int = 1, eos_id: int = 2,
                  image_size: int | None = None):
    """The preset's `IdeficsConfig` (no download). From-scratch presets take their tokenizer's size and ids."""
    from transformers import IdeficsConfig

    p = get_preset(name)
    size = image_size or p.image_size
    text = dict(p.text)
    if vocab_size is not None:
        text["vocab_size"] = vocab_size
    if "vocab_size" not in text:
        raise ValueError(f"preset {name!r} trains its tokenizer: pass vocab_size (the tokenizer's length)")
    if size % p.vision["patch_size"]:
        raise ValueError(f"model.image_size {size} must be a multiple of the preset's patch size "
                         f"{p.vision['patch_size']}")
    return IdeficsConfig(
        **text, pad_token_id=pad_id, bos_token_id=bos_id, eos_token_id=eos_id, use_cache=True,
        freeze_text_layers=False, freeze_vision_layers=False, freeze_lm_head=False,
        use_resampler=p.perceiver["use_resampler"], perceiver_config=dict(p.perceiver),
        vision_config=dict(p.vision, image_size=size, num_channels=3, hidden_act="gelu"))


#: the vision side of a policy built on a pretrained LM (`model.preset` a backbone): trained from scratch (no
#: pretrained vision weights ship in a registry package). ~2M parameters at 96 px: 36 patches per view, 16
#: latents per view (idefics); cross-attention every 5 of SmolLM2's 30 layers (~171M parameters in all).
BACKBONE_VISION: dict[str, Any] = {
    "image_size": 96,
    "cross_layer_interval": 5,
    "vision": dict(embed_dim=192, intermediate_size=768, patch_size=16, num_hidden_layers=4, num_attention_heads=6),
    "perceiver": dict(use_resampler=True, resampler_n_latents=16, resampler_depth=2, resampler_n_heads=4,
                      resampler_head_dim=48),
}
