"""The `text` family: the blind baseline (paper Table 3, "LLaMA / CodeLLaMA GT (O+R)"), built from a config."""

from __future__ import annotations

import json

import pytest
import torch

from octopus.config import ModelParams
from octopus.model.factory import ModelError, build_model, load_model, set_finetune_mode
from octopus.model.inputs import IGNORE
from octopus.model.policy import Policy
from tests.helpers import TEXTS, prompt, response

OBSERVED = "Observed Objects: (apple_1, (['openable', 0],), 1.2)(fridge_1, (), 0.8)\nObserved Relations: []\n"


@pytest.fixture
def blind():
    return build_model(ModelParams(family="text", max_length=512, vocab_size=400, max_new_tokens=12),
                       [OBSERVED + t for t in TEXTS] * 4, seed=0)


def test_encode_has_no_image_tokens_and_labels_only_the_response(blind):
    ex = blind.encode(OBSERVED + prompt(), None, response())
    assert ex.views is None and ex.input_ids[0] == blind.spec.bos_token_id
    assert "<image>" not in blind.tokenizer.decode(ex.input_ids)
    answer = [i for i in ex.labels if i != IGNORE]
    assert answer[-1] == blind.spec.eos_token_id and blind.tokenizer.decode(answer[:-1]) == response()
    assert blind.tokenizer.decode(ex.input_ids[1:len(ex.input_ids) - len(answer)]).startswith("Observed Objects:")
    batch = blind.collate([ex, blind.encode(prompt(), None, response("bacon_1"))], pad_left=True)
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    assert len(ex.input_ids) > len(blind.encode(prompt(), None, response("bacon_1")).input_ids)
    assert batch["attention_mask"][1, 0] == 0  # left padding for generation


def test_it_is_the_octopus_language_model_without_vision(blind):
    assert type(blind.model).__name__ == "LlamaForCausalLM"
    c = blind.model.config
    assert (c.hidden_size, c.num_hidden_layers, c.intermediate_size) == (128, 2, 512)  # as Octopus tiny's LM
    assert set(blind.groups().values()) == {"lm"}
    assert set_finetune_mode(blind, "connector")[0] == 0  # nothing to train in connector mode (sft says so)
    assert set_finetune_mode(blind, "full")[0] == sum(p.numel() for p in blind.model.parameters())


def test_save_load_round_trip_and_respond_from_the_message(blind, tmp_path):
    batch = blind.collate([blind.encode(OBSERVED + prompt(), None, response())])
    blind.model.eval()
    with torch.no_grad():
        before = blind.model(**{k: v for k, v in batch.items() if k != "labels"}).logits
    blind.save(tmp_path / "ckpt")
    again = load_model(tmp_path / "ckpt")
    assert again.family.name == "text" and again.spec == blind.spec
    with torch.no_grad():
        assert torch.equal(again.model(**{k: v for k, v in batch.items() if k != "labels"}).logits, before)
    assert json.loads((tmp_path / "ckpt" / "octopus.json").read_text())["family"] == "text"
    policy = Policy(again, max_new_tokens=12)
    one = policy.respond({"message": OBSERVED + prompt()})
    assert policy.respond_batch([{"message": OBSERVED + prompt()}, {"message": prompt("Cook the bacon")}])[0] == one
    with pytest.raises(ValueError, match=r"reads obs\['message'\].*Observed Objects"):
        policy.respond({"text": prompt(), "views": None})  # what a vision policy reads: no observations in it


def test_paper_preset_and_missing_weights_fail_clearly(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match="CodeLlama-7b-hf.*model.name_or_path"):
        build_model(ModelParams(family="text", preset="paper"), [])
    with pytest.raises(ModelError, match="nobody/no-such-lm"):
        build_model(ModelParams(family="text", name_or_path="nobody/no-such-lm"), [])
