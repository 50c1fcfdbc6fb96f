"""The `auto` family (any AutoModelForImageTextToText, LLaVA-style) on a tiny local LLaVA checkpoint."""

from __future__ import annotations

import torch

from octopus.config import ModelParams
from octopus.model.factory import build_model, load_model, set_finetune_mode
from octopus.model.inputs import IGNORE
from octopus.model.policy import Policy
from tests.helpers import prompt, response, views


def _auto(path):
    return build_model(ModelParams(family="auto", name_or_path=str(path), max_length=300, max_new_tokens=8), [])


def test_auto_family_sees_every_view_and_learns_only_the_response(tiny_llava_path):
    pm = _auto(tiny_llava_path)
    ex = pm.encode(prompt(), views(0), response())
    n_prompt = next(i for i, l in enumerate(ex.labels) if l != IGNORE)
    assert pm.tokenizer.decode(ex.labels[n_prompt:-1]) == response()
    image_id = pm.model.config.image_token_id
    assert ex.input_ids[:n_prompt].count(image_id) == 10 * 4  # 10 views x 4 patches (CLS dropped), before the text

    def logits(vs):
        b = pm.collate([pm.encode(prompt(), vs, response())])
        b.pop("labels")
        with torch.no_grad():
            return pm.model.eval()(**b).logits
    base = logits(views(0))
    for k in range(10):
        changed = views(0)
        changed[k] = 255 - changed[k]
        assert not torch.allclose(logits(changed), base, atol=1e-6), f"view {k} is ignored"


def test_auto_family_modes_save_load_and_generate(tiny_llava_path, tmp_path):
    pm = _auto(tiny_llava_path)
    groups = pm.groups()
    assert {groups[n] for n in groups if "vision_tower" in n} == {"vision"}
    assert {groups[n] for n in groups if "multi_modal_projector" in n} == {"connector"}
    trainable, total = set_finetune_mode(pm, "connector")
    assert trainable == sum(p.numel() for n, p in pm.model.named_parameters() if "multi_modal_projector" in n)
    batch = pm.collate([pm.encode(prompt(), views(0), response()), pm.encode(prompt("x"), views(1), response())])
    assert batch["pixel_values"].shape[0] == 20
    pm.model.train()
    loss = pm.model(**batch).loss
    loss.backward()
    assert all(p.grad is None for n, p in pm.model.named_parameters() if "multi_modal_projector" not in n)
    pm.save(tmp_path / "ckpt")
    again = load_model(tmp_path / "ckpt")
    obs = [{"text": prompt(), "views": views(0)}, {"text": prompt("Cook the bacon"), "views": views(1)}]
    a, b = Policy(pm, max_new_tokens=8).respond_batch(obs), Policy(again, max_new_tokens=8).respond_batch(obs)
    assert a == b and len(a) == 2
