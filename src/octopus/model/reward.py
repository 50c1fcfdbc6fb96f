"""The reward model r_phi (paper §4.4): a text-only sequence classifier with one output.

    rm = RewardModel.build(params.reward, texts, seed=0)    # tiny: from scratch on an offline tokenizer
    rm = RewardModel.from_pretrained("models/reward")      # a trained one
    scores = rm.score([(message, response), ...])          # one float per (state, response)

It reads the state's full environment message (Observed Objects and Relations, Inventory, Task Goal,
previous code and error: the paper's T*_i, text only like its CodeLLaMA) and a response (T_r), joined
by the policy's response mark. A message too long for `reward.max_length` loses its middle (the
objects' start and the goal/error end stay, as for the policies); the response is never cut.
Presets: `tiny` (a 2-layer Llama from scratch, trains on a CPU) and `paper`
(`codellama/CodeLlama-7b-hf` with a new value head; needs the weights).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from octopus.model.factory import ModelError
from octopus.model.inputs import layout, pad
from octopus.model.text import TextSpec

META = "octopus_reward.json"
REWARD_PRESETS: dict[str, Any] = {
    "tiny": dict(hidden_size=128, intermediate_size=512, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=4, max_position_embeddings=4096, tie_word_embeddings=False),
    "paper": "codellama/CodeLlama-7b-hf",
}


@dataclass
class RewardModel:
    """A sequence classifier (one output) and its tokenizer; `score` is r_phi(state, response)."""

    model: Any
    tokenizer: Any
    spec: TextSpec
    meta: dict = field(default_factory=dict)

    @classmethod
    def build(cls, preset: str, texts: list[str], max_length: int, vocab_size: int = 4096,
              name_or_path: str = "", seed: int = 0) -> "RewardModel":
        if preset not in REWARD_PRESETS:
            raise ModelError(f"reward.preset: unknown preset {preset!r}; known: {', '.join(REWARD_PRESETS)}")
        config = REWARD_PRESETS[preset]
        if name_or_path or isinstance(config, str):
            return cls._pretrained(name_or_path or config, max_length, preset, seed)
        from transformers import LlamaConfig, LlamaForSequenceClassification

        from octopus.model.tokenizer import train_tokenizer
        tok = train_tokenizer(texts, vocab_size, True)
        torch.manual_seed(seed)
        model = LlamaForSequenceClassification(LlamaConfig(
            vocab_size=len(tok), pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id, num_labels=1, **config))
        return cls(model, tok, _spec(tok, max_length), {"preset": preset, "from_scratch": True})

    @classmethod
    def _pretrained(cls, name: str, max_length: int, preset: str, seed: int) -> "RewardModel":
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from octopus.model.hub import hub_error, resolve
        source = resolve(name, "reward.name_or_path")
        try:
            tok = AutoTokenizer.from_pretrained(source)
            torch.manual_seed(seed)
            model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=1, dtype="auto")
        except (OSError, ValueError) as err:
            raise hub_error(name, err, "reward.name_or_path") from None
        if tok.pad_token is None:  # Llama tokenizers have none; the classifier finds the last non-pad token
            tok.pad_token = tok.unk_token or tok.eos_token
        model.config.pad_token_id = tok.pad_token_id
        return cls(model, tok, _spec(tok, max_length), {"preset": preset, "from_scratch": False})

    @classmethod
    def from_pretrained(cls, path: str | Path) -> "RewardModel":
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        path = Path(path)
        if not (path / META).is_file():
            raise ModelError(f"{path}: not a reward model checkpoint (no {META}; train one with `octopus reward`)")
        try:
            meta = json.loads((path / META).read_text())
            spec = TextSpec(**meta.pop("spec"))
        except (ValueError, KeyError, TypeError) as err:
            raise ModelError(f"{path / META}: unreadable ({err})") from None
        from safetensors import SafetensorError

        from octopus.model.factory import load_weights
        try:
            tok = AutoTokenizer.from_pretrained(path)
            model = load_weights(AutoModelForSequenceClassification, path)
        except (OSError, ValueError, SafetensorError) as err:
            raise ModelError(f"{path}: cannot load the reward model ({type(err).__name__}: {err})") from None
        model.eval()
        return cls(model, tok, spec, meta)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        from dataclasses import asdict
        (path / META).write_text(json.dumps({**self.meta, "spec": asdict(self.spec)}, indent=1, sort_keys=True))
        return path

    def encode(self, message: str, response: str) -> list[int]:
        """bos + message (middle cut to fit) + response mark + response + eos."""
        ids, _, _ = layout(self.spec, self.tokenizer, [self.spec.bos_token_id], message, response)
        return ids

    @torch.no_grad()
    def score(self, items: Sequence[tuple[str, str]], batch_size: int = 16) -> list[float]:
        """r_phi for each (message, response)."""
        return self.score_ids([self.encode(m, r) for m, r in items], batch_size)

    @torch.no_grad()
    def score_ids(self, encoded: Sequence[list[int]], batch_size: int = 16) -> list[float]:
        self.model.eval()
        device = next(self.model.parameters()).device
        out: list[float] = []
        for i in range(0, len(encoded), batch_size):
            batch, _ = pad([_Ids(ids) for ids in encoded[i:i + batch_size]], self.spec.pad_token_id, False)
            logits = self.model(input_ids=batch["input_ids"].to(device),
                                attention_mask=batch["attention_mask"].to(device)).logits
            out += logits[:, 0].float().tolist()
        return out


@dataclass
class _Ids:
    input_ids: list[int]

    @property
    def labels(self) -> list[int]:
        return self.input_ids


def _spec(tok, max_length: int) -> TextSpec:
    if tok.eos_token_id is None:
        raise ModelError(f"{type(tok).__name__} has no end-of-sequence token")
    bos = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    return TextSpec(max_length, bos, tok.eos_token_id, tok.pad_token_id if tok.pad_token_id is not None
                    else tok.eos_token_id)
