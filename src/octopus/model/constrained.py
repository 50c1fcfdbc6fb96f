"""Decoding constrained to the scene's object names: the model can only write names that exist.

    index = TokenIndex(tokenizer)                       # once per tokenizer
    processor = SceneNames(index, prompt_length, [names_of_scene_0, names_of_scene_1, ...])
    model.generate(..., logits_processor=LogitsProcessorList([processor]))

While a row's generated text is inside an open `registry(env, "...` string literal, only tokens that keep
the literal a prefix of one of that row's scene names followed by its closing quote are allowed (a token
may run past the quote, e.g. `")`); everywhere else decoding is untouched. Among the allowed tokens the
model's own scores still decide, so it picks the scene object it finds most likely. A row with no names
(None) is not constrained. This is an option with its own evaluation row (`NAME_sft_names`): the paper
grounds names after generation instead (`octopus.model.postprocess`), which stays the paper's row.

Cost: one decode of the row's generated tokens per step, and inside a literal a check of the tokens
that start with the next characters some name allows (indexed by first character), so a step inside a
literal checks a few hundred token strings, not the vocabulary.
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Sequence

import torch
from transformers import LogitsProcessor

#: an open `registry(env, "...` literal at the end of the text; group 1: what is written of the name so far
OPEN_LITERAL = re.compile(r"\bregistry\s*\(\s*env\s*,\s*(?:obj_name\s*=\s*)?\"([^\"\n]*)$")


class TokenIndex:
    """Each token's text where a name goes on (right after the opening quote, after a `_`, elsewhere), and the
    tokens by their first character, built once per tokenizer. Context matters: the offline tokenizer's
    decoder drops the space it put after `"` and `_` (`octopus.model.tokenizer`, split_names)."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        special = set(tokenizer.all_special_ids)
        ids = [i for i in range(len(tokenizer)) if i not in special]
        plain = {i: tokenizer.decode([i]) for i in ids}

        def after(prefix: str) -> dict[int, str]:
            # the prefix's own token (not tokenizer(prefix): split_names encodes '"' as '"' + ' ')
            pre = tokenizer.convert_tokens_to_ids(prefix)
            if pre is None or pre == tokenizer.unk_token_id or tokenizer.decode([pre]) != prefix:
                return plain  # no token for it: decode plainly
            return {i: tokenizer.decode([pre, i])[len(prefix):] for i in ids}

        self.pieces = {"quote": after('"'), "underscore": after("_"), "plain": plain}
        self.by_first: dict[str, dict[str, list[int]]] = {}
        for where, pieces in self.pieces.items():
            index: dict[str, list[int]] = defaultdict(list)
            for i, p in pieces.items():
                if p:
                    index[p[0]].append(i)
            self.by_first[where] = index

    def allowed(self, written: str, names: Sequence[str]) -> list[int]:
        """Token ids that may follow `written` (the literal so far) for these names (each ending in its quote)."""
        where = "quote" if not written else "underscore" if written.endswith("_") else "plain"
        pieces, index = self.pieces[where], self.by_first[where]
        live = [n for n in names if n.startswith(written)]
        out = []
        for c in sorted({n[len(written)] for n in live if len(n) > len(written)}):
            for i in index.get(c, ()):
                s = written + pieces[i]
                if any(n.startswith(s) or s.startswith(n) for n in live):
                    out.append(i)
        return out


class SceneNames(LogitsProcessor):
    """Keeps names inside `registry(env, "...")` to each row's scene objects (a `transformers` logits processor)."""

    def __init__(self, index: TokenIndex, prompt_length: int, names: Sequence[Sequence[str] | None]) -> None:
        self.index, self.prompt_length = index, prompt_length
        self.names = [None if n is None else sorted({f'{x}"' for x in n}) for n in names]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        for b, names in enumerate(self.names):
            if not names:
                continue
            text = self.index.tokenizer.decode(input_ids[b, self.prompt_length:].tolist(), skip_special_tokens=True)
            m = OPEN_LITERAL.search(text[-200:])
            if m is None:
                continue
            ok = self.index.allowed(m.group(1), names)
            if not ok:  # what is written already matches no name (cannot happen from a literal's start): leave it
                continue
            keep = torch.full_like(scores[b], float("-inf"))
            idx = torch.tensor(ok, device=scores.device)
            keep[idx] = scores[b, idx]
            scores[b] = keep
        return scores
