"""The `smolvlm` family: Octopus in the Idefics3 / SmolVLM design, on a pretrained causal LM.

Each of the 10 views goes through a SigLIP-style vision encoder (trained from scratch), a pixel-shuffle
connector folds its patches 4 to 1 and projects them into the LM, and the resulting 16 tokens per view
take the place of 16 image tokens in the text: the LM reads the views with ordinary self-attention, in
their fixed order (EGO-0 ... EGO-315, BEV-I, BEV-II), before the instruction. SmolVLM-256M is this design on
SmolLM2; here it is built on any `model.preset` backbone (`octopus.model.backbones`) or `model.name_or_path`
causal LM, with `transformers`' `SmolVLMForConditionalGeneration`. Loss is on the response only.

Presets: `tiny` (a random-init 2-layer Llama and vision tower, for tests) and every backbone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from octopus.config import ModelParams
from octopus.model.factory import Family, ModelError, PolicyModel, load_weights, register_family
from octopus.model.inputs import RESPONSE_MARK, chat_format, layout, pad, pixel_tensor, prefix_ids, resize_views
from octopus.protocol.api import N_VIEWS

SIGLIP_MEAN = (0.5, 0.5, 0.5)
SIGLIP_STD = (0.5, 0.5, 0.5)
#: the vision tower and connector of every preset: 96 px views in 12 px patches (8 x 8), folded 2 x 2 into 16
#: tokens per view; ~2M parameters
VISION = dict(hidden_size=192, intermediate_size=768, num_hidden_layers=4, num_attention_heads=6, patch_size=12,
              image_size=96, num_channels=3)
SCALE_FACTOR = 2
TINY_TEXT = dict(hidden_size=128, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, max_position_embeddings=4096, tie_word_embeddings=True)


@dataclass(frozen=True)
class SmolVLMSpec:
    """How a smolvlm policy reads its inputs (saved with the checkpoint as octopus.json)."""

    image_size: int
    max_length: int
    image_token_id: int
    tokens_per_view: int
    bos_token_id: int
    eos_token_id: int
    pad_token_id: int
    prefix: str = ""
    suffix: str = RESPONSE_MARK
    add_bos: bool = True
    image_mean: tuple[float, float, float] = SIGLIP_MEAN
    image_std: tuple[float, float, float] = SIGLIP_STD


@dataclass
class SmolVLMExample:
    input_ids: list[int]
    labels: list[int]
    views: np.ndarray | None       # (10, H, W, 3) uint8 at the spec's size
    truncated: int = 0


def _image_token(tok) -> int:
    """An existing special token to stand for image positions (no new embedding rows): the tokenizer's own
    `<image>`, else `<empty_output>`, a special token SmolLM2's vocabulary has and its texts never use."""
    for name in ("<image>", "<empty_output>"):
        i = tok.convert_tokens_to_ids(name)
        if i is not None and i != tok.unk_token_id:
            return int(i)
    raise ModelError(f"{type(tok).__name__} has no <image> or <empty_output> token to stand for image positions")


@register_family("smolvlm")
class SmolVLMFamily(Family):
    static_cache = True
    _GROUPS = (("model.vision_model.", "vision"), ("model.connector.", "connector"))

    def build(self, mp: ModelParams, texts: list[str], seed: int) -> PolicyModel:
        from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

        from octopus.model.backbones import BACKBONES, backbone_source
        from octopus.model.hub import hub_error, resolve
        if mp.preset in BACKBONES or mp.name_or_path:
            name = mp.name_or_path or backbone_source(mp.preset)
            try:
                source = resolve(name)
                tok = AutoTokenizer.from_pretrained(source)
                lm = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
            except (OSError, ValueError) as err:
                raise hub_error(name, err) from None
            chat, meta = chat_format(tok), {"preset": mp.preset, "from_scratch": False, "vision_from_scratch": True,
                                            "backbone": name}
        elif mp.preset == "tiny":
            from octopus.model.tokenizer import train_tokenizer
            tok = train_tokenizer(texts, mp.vocab_size, mp.split_names)
            torch.manual_seed(seed)
            lm = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), pad_token_id=tok.pad_token_id,
                                              bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, **TINY_TEXT))
            chat, meta = {}, {"preset": "tiny", "from_scratch": True}
        else:
            raise ModelError(f"model.family smolvlm: unknown preset {mp.preset!r}; known: tiny, {', '.join(BACKBONES)}")
        model = self._assemble(lm, _image_token(tok), mp.image_size or VISION["image_size"], seed)
        return PolicyModel(self, model, tok, tok, self._spec(tok, model, mp.max_length, chat), meta)

    @staticmethod
    def _assemble(lm, image_token_id: int, size: int, seed: int):
        """SmolVLMForConditionalGeneration around `lm`'s weights (its text model), vision and connector new."""
        from transformers import SmolVLMConfig, SmolVLMForConditionalGeneration
        patch = VISION["patch_size"]
        if size % (patch * SCALE_FACTOR):
            raise ModelError(f"model.image_size {size} must be a multiple of {patch * SCALE_FACTOR} (patch "
                             f"{patch} x pixel shuffle {SCALE_FACTOR})")
        config = SmolVLMConfig(text_config=lm.config.to_dict(), vision_config=dict(VISION, image_size=size),
                               scale_factor=SCALE_FACTOR, image_token_id=image_token_id,
                               tie_word_embeddings=lm.config.tie_word_embeddings, use_cache=True)
        torch.manual_seed(seed)
        model = SmolVLMForConditionalGeneration(config)
        state = {("lm_head." + k[len("lm_head."):]) if k.startswith("lm_head.") else "model.text_model." +
                 k[len("model."):]: v for k, v in lm.state_dict().items()}
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith(("model.vision_model.", "model.connector.", "lm_head."))]
        if missing or unexpected:
            raise ModelError(f"the LM's weights do not map onto SmolVLM's text model (missing {missing[:3]}, "
                             f"unexpected {unexpected[:3]})")
        if config.tie_word_embeddings:
            model.tie_weights()
        return model

    @staticmethod
    def _spec(tok, model, max_length: int, chat: dict) -> SmolVLMSpec:
        v = model.config.vision_config
        per_view = (v.image_size // v.patch_size) ** 2 // model.config.scale_factor ** 2
        pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        bos = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
        return SmolVLMSpec(v.image_size, max_length, model.config.image_token_id, per_view, bos, tok.eos_token_id,
                           pad_id, **chat)

    def load(self, path: Path, meta: dict) -> PolicyModel:
        from transformers import AutoTokenizer, SmolVLMForConditionalGeneration
        tok = AutoTokenizer.from_pretrained(path)
        model = load_weights(SmolVLMForConditionalGeneration, path)
        spec = SmolVLMSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in meta["spec"].items()})
        return PolicyModel(self, model, tok, tok, spec, {k: v for k, v in meta.items() if k not in ("spec", "family")})

    def encode(self, pm: PolicyModel, prompt: str, views, response) -> SmolVLMExample:
        spec = pm.spec
        newline = pm.tokenizer("\n", add_special_tokens=False)["input_ids"]
        head = prefix_ids(spec, pm.tokenizer) + [spec.image_token_id] * (spec.tokens_per_view * N_VIEWS) + newline
        ids, labels, cut = layout(spec, pm.tokenizer, head, prompt, response)
        px = None if views is None else resize_views(views, spec.image_size)
        return SmolVLMExample(ids, labels, px, cut)

    def collate(self, pm: PolicyModel, examples: list, pad_left: bool) -> dict[str, torch.Tensor]:
        if any(ex.views is None for ex in examples):
            raise ValueError("every example needs its 10 views")
        batch, _ = pad(examples, pm.spec.pad_token_id, pad_left)
        pixels = pixel_tensor(pm.spec, [ex.views for ex in examples])
        return {**batch, "pixel_values": pixels,
                "pixel_attention_mask": torch.ones((*pixels.shape[:2], *pixels.shape[-2:]), dtype=torch.bool)}

    def groups(self, model) -> dict[str, str]:
        out = {}
        for n, _ in model.named_parameters():
            n0 = n.removeprefix("base_model.model.")
            out[n] = next((g for prefix, g in self._GROUPS if n0.startswith(prefix)), "lm")
        return out
