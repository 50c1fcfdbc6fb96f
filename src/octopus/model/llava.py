"""The `auto` family: any `AutoModelForImageTextToText` (LLaVA-style) by hub id or local path.

The paper notes Octopus is "compatible with LLaVA"; this is that path. The model's own processor
expands each of the 10 `<image>` placeholders (views first, in their fixed order) into its patch
tokens, so every text token sees every view through ordinary causal attention. Loss is on the
response only, as for the Idefics family; finetune groups are `vision_tower` (vision),
`multi_modal_projector` (connector) and the rest (LM).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from octopus.config import ModelParams
from octopus.protocol.api import N_VIEWS
from octopus.model.factory import Family, ModelError, PolicyModel, load_weights, register_family
from octopus.model.hub import hub_error, resolve
from octopus.model.inputs import IGNORE, RESPONSE_MARK, pad


@dataclass(frozen=True)
class AutoSpec:
    max_length: int
    image_size: int | None
    pad_token_id: int
    eos_token_id: int


@dataclass
class AutoExample:
    input_ids: list[int]
    labels: list[int]
    views: np.ndarray           # (10, S, S, 3) uint8; the image processor runs at collate time
    truncated: int = 0


@register_family("auto")
class AutoFamily(Family):
    _GROUPS = (("vision_tower", "vision"), ("vision_model", "vision"), ("multi_modal_projector", "connector"))

    def build(self, mp: ModelParams, texts: list[str], seed: int) -> PolicyModel:
        if not mp.name_or_path:
            raise ModelError("model.family auto needs model.name_or_path (a hub id or a local directory of an "
                             "AutoModelForImageTextToText checkpoint, e.g. llava-hf/llava-1.5-7b-hf)")
        from transformers import AutoModelForImageTextToText, AutoProcessor
        source = resolve(mp.name_or_path)
        try:
            processor = AutoProcessor.from_pretrained(source)
            torch.manual_seed(seed)
            model = AutoModelForImageTextToText.from_pretrained(source, dtype="auto")
        except (OSError, ValueError) as err:
            raise hub_error(mp.name_or_path, err) from None
        return self._wrap(model, processor, mp.max_length, {"preset": mp.name_or_path, "from_scratch": False})

    def load(self, path: Path, meta: dict) -> PolicyModel:
        from transformers import AutoModelForImageTextToText, AutoProcessor
        processor = AutoProcessor.from_pretrained(path)
        model = load_weights(AutoModelForImageTextToText, path)
        return self._wrap(model, processor, meta["spec"]["max_length"],
                          {k: v for k, v in meta.items() if k not in ("spec", "family")})

    def _wrap(self, model, processor, max_length: int, meta: dict) -> PolicyModel:
        tok = processor.tokenizer
        if getattr(processor, "image_token", None) is None:
            raise ModelError(f"{type(processor).__name__} has no image token: not an image-text-to-text processor")
        size = getattr(processor.image_processor, "crop_size", None) or getattr(processor.image_processor, "size", None)
        size = (size.get("height") or size.get("shortest_edge")) if isinstance(size, dict) else \
            getattr(size, "height", None) or getattr(size, "shortest_edge", None)
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        return PolicyModel(self, model, tok, processor, AutoSpec(max_length, size, pad, tok.eos_token_id), meta)

    def encode(self, pm: PolicyModel, prompt: str, views, response) -> AutoExample:
        from PIL import Image
        tok, spec = pm.tokenizer, pm.spec
        if views is None:
            raise ValueError("the auto family needs the 10 views for every sample")
        views = np.asarray(views)
        if views.ndim != 4 or views.shape[0] != N_VIEWS:
            raise ValueError(f"expected {N_VIEWS} RGB views of shape (10, S, S, 3), got {views.shape}")
        head = pm.processor(text=pm.processor.image_token * N_VIEWS + "\n",
                            images=[Image.fromarray(v.astype(np.uint8)) for v in views], return_tensors="pt")
        head_ids = head["input_ids"][0].tolist()
        text = tok(prompt.rstrip("\n") + RESPONSE_MARK, add_special_tokens=False)["input_ids"]
        answer = [] if response is None else tok(response, add_special_tokens=False)["input_ids"] + [spec.eos_token_id]
        budget = max(spec.max_length - len(head_ids) - len(answer), 8)
        cut = max(len(text) - budget, 0)
        if cut:  # keep the start and the end of the instruction; the image tokens and response stay whole
            tail = budget // 2
            text = text[:budget - tail] + text[len(text) - tail:]
        prompt_ids = head_ids + text
        return AutoExample(prompt_ids + answer, [IGNORE] * len(prompt_ids) + answer, views.astype(np.uint8), cut)

    def collate(self, pm: PolicyModel, examples: list, pad_left: bool) -> dict[str, torch.Tensor]:
        batch, _ = pad(examples, pm.spec.pad_token_id, pad_left)
        from PIL import Image
        images = [Image.fromarray(v) for ex in examples for v in ex.views]  # all samples' views, in order
        pixels = pm.processor.image_processor(images, return_tensors="pt")
        return {**batch, **dict(pixels)}

    def groups(self, model) -> dict[str, str]:
        return {n: next((g for key, g in self._GROUPS if key in n), "lm") for n, _ in model.named_parameters()}
