"""Policy model families, registered by name and built in one place.

    pm = build_model(params.model, texts, seed=0)   # a new model (+ tokenizer/processor) for a family/preset
    pm.save("models/sft/octopus"); pm = load_model("models/sft/octopus")
    batch = pm.collate([pm.encode(prompt, views, response)])

Families:
- `idefics`: Octopus, Flamingo/Otter-style, on `IdeficsForVisionText2Text` (presets in `presets.py`).
- `auto`: any `AutoModelForImageTextToText` (LLaVA-style) by hub id or local path (`llava.py`).
- `text`: a blind causal LM reading the message with Observed Objects/Relations (`text.py`), the
  paper's "LLaMA / CodeLLaMA GT (O+R)" baseline.

A checkpoint is a `save_pretrained` directory (model, tokenizer, processor) plus `octopus.json`
(family, preset, input spec), so `from_pretrained` restores each part and `load_model` all of them.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from octopus.config import FINETUNE_MODES, ModelParams
from octopus.model import inputs
from octopus.model.inputs import Example, InputSpec
from octopus.model.presets import CLIP_MEAN, CLIP_STD, get_preset, preset_config

META = "octopus.json"
FAMILIES: dict[str, Callable[[], "Family"]] = {}


class ModelError(RuntimeError):
    """A model cannot be built or loaded (unknown family or preset, missing weights, bad checkpoint)."""


@dataclass
class PolicyModel:
    """A policy's model with what it reads its inputs with."""

    family: "Family"
    model: Any
    tokenizer: Any
    processor: Any
    spec: Any
    meta: dict = field(default_factory=dict)

    def encode(self, prompt: str, views: np.ndarray | None, response: str | None = None) -> Any:
        return self.family.encode(self, prompt, views, response)

    def collate(self, examples: list, pad_left: bool = False) -> dict[str, torch.Tensor]:
        return self.family.collate(self, examples, pad_left)

    def groups(self) -> dict[str, str]:
        """parameter name -> vision | connector | lm (what the finetune modes select from)."""
        return self.family.groups(self.model)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(path)
        self.processor.save_pretrained(path)
        if self.processor is not self.tokenizer:
            self.tokenizer.save_pretrained(path)
        meta = {**self.meta, "family": self.family.name, "spec": asdict(self.spec)}
        (path / META).write_text(json.dumps(meta, indent=1, sort_keys=True))
        return path


class Family:
    """How one model family is built, loaded, fed and partitioned into finetune groups."""

    name = ""
    reads_views = True   # False: a blind policy, reading the message with Observed Objects/Relations instead
    static_cache = False  # its generate() takes cache_implementation="static" (large models decode faster)

    @property
    def prompt_column(self) -> str:
        """The dataset column it learns from: `prompt` (with the views) or `message` (blind)."""
        return "prompt" if self.reads_views else "message"

    @property
    def observation_key(self) -> str:
        """The observation entry it reads: `text` (+ `views`), or `message` (blind; the env's info["message"])."""
        return "text" if self.reads_views else "message"

    def step_observation(self, row: dict, views) -> dict:
        """What a policy of this family reads for a dataset step, as an agent builds it in an episode."""
        return {"text": row["prompt"], "views": views} if self.reads_views else {"message": row["message"]}

    def build(self, mp: ModelParams, texts: list[str], seed: int) -> PolicyModel:
        raise NotImplementedError

    def load(self, path: Path, meta: dict) -> PolicyModel:
        raise NotImplementedError

    def encode(self, pm: PolicyModel, prompt: str, views, response) -> Any:
        raise NotImplementedError

    def collate(self, pm: PolicyModel, examples: list, pad_left: bool) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def groups(self, model) -> dict[str, str]:
        raise NotImplementedError


def register_family(name: str) -> Callable:
    def wrap(cls: type) -> type:
        cls.name = name
        FAMILIES[name] = cls
        return cls
    return wrap


def get_family(name: str) -> Family:
    from octopus.model import llava, smolvlm, text  # noqa: F401 - register the auto, smolvlm and text families
    if name not in FAMILIES:
        raise ModelError(f"unknown model family {name!r}; known families: {', '.join(sorted(FAMILIES))}")
    return FAMILIES[name]()


def build_model(mp: ModelParams, texts: list[str], seed: int = 0) -> PolicyModel:
    """A new policy for `mp` (random init + tokenizer trained on `texts`, or a pretrained start)."""
    return get_family(mp.family).build(mp, texts, seed)


def load_weights(model_class: Any, path: Path, **kwargs) -> Any:
    """`model_class.from_pretrained(path)`, strict: a tensor missing from the checkpoint or of another shape is a
    ModelError naming it (transformers would initialise it at random with a warning, or raise a bare RuntimeError)."""
    model, info = model_class.from_pretrained(path, output_loading_info=True, ignore_mismatched_sizes=True, **kwargs)
    bad = [f"{k} missing" for k in sorted(info["missing_keys"])]
    bad += [f"{k} has shape {tuple(c)}, the model needs {tuple(m)}" for k, c, m in sorted(info["mismatched_keys"])]
    if bad:
        raise ModelError(f"{path}: damaged checkpoint, {len(bad)} tensor(s) unusable: {'; '.join(bad[:5])}"
                         + (" ..." if len(bad) > 5 else "") + " (train it again)")
    return model


def load_model(path: str | Path) -> PolicyModel:
    """A saved policy (`PolicyModel.save`), in one call."""
    path = Path(path)
    if not (path / META).is_file():
        raise ModelError(f"{path}: not an Octopus policy checkpoint (no {META}; train one with `octopus sft`)")
    try:
        meta = json.loads((path / META).read_text())
        family = get_family(meta["family"])
    except (ValueError, KeyError) as err:
        raise ModelError(f"{path / META}: unreadable ({err})") from None
    from safetensors import SafetensorError
    try:
        return family.load(path, meta)
    except (OSError, ValueError, SafetensorError) as err:  # a truncated or overwritten weights file
        raise ModelError(f"{path}: cannot load the checkpoint ({type(err).__name__}: {err})") from None


def trainable_names(pm: PolicyModel, mode: str) -> set[str]:
    """The parameters a finetune mode trains: connector, connector_lm (+ LM) or full (+ vision)."""
    if mode not in FINETUNE_MODES:
        raise ValueError(f"unknown finetune mode {mode!r}; known: {', '.join(FINETUNE_MODES)}")
    wanted = {"connector": {"connector"}, "connector_lm": {"connector", "lm"},
              "full": {"connector", "lm", "vision"}}[mode]
    if pm.meta.get("vision_from_scratch"):  # a vision tower with no pretrained weights trains in every mode
        wanted = wanted | {"vision"}
    return {n for n, g in pm.groups().items() if g in wanted}


def set_finetune_mode(pm: PolicyModel, mode: str) -> tuple[int, int]:
    """Freeze everything the mode does not train; returns (trainable, total) parameter counts."""
    return train_only(pm, trainable_names(pm, mode))


def train_only(pm: PolicyModel, names: set[str]) -> tuple[int, int]:
    """Freeze every parameter not in `names`; returns (trainable, total) parameter counts."""
    trainable = total = 0
    for n, p in pm.model.named_parameters():
        p.requires_grad_(n in names)
        total += p.numel()
        trainable += p.numel() if n in names else 0
    return trainable, total


# ---------------------------------------------------------------------- idefics (Octopus)
#: parameters Idefics adds to a causal LM (trained from scratch when it is built on a pretrained one)
_NEW_IN_IDEFICS = ("model.vision_model.", "model.perceiver_resampler.", "model.gated_cross_attn_layers.")


@register_family("idefics")
class IdeficsFamily(Family):
    """Flamingo/Otter-style: vision encoder -> Perceiver Resampler -> gated cross-attention into the LM."""

    static_cache = True

    _GROUPS = (("model.vision_model.", "vision"), ("model.perceiver_resampler.", "connector"),
               ("model.gated_cross_attn_layers.", "connector"), ("model.embed_tokens.", "lm"),
               ("model.layers.", "lm"), ("model.norm.", "lm"), ("lm_head.", "lm"))

    def build(self, mp: ModelParams, texts: list[str], seed: int) -> PolicyModel:
        from transformers import IdeficsForVisionText2Text, IdeficsImageProcessorPil, IdeficsProcessor

        from octopus.model.backbones import BACKBONES
        if mp.preset in BACKBONES:
            return self._on_backbone(mp, seed)
        preset = get_preset(mp.preset)
        size = mp.image_size or preset.image_size
        if not preset.from_scratch:
            return self._pretrained(mp.name_or_path or preset.checkpoint, mp, size)
        from octopus.model.tokenizer import train_tokenizer
        tok = train_tokenizer(texts, mp.vocab_size, mp.split_names)
        config = preset_config(mp.preset, vocab_size=len(tok), pad_id=tok.pad_token_id, bos_id=tok.bos_token_id,
                               eos_id=tok.eos_token_id, image_size=size)
        torch.manual_seed(seed)
        model = IdeficsForVisionText2Text(config)
        image_processor = IdeficsImageProcessorPil(image_size=size, image_mean=list(CLIP_MEAN),
                                                   image_std=list(CLIP_STD))
        processor = IdeficsProcessor(image_processor=image_processor, tokenizer=tok, image_size=size)
        return PolicyModel(self, model, tok, processor, self._spec(tok, size, mp.max_length),
                           {"preset": mp.preset, "from_scratch": True})

    def _pretrained(self, name: str, mp: ModelParams, size: int) -> PolicyModel:
        from transformers import AutoProcessor, IdeficsForVisionText2Text

        from octopus.model.hub import hub_error, resolve
        source = resolve(name)
        try:
            processor = AutoProcessor.from_pretrained(source)
            model = IdeficsForVisionText2Text.from_pretrained(source, dtype="auto")
        except (OSError, ValueError) as err:
            raise hub_error(name, err) from None
        model.config.freeze_text_layers = model.config.freeze_vision_layers = False
        return PolicyModel(self, model, processor.tokenizer, processor,
                           self._spec(processor.tokenizer, size, mp.max_length), {"preset": mp.preset,
                                                                                  "from_scratch": False})

    def _on_backbone(self, mp: ModelParams, seed: int) -> PolicyModel:
        """Flamingo on a pretrained Llama-architecture LM: its weights mapped 1:1 into Idefics' decoder (the KV heads
        of grouped-query attention repeated, as Idefics has none), a vision encoder, Perceiver Resampler and gated
        cross-attention trained from scratch; with the gates at 0 the model is the LM (tested)."""
        from transformers import (AutoModelForCausalLM, AutoTokenizer, IdeficsConfig, IdeficsForVisionText2Text,
                                  IdeficsImageProcessorPil, IdeficsProcessor)

        from octopus.model.backbones import backbone_source
        from octopus.model.hub import hub_error, resolve
        from octopus.model.inputs import chat_format
        from octopus.model.presets import BACKBONE_VISION
        name = mp.name_or_path or backbone_source(mp.preset)
        source = resolve(name)
        try:
            tok = AutoTokenizer.from_pretrained(source)
            lm = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
        except (OSError, ValueError) as err:
            raise hub_error(name, err) from None
        c = lm.config
        if c.model_type != "llama":
            raise ModelError(f"{name}: the idefics family builds on a Llama-architecture LM, this is {c.model_type!r} "
                             "(use model.family smolvlm, whose connector feeds any causal LM)")
        v = BACKBONE_VISION
        size = mp.image_size or v["image_size"]
        heads, kv_heads = c.num_attention_heads, c.num_key_value_heads or c.num_attention_heads
        config = IdeficsConfig(
            vocab_size=c.vocab_size, additional_vocab_size=0, hidden_size=c.hidden_size,
            intermediate_size=c.intermediate_size, num_hidden_layers=c.num_hidden_layers, num_attention_heads=heads,
            rms_norm_eps=c.rms_norm_eps, rope_parameters=dict(c.rope_parameters), max_position_embeddings=
            c.max_position_embeddings, tie_word_embeddings=c.tie_word_embeddings, cross_layer_interval=
            min(v["cross_layer_interval"], c.num_hidden_layers), qk_layer_norms=False, alpha_initializer="zeros", alpha_type="float",
            pad_token_id=c.pad_token_id if c.pad_token_id is not None else tok.eos_token_id,
            bos_token_id=c.bos_token_id, eos_token_id=c.eos_token_id, use_cache=True, freeze_text_layers=False,
            freeze_vision_layers=False, freeze_lm_head=False, use_resampler=True,
            perceiver_config=dict(v["perceiver"]),
            vision_config=dict(v["vision"], image_size=size, num_channels=3, hidden_act="gelu"))
        torch.manual_seed(seed)
        model = IdeficsForVisionText2Text(config)
        state = lm.state_dict()
        group = heads // kv_heads
        for key in list(state):
            if key.endswith(("k_proj.weight", "v_proj.weight")) and group > 1:  # (kv*d, h) -> (heads*d, h)
                w = state[key]
                state[key] = w.view(kv_heads, -1, w.shape[1]).repeat_interleave(group, 0).reshape(-1, w.shape[1])
        missing, unexpected = model.load_state_dict(state, strict=False)
        lm_missing = [k for k in missing if not k.startswith(_NEW_IN_IDEFICS) and k != "lm_head.weight"]
        if lm_missing or unexpected:
            raise ModelError(f"{name}: its weights do not map onto Idefics' decoder (missing {lm_missing[:3]}, "
                             f"unexpected {unexpected[:3]})")
        model.tie_weights()
        image_processor = IdeficsImageProcessorPil(image_size=size, image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD))
        processor = IdeficsProcessor(image_processor=image_processor, tokenizer=tok, image_size=size)
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        spec = InputSpec(size, mp.max_length, CLIP_MEAN, CLIP_STD, -1, -1, tok.bos_token_id, tok.eos_token_id, pad,
                         **chat_format(tok), image_tokens=False)
        return PolicyModel(self, model, tok, processor, spec, {"preset": mp.preset, "from_scratch": False,
                                                                "vision_from_scratch": True, "backbone": name})

    def load(self, path: Path, meta: dict) -> PolicyModel:
        from transformers import IdeficsForVisionText2Text, IdeficsProcessor
        processor = IdeficsProcessor.from_pretrained(path)
        model = load_weights(IdeficsForVisionText2Text, path)
        spec = InputSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in meta["spec"].items()})
        return PolicyModel(self, model, processor.tokenizer, processor, spec,
                           {k: v for k, v in meta.items() if k not in ("spec", "family")})

    @staticmethod
    def _spec(tok, size: int, max_length: int) -> InputSpec:
        from octopus.model.tokenizer import FAKE, IMAGE
        ids = tok.convert_tokens_to_ids([IMAGE, FAKE])
        if tok.unk_token_id is not None and tok.unk_token_id in ids:
            raise ModelError(f"the tokenizer has no {IMAGE} / {FAKE} tokens (not an Idefics tokenizer)")
        return InputSpec(size, max_length, CLIP_MEAN, CLIP_STD, ids[0], ids[1], tok.bos_token_id,
                         tok.eos_token_id, tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)

    def encode(self, pm: PolicyModel, prompt: str, views, response) -> Example:
        return inputs.encode(pm.spec, pm.tokenizer, prompt, views, response)

    def collate(self, pm: PolicyModel, examples: list, pad_left: bool) -> dict[str, torch.Tensor]:
        return inputs.collate(pm.spec, examples, pad_left)

    def groups(self, model) -> dict[str, str]:
        out = {}
        for n, _ in model.named_parameters():
            n0 = n.removeprefix("base_model.model.")
            group = next((g for prefix, g in self._GROUPS if n0.startswith(prefix)), None)
            if group is None and ".lora_" in n0:
                group = "lm"
            if group is None:
                raise ModelError(f"parameter {n!r} belongs to no finetune group (vision, connector, lm)")
            out[n] = group
        return out
