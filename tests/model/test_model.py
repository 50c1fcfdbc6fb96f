"""The Octopus model: it sees all 10 views, finetune modes train what they name, checkpoints round-trip."""

from __future__ import annotations

import json

import pytest
import torch

from octopus.config import ModelParams
from octopus.model.factory import ModelError, build_model, load_model, set_finetune_mode, trainable_names
from octopus.model.inputs import IGNORE, collate, encode
from tests.helpers import SIZE, prompt, response, views


def _logits(pm, vs, text=None):
    batch = pm.collate([pm.encode(text or prompt(), vs, response())])
    batch.pop("labels")
    pm.model.eval()
    with torch.no_grad():
        return pm.model(**batch).logits


def test_encode_puts_the_views_first_and_labels_only_the_response(tiny):
    ex = tiny.encode(prompt(), views(0), response())
    spec = tiny.spec
    assert ex.input_ids[0] == spec.bos_token_id
    assert [ex.input_ids[p] for p in ex.image_positions] == [spec.image_token_id] * 10
    assert max(ex.image_positions) < 22  # all 10 <image> tokens come before any text
    n_prompt = next(i for i, l in enumerate(ex.labels) if l != IGNORE)
    assert all(l == IGNORE for l in ex.labels[:n_prompt])
    assert tiny.tokenizer.decode(ex.labels[n_prompt:-1]) == response()
    assert ex.labels[-1] == spec.eos_token_id
    assert ex.views.shape == (10, SIZE, SIZE, 3)


def test_every_text_token_attends_to_all_ten_views(tiny):
    exs = [tiny.encode(prompt(), views(0), response()), tiny.encode(prompt("Cook"), views(1))]
    for pad_left in (False, True):
        b = collate(tiny.spec, exs, pad_left=pad_left)
        assert b["pixel_values"].shape == (2, 10, 3, SIZE, SIZE)
        for i, ex in enumerate(exs):
            mask = b["image_attention_mask"][i][b["attention_mask"][i].bool()]
            first_text = max(ex.image_positions) + 1
            assert mask[first_text:].all()                    # instruction and response see every view
            assert mask.sum(dim=1)[ex.image_positions[3]] == 4  # an image token sees the views up to itself
        pads = b["image_attention_mask"][1][~b["attention_mask"][1].bool()]
        assert not pads.any()


def test_changing_any_single_view_changes_the_output(tiny):
    vs = views(0)
    base = _logits(tiny, vs)
    for k in range(10):
        changed = vs.copy()
        changed[k] = 255 - changed[k]
        assert not torch.allclose(_logits(tiny, changed), base, atol=1e-6), f"view {k} is ignored"


def test_cross_attention_gates_start_open(tiny):
    gates = [p for n, p in tiny.model.named_parameters() if "alpha" in n]
    assert gates and all(float(g.detach().abs().min()) > 0.5 for g in gates)


@pytest.mark.parametrize("mode,groups", [("connector", {"connector"}), ("connector_lm", {"connector", "lm"}),
                                         ("full", {"connector", "lm", "vision"})])
def test_each_finetune_mode_trains_exactly_its_parameters(tiny, mode, groups):
    trainable, total = set_finetune_mode(tiny, mode)
    names = trainable_names(tiny, mode)
    assert {tiny.groups()[n] for n in names} == groups and 0 < trainable <= total
    before = {n: p.detach().clone() for n, p in tiny.model.named_parameters()}
    opt = torch.optim.SGD([p for p in tiny.model.parameters() if p.requires_grad], lr=0.5)
    tiny.model.train()
    batch = tiny.collate([tiny.encode(prompt(), views(0), response())])
    tiny.model(**batch).loss.backward()
    opt.step()
    for n, p in tiny.model.named_parameters():
        moved = not torch.equal(p.detach(), before[n])
        if n not in names:
            assert not moved, f"{mode} changed frozen {n}"
    assert any(not torch.equal(p.detach(), before[n]) for n, p in tiny.model.named_parameters() if n in names)


def test_groups_cover_every_parameter(tiny):
    groups = tiny.groups()
    assert set(groups) == {n for n, _ in tiny.model.named_parameters()}
    assert set(groups.values()) == {"vision", "connector", "lm"}
    assert any(n.startswith("model.perceiver_resampler.") and g == "connector" for n, g in groups.items())


def test_save_load_round_trip_gives_identical_outputs(tiny, tmp_path):
    from transformers import AutoTokenizer, IdeficsForVisionText2Text, IdeficsProcessor
    vs = views(3)
    before = _logits(tiny, vs)
    tiny.save(tmp_path / "ckpt")
    again = load_model(tmp_path / "ckpt")
    assert torch.equal(_logits(again, vs), before)
    assert again.spec == tiny.spec
    # each part also loads with the plain transformers classes
    assert isinstance(IdeficsForVisionText2Text.from_pretrained(tmp_path / "ckpt"), IdeficsForVisionText2Text)
    assert AutoTokenizer.from_pretrained(tmp_path / "ckpt")(response())["input_ids"] == \
        tiny.tokenizer(response())["input_ids"]
    proc = IdeficsProcessor.from_pretrained(tmp_path / "ckpt")
    assert proc.image_processor.image_size == SIZE
    assert json.loads((tmp_path / "ckpt" / "octopus.json").read_text())["family"] == "idefics"


def test_the_tokenizer_round_trips_code_exactly(tiny):
    text = response("electric_refrigerator_1") + "\n\tweird  spacing  é"
    ids = tiny.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tiny.tokenizer.decode(ids) == text


def test_long_instructions_are_cut_in_the_middle_and_the_response_kept(tiny):
    long = prompt("Put the apple in the fridge " * 60)
    ex = encode(tiny.spec, tiny.tokenizer, long, views(0), response())
    assert len(ex.input_ids) == tiny.spec.max_length and ex.truncated > 0
    assert tiny.tokenizer.decode([i for i in ex.labels if i != IGNORE][:-1]) == response()


def test_paper_preset_builds_its_config_and_fails_clearly_without_weights(monkeypatch):
    from octopus.model.presets import preset_config
    cfg = preset_config("paper")
    assert cfg.num_hidden_layers == 32 and cfg.hidden_size == 4096 and cfg.cross_layer_interval == 4
    assert cfg.vision_config.patch_size == 14 and cfg.use_resampler and cfg.perceiver_config.resampler_n_latents == 64
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match="idefics-9b.*model.name_or_path"):
        build_model(ModelParams(preset="paper"), [])


def test_bad_presets_families_and_checkpoints_give_clear_errors(tmp_path, monkeypatch):
    from octopus.config import ConfigError, parse_params
    with pytest.raises(ConfigError, match="model.preset: must be one of"):
        parse_params({"model": {"preset": "huge"}})
    with pytest.raises(ConfigError, match="model.family: must be one of"):
        parse_params({"model": {"family": "gpt"}})
    with pytest.raises(ValueError, match="multiple of the preset's patch size"):
        build_model(ModelParams(image_size=40), ["some text"] * 3)
    with pytest.raises(ValueError, match="no texts"):
        build_model(ModelParams(), [])
    with pytest.raises(ModelError, match="not an Octopus policy checkpoint"):
        load_model(tmp_path)
    (tmp_path / "octopus.json").write_text("{not json")
    with pytest.raises(ModelError, match="unreadable"):
        load_model(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match="model.name_or_path"):
        build_model(ModelParams(family="auto", name_or_path="nobody/no-such-model"), [])
