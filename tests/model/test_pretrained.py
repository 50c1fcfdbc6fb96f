"""Policies built on a pretrained LM (a backbone): the LM's weights arrive intact in every family.

A tiny random-init chat LM with grouped-query attention, saved locally, stands in for SmolLM2: the same code
path as `model.preset: smollm2-135m`, through `model.name_or_path`.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from octopus.config import ModelParams
from octopus.model.factory import ModelError, build_model, load_model, set_finetune_mode
from octopus.model.inputs import IGNORE
from tests.helpers import TEXTS, prompt, response, views

CHAT = ("{% for m in messages %}{{ '<s>' + m['role'] + '\n' + m['content'] + '</s>\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<s>assistant\n' }}{% endif %}")


@pytest.fixture(scope="module")
def chat_lm(tmp_path_factory):
    """A local causal LM like SmolLM2: Llama, 4 query heads on 2 KV heads, tied embeddings, a chat template."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from octopus.model.tokenizer import train_tokenizer
    tok = train_tokenizer(TEXTS * 4, 400)
    tok.chat_template = CHAT
    config = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         tie_word_embeddings=True, pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id, rope_parameters={"rope_type": "default", "rope_theta": 1e5})
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("chat-lm")
    LlamaForCausalLM(config).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def _params(family: str, path) -> ModelParams:
    return ModelParams(family=family, preset="smollm2-135m", name_or_path=str(path), max_length=768, max_new_tokens=16)


def _lm(path):
    from transformers import AutoModelForCausalLM
    return AutoModelForCausalLM.from_pretrained(path).eval()


def test_idefics_on_the_lm_is_the_lm_until_its_gates_open(chat_lm):
    pm = build_model(_params("idefics", chat_lm), [], seed=0)
    ex = pm.encode(prompt(), views(0), response())
    assert ex.image_positions == []  # no markers: every token attends to the views
    batch = pm.collate([ex])
    assert batch["image_attention_mask"].all()
    batch.pop("labels")
    pm.model.eval()
    with torch.no_grad():
        got = pm.model(**batch).logits
        want = _lm(chat_lm)(input_ids=batch["input_ids"]).logits
    assert torch.allclose(got, want, atol=1e-5)  # KV heads repeated: the same attention as grouped-query
    with torch.no_grad():
        for layer in pm.model.model.gated_cross_attn_layers:
            layer.alpha_cross_attn.fill_(0.5)
        assert not torch.allclose(pm.model(**batch).logits, want, atol=1e-3)  # open gates: the views count


def test_idefics_refuses_an_lm_it_cannot_map(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    from octopus.model.tokenizer import train_tokenizer
    tok = train_tokenizer(TEXTS * 4, 400)
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=1, n_head=2)).save_pretrained(tmp_path)
    tok.save_pretrained(tmp_path)
    with pytest.raises(ModelError, match="Llama-architecture"):
        build_model(_params("idefics", tmp_path), [], seed=0)


def test_smolvlm_reads_sixteen_tokens_per_view_in_the_lm_input(chat_lm):
    pm = build_model(_params("smolvlm", chat_lm), [], seed=0)
    lm = _lm(chat_lm)
    text_model = pm.model.model.text_model.state_dict()
    for k, v in lm.model.state_dict().items():  # the LM's weights, unchanged
        assert torch.equal(text_model[k], v), k
    ex = pm.encode(prompt(), views(0), response())
    assert ex.input_ids.count(pm.spec.image_token_id) == 16 * 10
    answer = [t for t in ex.labels if t != IGNORE]
    assert pm.tokenizer.decode(answer[:-1]) == response() and answer[-1] == pm.spec.eos_token_id
    text = pm.tokenizer.decode(ex.input_ids)
    assert text.startswith("<s>system\n") and "<s>assistant\n" in text  # the LM's chat template
    base = pm.collate([ex])
    base.pop("labels")
    pm.model.eval()
    with torch.no_grad():
        out = pm.model(**base).logits
        for k in (0, 9):
            changed = views(0).copy()
            changed[k] = 255 - changed[k]
            b = pm.collate([pm.encode(prompt(), changed, response())])
            b.pop("labels")
            assert not torch.allclose(pm.model(**b).logits, out, atol=1e-6), f"view {k} is ignored"


@pytest.mark.parametrize("family", ["idefics", "smolvlm", "text"])
def test_finetune_modes_and_a_checkpoint_round_trip(family, chat_lm, tmp_path):
    pm = build_model(_params(family, chat_lm), [], seed=0)
    groups = set(pm.groups().values())
    assert groups == ({"lm"} if family == "text" else {"vision", "connector", "lm"})
    if family != "text":
        trained, total = set_finetune_mode(pm, "connector")
        assert 0 < trained < total
        assert not any(p.requires_grad for n, p in pm.model.named_parameters() if pm.groups()[n] == "lm")
    pm.save(tmp_path / "ckpt")
    back = load_model(tmp_path / "ckpt")
    assert back.spec == pm.spec and back.meta["from_scratch"] is False
    obs = views(1) if family != "text" else None
    a, b = pm.collate([pm.encode(prompt(), obs, None)]), back.collate([back.encode(prompt(), obs, None)])
    for x in (a, b):
        x.pop("labels")
    pm.model.eval()
    back.model.eval()
    with torch.no_grad():
        assert torch.allclose(pm.model(**a).logits, back.model(**b).logits, atol=1e-5)


@pytest.mark.parametrize("family", ["idefics", "smolvlm", "text"])
def test_a_policy_generates_in_bf16_with_a_static_cache(family, chat_lm, monkeypatch):
    """The large-model generation path (bf16 copy, static cache, grouped decoding) on a tiny model: it answers,
    and the fp32 weights it was built from stay fp32."""
    from octopus.model import device, policy as policy_mod
    from octopus.model.policy import Policy
    monkeypatch.setattr(policy_mod, "BF16_MIN_PARAMETERS", 0)
    monkeypatch.setattr(device, "cpu_bf16", lambda: True)
    pm = build_model(_params(family, chat_lm), [], seed=0)
    pol = Policy(pm, max_new_tokens=8, batch_size=2)
    assert pol.model.dtype == torch.bfloat16 and pm.model.dtype == torch.float32
    obs = {"text": prompt(), "views": views(0)} if family != "text" else {"message": prompt()}
    texts = pol.respond_batch([obs, obs, obs])
    assert len(texts) == 3 and texts[0] == texts[2]
    assert pol.stats["generated_tokens"] > 0


def test_the_grouped_decoding_attention_matches_sdpa():
    """One query token against a cache, with a padding mask (bool) or an additive one: the same output as SDPA."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from octopus.model.decoding import grouped_attention
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 6, 1, 8), torch.randn(3, 2, 11, 8), torch.randn(3, 2, 11, 8)
    keep = torch.ones(3, 1, 1, 11, dtype=torch.bool)
    keep[0, ..., :4] = False
    additive = torch.zeros(3, 1, 1, 11).masked_fill(~keep, float("-inf"))

    class Module(torch.nn.Module):
        num_key_value_groups, is_causal = 3, False
    for mask in (keep, additive, None):
        want, _ = sdpa_attention_forward(Module().eval(), q, k, v, mask, scaling=0.3)
        got, _ = grouped_attention(Module().eval(), q, k, v, mask, scaling=0.3)
        assert torch.allclose(got, want, atol=1e-5)


def test_chat_format_wraps_the_instruction_in_the_template(chat_lm):
    from transformers import AutoTokenizer

    from octopus.model.inputs import chat_format
    fmt = chat_format(AutoTokenizer.from_pretrained(chat_lm))
    assert fmt["prefix"].startswith("<s>system\nYou are Octopus") and fmt["prefix"].endswith("<s>user\n")
    assert fmt["suffix"] == "</s>\n<s>assistant\n" and fmt["add_bos"] is False
    assert np.asarray(views(0)).shape[0] == 10


@pytest.mark.parametrize("family", ["idefics", "smolvlm"])
def test_lora_adapts_the_lm_and_never_the_vision_tower(family, chat_lm):
    """Connector + LoRA (paper Fig. 6a's middle mode): adapters on the LM's projections, the new vision tower and
    connector trained in full, the LM's own weights frozen."""
    from octopus.config import Params, SFTParams
    from octopus.training.sft import apply_lora
    pm = build_model(_params(family, chat_lm), [], seed=0)
    set_finetune_mode(pm, "connector")
    apply_lora(pm, Params(sft=SFTParams(lora=True, lora_r=4, lora_alpha=8)))
    adapted = [n for n, _ in pm.model.named_parameters() if ".lora_" in n]
    assert adapted and not [n for n in adapted if "vision_model" in n]
    trained = {n for n, p in pm.model.named_parameters() if p.requires_grad}
    groups = pm.groups()
    assert {groups[n] for n in trained} == {"vision", "connector", "lm"}  # lm: the adapters only
    assert all(".lora_" in n for n in trained if groups[n] == "lm")


@pytest.mark.parametrize("family", ["idefics", "smolvlm", "text"])
def test_the_growing_cache_generates_what_the_default_cache_does(family, chat_lm):
    from octopus.model.decoding import GrowingCache, GrowingLayer, use_fast_attention
    pm = build_model(_params(family, chat_lm), [], seed=0)
    if family == "idefics":
        for layer in pm.model.model.gated_cross_attn_layers:
            layer.alpha_cross_attn.data.fill_(0.5)
    pm.model.eval()
    obs = [views(0), views(1)] if family != "text" else [None, None]
    batch = pm.collate([pm.encode(prompt(), obs[0]), pm.encode(prompt("Put the bacon on the table, then cook it"),
                                                                  obs[1])], pad_left=True)
    batch.pop("labels")
    kw = dict(max_new_tokens=40, do_sample=False, pad_token_id=pm.spec.pad_token_id)
    old_chunk = GrowingLayer.CHUNK
    GrowingLayer.CHUNK = 8  # storage grows several times within 40 tokens
    try:
        with torch.no_grad():
            want = pm.model.generate(**batch, **kw)
            use_fast_attention(pm.model)
            got = pm.model.generate(**batch, **kw, past_key_values=GrowingCache())
    finally:
        GrowingLayer.CHUNK = old_chunk
    assert torch.equal(got, want)
