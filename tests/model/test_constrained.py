"""Copying names: the offline tokenizer gives a name's words the instruction's tokens and round-trips any text;
decoding constrained to the scene's names can only close a registry(...) literal on a scene object."""

from __future__ import annotations

import random

import pytest
import torch

from octopus.model.constrained import OPEN_LITERAL, SceneNames, TokenIndex
from octopus.model.policy import Policy
from octopus.model.tokenizer import train_tokenizer
from tests.helpers import TEXTS, prompt, views

NAMES = ["swiss_cheese_1", "wicker_basket_1", "table_1", "table_12", "apple_2"]
CORPUS = TEXTS * 4 + [f'put a cheese in the basket\n    x = registry(env, "{n}")\n' for n in NAMES] * 8


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(CORPUS, 400)


def test_a_word_in_a_name_is_the_instructions_token(tok):
    goal = tok.convert_ids_to_tokens(tok("put a cheese in the basket")["input_ids"])
    code = tok.convert_ids_to_tokens(tok('registry(env, "swiss_cheese_1")')["input_ids"])
    assert "Ġcheese" in goal and "Ġcheese" in code and "cheese" not in code
    plain = train_tokenizer(CORPUS, 400, split_names=False)
    assert "Ġcheese" not in plain.convert_ids_to_tokens(plain('registry(env, "swiss_cheese_1")')["input_ids"])


@pytest.mark.parametrize("text", ['a_ b "" x"_ "  _ _"', "    swiss_cheese_1 = registry(env, \"swiss_cheese_1\")\n",
                                  'print("_", \'"\')  # __init__ _1_ "', "no separators at all", "_", '"'])
def test_split_names_round_trips_exactly(tok, text):
    assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text


def test_round_trip_on_random_text(tok):
    rng = random.Random(0)
    alphabet = 'ab_" \n\t(),=x1'
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text


def _decode_literal(tok, names, seed: int) -> str:
    """Greedy decoding with random scores from an open literal, under the constraint, to its closing quote."""
    index = TokenIndex(tok)
    ids = tok('x = registry(env, "', add_special_tokens=False)["input_ids"]
    while tok.decode(ids[-1:]) == " ":  # split_names encodes a final '"' with the space it puts after it
        ids = ids[:-1]
    input_ids = torch.tensor([ids])
    proc = SceneNames(index, 0, [names])
    gen = torch.Generator().manual_seed(seed)
    for _ in range(40):
        scores = proc(input_ids, torch.randn(1, len(tok), generator=gen))
        input_ids = torch.cat([input_ids, scores.argmax(-1, keepdim=True)], dim=1)
        text = tok.decode(input_ids[0].tolist())
        if OPEN_LITERAL.search(text) is None:
            return text.split('registry(env, "', 1)[1].split('"', 1)[0]
    raise AssertionError(f"the literal never closed: {text!r}")


@pytest.mark.parametrize("split_names", [True, False])
def test_the_tokenizers_own_spelling_of_a_name_is_allowed_at_every_step(split_names):
    tok = train_tokenizer(CORPUS, 400, split_names=split_names)
    index = TokenIndex(tok)
    full = tok('x = registry(env, "swiss_cheese_1")', add_special_tokens=False)["input_ids"]
    checked = 0
    for k in range(1, len(full)):  # wherever the text so far has an open literal, the next token is allowed
        m = OPEN_LITERAL.search(tok.decode(full[:k]))
        if m is not None:
            assert full[k] in index.allowed(m.group(1), ['swiss_cheese_1"', 'table_1"']), tok.convert_ids_to_tokens(full[k])
            checked += 1
    ids = full
    assert checked >= 3
    assert OPEN_LITERAL.search(tok.decode(ids)) is None  # the literal closed on the name


@pytest.mark.parametrize("seed", range(12))
def test_constrained_decoding_closes_literals_only_on_scene_names(tok, seed):
    assert _decode_literal(tok, NAMES, seed) in NAMES


def test_prefix_names_are_both_reachable(tok):
    got = {_decode_literal(tok, ["table_1", "table_12"], s) for s in range(40)}
    assert got == {"table_1", "table_12"}


def test_rows_without_names_and_text_outside_literals_are_untouched(tok):
    proc = SceneNames(TokenIndex(tok), 0, [None, NAMES])
    ids = torch.tensor([tok('x = registry(env, "', add_special_tokens=False)["input_ids"]] * 2)
    scores = torch.randn(2, len(tok))
    out = proc(ids, scores.clone())
    assert torch.equal(out[0], scores[0]) and torch.isinf(out[1]).sum() > len(tok) // 2
    closed = torch.tensor([tok('x = registry(env, "apple_2")\n', add_special_tokens=False)["input_ids"]])
    assert torch.equal(SceneNames(TokenIndex(tok), 0, [NAMES])(closed, scores[:1].clone()), scores[:1])


def test_policy_option_constrains_only_with_objects(tiny):
    obs = {"text": prompt(), "views": views(0)}
    free = Policy(tiny, max_new_tokens=16).respond(obs, objects={"apple_1": 1.0})
    assert Policy(tiny, max_new_tokens=16, constrain_names=True).respond(obs) == \
        Policy(tiny, max_new_tokens=16).respond(obs)  # no objects: nothing to constrain to
    assert isinstance(free, str)
