"""The sft stage: TRL's SFTTrainer with our collator and loss, end to end through the CLI, and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml

from octopus.config import Params
from octopus.data.schema import DatasetError
from octopus.model.factory import build_model, set_finetune_mode
from octopus.training.sft import SFTError, goal_reading, label_prompt, make_trainer, train_sft
from tests.helpers import SIZE, TEXTS, prompt, response, views
from tests.validation import dataset

ROOT = Path(__file__).resolve().parents[2]
TINY = {"model": {"image_size": SIZE, "max_length": 256, "vocab_size": 400, "max_new_tokens": 16, "batch_size": 4},
        "sft": {"rows": "all", "epochs": 2, "batch_size": 4, "eval_every": 2, "log_every": 1, "val_fraction": 0.34,
                "report_to": "none", "val_rollouts": 0}}


def _params(**over) -> Params:
    from octopus.config import parse_params
    raw = {k: dict(v) for k, v in TINY.items()}
    for section, values in over.items():
        raw[section].update(values)
    return parse_params(raw)


def test_a_few_trainer_steps_change_the_parameters_and_lower_the_loss(tmp_path, no_recompute):
    p = _params(sft={"epochs": 12, "learning_rate": 3e-3, "warmup_ratio": 0.0, "eval_every": 1000})
    pm = build_model(p.model, TEXTS, seed=0)
    set_finetune_mode(pm, "full")
    examples = [pm.encode(prompt(), views(k), response(o)) for k, o in enumerate(("apple_1", "bacon_1"))] * 2
    before = {n: q.detach().clone() for n, q in pm.model.named_parameters()}
    trainer = make_trainer(pm, examples, examples[:2], p, tmp_path)
    start = trainer.evaluate()["eval_loss"]
    trainer.train()
    end = trainer.evaluate()["eval_loss"]
    assert end < 0.7 * start
    still = [n for n, q in pm.model.named_parameters() if torch.equal(q.detach(), before[n])]
    # Idefics feeds the resampler the vision encoder's last hidden state, before its post_layernorm
    assert all(n.startswith("model.vision_model.post_layernorm.") for n in still), still


def test_loss_is_the_models_own_on_response_tokens(tmp_path):
    p = _params()
    pm = build_model(p.model, TEXTS, seed=0)
    ex = pm.encode(prompt(), views(0), response())
    trainer = make_trainer(pm, [ex], [], p, tmp_path)
    batch = pm.collate([ex])
    pm.model.eval()
    with torch.no_grad():
        ours = trainer.compute_loss(pm.model, dict(batch))
        logits = pm.model(**{k: v for k, v in batch.items() if k != "labels"}).logits[0, :-1]
        labels = batch["labels"][0, 1:]
        ref = torch.nn.functional.cross_entropy(logits[labels != -100], labels[labels != -100])
    assert torch.allclose(ours, ref, atol=1e-5)


def test_on_a_pretrained_lm_the_new_modules_learn_at_a_higher_rate(tmp_path):
    p = _params(sft={"learning_rate": 1e-4, "new_modules_lr_scale": 10.0})
    pm = build_model(p.model, TEXTS, seed=0)
    pm.meta["from_scratch"] = False  # as if its LM were pretrained
    ex = pm.encode(prompt(), views(0), response())
    trainer = make_trainer(pm, [ex], [], p, tmp_path)
    optimizer = trainer.create_optimizer()
    by_id = {id(q): n for n, q in pm.model.named_parameters()}
    rates = {by_id[id(q)]: g["lr"] for g in optimizer.param_groups for q in g["params"]}
    groups = pm.groups()
    assert {rates[n] for n in rates if groups[n] == "lm"} == {1e-4}
    assert all(rates[n] == pytest.approx(1e-3) for n in rates if groups[n] in ("vision", "connector"))
    assert len(rates) == sum(1 for q in pm.model.parameters() if q.requires_grad)  # every parameter once
    pm.meta["from_scratch"] = True  # a from-scratch model: one rate for all
    trainer = make_trainer(pm, [ex], [], p, tmp_path)
    assert {g["lr"] for g in trainer.create_optimizer().param_groups} == {1e-4}


@pytest.mark.parametrize("family", ["idefics", "text"])
def test_prompt_loss_labels_the_instruction_but_never_the_views_or_special_tokens(family):
    p = _params(model={"family": family})
    pm = build_model(p.model, TEXTS, seed=0)
    ex = pm.encode(prompt(), views(0) if family == "idefics" else None, response())
    out = label_prompt(pm, ex)
    assert out.input_ids == ex.input_ids
    answer = [lab for lab in ex.labels if lab != -100]
    assert [lab for lab in out.labels if lab != -100][-len(answer):] == answer  # the response's labels unchanged
    special = {pm.spec.bos_token_id, pm.spec.pad_token_id, getattr(pm.spec, "image_token_id", None),
               getattr(pm.spec, "fake_token_id", None)}
    labelled = [t for t, lab in zip(ex.input_ids, out.labels) if lab != -100]
    assert not special & set(labelled)
    text = pm.tokenizer.decode([t for t, lab, old in zip(ex.input_ids, out.labels, ex.labels)
                                if lab != -100 and old == -100])
    assert "Task Goal" in text and len(labelled) > len(answer) + 10


def test_goal_reading_compares_the_response_loss_under_the_own_and_another_task_goal():
    p = _params()
    pm = build_model(p.model, TEXTS, seed=0)
    goals = ["Put the apple in the fridge", "Put the bacon on the table", "Put the apple in the fridge"]
    steps = [{"prompt": prompt(g), "response": response()} for g in goals]
    steps[1]["prompt"] = steps[1]["prompt"].replace("Original Subtasks: None", "Original Subtasks:\n(1) Grasp the bacon_1")
    examples = [pm.encode(r["prompt"], views(k), r["response"]) for k, r in enumerate(steps)]
    out = goal_reading(pm, steps, examples, batch_size=2)
    assert out["steps"] == 3 and out["gap"] == pytest.approx(out["swapped_goal_loss"] - out["own_goal_loss"], abs=1e-3)
    batch = pm.collate(examples)
    with torch.no_grad():
        own = pm.model(**batch).loss.item()  # the mean over the same response tokens
    assert out["own_goal_loss"] == pytest.approx(own, abs=1e-3)
    assert out["swapped_goal_loss"] != pytest.approx(own, abs=1e-4)  # another goal, another loss
    assert out["first_steps"]["steps"] == 2  # the second step has a plan already: not a first step
    assert goal_reading(pm, steps[:1] * 2, examples[:1] * 2) == {"steps": 0}  # no other goal to swap in


def test_lora_trains_adapters_and_the_connector_then_merges(tmp_path):
    data = dataset.write_dataset(tmp_path / "dataset", dataset.base_shards(SIZE))
    p = _params(sft={"lora": True, "lora_r": 4, "mode": "connector_lm", "epochs": 1})
    out = train_sft(p, data, tmp_path / "sft", log=lambda s: None, quality_samples=2)
    m = out["metrics"]
    assert m["lora"] and 0 < m["trainable_parameters"] < m["parameters"]
    from safetensors.torch import load_file
    keys = load_file(str(tmp_path / "sft" / "model.safetensors")).keys()
    assert not any("lora" in k for k in keys)  # merged into the base weights: loads as a plain model


def test_text_pretraining_trains_the_language_model_alone_then_connector_mode_trains_only_the_connector(
        tmp_path, monkeypatch):
    """sft.text_pretrain: phase 1 changes only the LM, with every gate shut (views add nothing); the gates are
    opened again; phase 2 (mode connector) changes only the connector."""
    from octopus.training import sft
    data = dataset.write_dataset(tmp_path / "dataset", dataset.base_shards(SIZE))
    p = _params(sft={"mode": "connector", "text_pretrain": 1, "epochs": 1})
    seen: dict = {}
    real = sft.make_trainer

    def spy(pm, *args, **kwargs):
        phase = "text" if "text-pretrain" in (kwargs.get("run_name") or "") else "connector"
        seen[phase] = {"before": {n: q.detach().clone() for n, q in pm.model.named_parameters()},
                       "trains": {n for n, q in pm.model.named_parameters() if q.requires_grad},
                       "gates": [float(q.detach().abs().max()) for n, q in pm.model.named_parameters()
                                 if n.rsplit(".", 1)[-1] in sft.GATES]}
        if phase == "text":  # the views add nothing while the gates are shut: other views, the same logits
            ex = dict(pm.collate([pm.encode(prompt(), views(1), response())]))
            ex.pop("labels")
            with torch.no_grad():
                a = pm.model(**ex).logits
                ex["pixel_values"] = torch.randn_like(ex["pixel_values"])
                assert torch.equal(a, pm.model(**ex).logits)
        seen[phase]["pm"] = pm
        return real(pm, *args, **kwargs)

    monkeypatch.setattr(sft, "make_trainer", spy)
    out = train_sft(p, data, tmp_path / "sft", log=lambda s: None, quality_samples=2)
    text, conn = seen["text"], seen["connector"]
    groups = text["pm"].groups()
    assert text["trains"] == {n for n, g in groups.items() if g == "lm"}
    assert set(text["gates"]) == {0.0}
    assert conn["trains"] == {n for n, g in groups.items() if g == "connector"}
    assert set(conn["gates"]) == {1.0}  # the tiny preset's open gates are back
    lm_changed = [n for n, q in text["pm"].model.named_parameters() if groups[n] == "lm"
                  and not torch.equal(conn["before"][n], text["before"][n])]
    assert lm_changed  # phase 1 trained the LM ...
    after = dict(conn["pm"].model.named_parameters())
    assert all(torch.equal(after[n].detach(), conn["before"][n]) for n, g in groups.items() if g != "connector")
    m = out["metrics"]
    assert m["mode"] == "connector" and m["text_pretrain"]["optimizer_steps"] > 0
    assert m["text_pretrain"]["val_loss"] is not None


def test_connector_mode_on_a_from_scratch_preset_needs_text_pretraining(tmp_path):
    data = dataset.write_dataset(tmp_path / "dataset", dataset.base_shards(SIZE))
    with pytest.raises(SFTError, match="sft.mode: connector .* sft.text_pretrain"):
        train_sft(_params(sft={"mode": "connector"}), data, tmp_path / "sft", log=lambda s: None)
    blind = replace(_params(sft={"text_pretrain": 1}), policies={"blind": {"model": {"family": "text"}}})
    with pytest.raises(SFTError, match="sft.text_pretrain: the text policy reads no views"):
        train_sft(blind.for_policy("blind"), data, tmp_path / "blind", log=lambda s: None)
    assert not (tmp_path / "sft").exists() and not (tmp_path / "blind").exists()


def _project(tmp_path: Path, **over) -> Path:
    raw = {k: dict(v) for k, v in TINY.items()}
    for section, values in over.items():
        raw.setdefault(section, {}).update(values)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    return tmp_path


def _sft(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1", "COLUMNS": "400"}
    return subprocess.run([sys.executable, "-m", "octopus", "sft", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.slow
def test_sft_cli_trains_saves_and_reports(tmp_path):
    project = _project(tmp_path, sft={"report_to": "wandb"})
    dataset.write_dataset(project / "data" / "dataset", dataset.base_shards(SIZE))
    proc = _sft(project)
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = json.loads((project / "reports" / "sft" / "octopus.json").read_text())
    assert m["train_steps"] + m["val_steps"] == 15 and m["val_tasks"] == 1
    assert m["val_loss"] < m["val_loss_start"] and m["samples_per_s"] > 0 and m["peak_memory_mb"] > 0
    assert m["quality"]["generated"] > 0 and 0 <= m["quality"]["parse_rate"] <= 1
    assert m["family"] == "idefics" and m["reads"] == "prompt+views"
    assert "steps" in m["goal_reading"]  # one held-out task here: no other goal to swap in, or the losses
    curve = json.loads((project / "reports" / "sft" / "octopus_curve.json").read_text())
    assert curve[0]["step"] == 0 and any("train_loss" in r for r in curve)
    assert (project / "wandb").is_dir()  # tracked offline, without network
    from octopus.model.policy import Policy
    policy = Policy.from_pretrained(project / "models" / "sft" / "octopus", max_new_tokens=8)
    assert isinstance(policy.respond({"text": prompt(), "views": views(0)}), str)
    assert "val loss" in proc.stderr

    # the blind baseline: the same stage and data, `policies.blind` switches the family
    proc = _sft(project, "--policy", "blind")
    assert proc.returncode == 0, proc.stderr[-3000:]
    blind = json.loads((project / "reports" / "sft" / "blind.json").read_text())
    assert blind["family"] == "text" and blind["reads"] == "message"
    assert blind["train_steps"] == m["train_steps"] and blind["val_loss"] < blind["val_loss_start"]
    policy = Policy.from_pretrained(project / "models" / "sft" / "blind", max_new_tokens=8)
    assert type(policy.pm.model).__name__ == "LlamaForCausalLM"
    assert isinstance(policy.respond({"message": "Observed Objects: (apple_1, (), 1.0)\n" + prompt()}), str)
    assert (project / "models" / "sft" / "octopus" / "octopus.json").is_file()  # each policy has its own directory

    proc = _sft(project, "--policy", "nope")
    assert proc.returncode == 2 and "no policy 'nope'" in proc.stderr and "octopus, blind" in proc.stderr


@pytest.mark.slow
def test_sft_cli_rejects_missing_and_corrupt_data_and_bad_params(tmp_path):
    project = _project(tmp_path)
    proc = _sft(project)  # no dataset at all: what to run first, before anything is built
    assert proc.returncode == 2 and "data/dataset is missing: run `dvc repro collect` first" in proc.stderr
    assert "Traceback" not in proc.stderr
    (project / "data" / "dataset").mkdir(parents=True)
    proc = _sft(project)
    assert proc.returncode == 2 and "no Parquet shards" in proc.stderr and "dvc repro collect" in proc.stderr
    shards = dataset.write_dataset(project / "data" / "dataset", dataset.base_shards(SIZE))
    victim = sorted(shards.glob("*.parquet"))[0]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    proc = _sft(project)
    assert proc.returncode == 2  # a corrupt input and "not a readable Parquet shard" in proc.stderr and victim.name in proc.stderr
    assert not (project / "models" / "sft" / "octopus").exists()  # nothing half-written
    (project / "params.yaml").write_text(yaml.safe_dump({"sft": {"mode": "head"}}))
    proc = _sft(project)
    assert proc.returncode == 2 and "sft.mode: must be one of" in proc.stderr


def test_undecodable_views_name_the_step(tmp_path):
    from octopus.data.schema import DatasetError
    shards = dataset.base_shards(SIZE)
    shards[0][0]["images"][3] = {"bytes": b"not a png", "path": None}
    data = dataset.write_dataset(tmp_path / "dataset", shards)
    with pytest.raises(DatasetError, match=r"set_table/e0/n0: image 3 does not decode"):
        train_sft(replace(_params(), sft=replace(_params().sft, epochs=0.1)), data, tmp_path / "sft", log=lambda s: None)


def test_the_blind_policy_reads_the_message_and_never_decodes_views(tmp_path):
    shards = dataset.base_shards(SIZE)
    for row in shards[0]:  # views a vision policy could not train on
        row["images"][0] = {"bytes": b"not a png", "path": None}
    data = dataset.write_dataset(tmp_path / "dataset", shards)
    p = replace(_params(), policies={"blind": {"model": {"family": "text"}}}).for_policy("blind")
    out = train_sft(p, data, tmp_path / "blind", log=lambda s: None, quality_samples=2)
    assert out["metrics"]["reads"] == "message" and out["metrics"]["quality"]["generated"] == 2
    from octopus.model.factory import load_model
    pm = load_model(tmp_path / "blind")
    assert pm.family.name == "text" and not pm.family.reads_views
    with pytest.raises(DatasetError):
        train_sft(_params(), data, tmp_path / "octopus", log=lambda s: None)


def test_val_rollouts_play_the_held_out_training_tasks_in_the_simulator(tmp_path):
    from octopus.config import RenderParams
    from octopus.sim.tasks import Suite
    from octopus.sim.tasks_stage import write_suite
    from octopus import paths
    from octopus.data.builders import held_out_tasks
    from octopus.training.sft import SFTError, read_val_episodes, save_val_episodes, val_rollouts
    from tests.helpers import COOK_BACON, kitchen_task
    tasks = [kitchen_task(COOK_BACON, f"held_{k}", "cook the bacon") for k in range(3)]
    write_suite(Suite(tasks), tmp_path / "tasks.json")
    p = _params(sft={"val_rollouts": 2})
    p = replace(p, render=RenderParams(size=32), sim=replace(p.sim, max_steps=2))
    pm = build_model(p.model, TEXTS, seed=0)
    val = [{"task_id": t.id} for t in tasks for _ in range(2)]
    out, episodes = val_rollouts(pm, val, p, tmp_path / "tasks.json", log=lambda s: None)
    assert out["tasks"] == 2 and out["task_completion"] == 0.0  # a random-init model completes nothing
    assert 0 <= out["code_executability"] <= 1 and out["by_source"]["octogibson"]["tasks"] == 2
    assert sum(out["failures"]["episodes"].values()) == 2 and sum(out["failures"]["steps"].values()) == 4
    assert sorted(e.task_id for e in episodes) == sorted(held_out_tasks(val, 2, p.sft.seed, stratify=True))
    # saved with the checkpoint, they read back as the same episodes (what the rlef stage pairs its runs with)
    save_val_episodes(tmp_path, episodes)
    assert [e.to_dict() for e in read_val_episodes(tmp_path)] == [e.to_dict() for e in episodes]
    (tmp_path / paths.VAL_EPISODES).write_text('[{"agent": "octopus"')  # torn: no difference rather than a guess
    assert read_val_episodes(tmp_path) is None and read_val_episodes(tmp_path / "missing") is None
    with pytest.raises(SFTError, match="collected from another suite snapshot"):
        val_rollouts(pm, [{"task_id": "not_in_the_suite"}], p, tmp_path / "tasks.json", log=lambda s: None)


def test_the_rollout_sample_alternates_paper_style_and_procedural_tasks():
    """Held-out rollouts are where settings are chosen: half of them must look like the suite's tasks, not
    ~95% procedural as the training tasks are; the sample is seeded and the split's own order within a kind."""
    from octopus.data.builders import held_out_tasks
    ids = [f"procedural_{k:05d}__base" for k in range(20)] + ["buy_an_egg", "cook_bacon", "pack_a_wallet"]
    val = [{"task_id": t} for t in ids for _ in range(2)]
    plain = held_out_tasks(val, 8, seed=0)
    mixed = held_out_tasks(val, 8, seed=0, stratify=True)
    assert len(mixed) == 8 and len(set(mixed)) == 8 and mixed == held_out_tasks(val, 8, seed=0, stratify=True)
    assert [t.startswith("procedural_") for t in mixed[:6]] == [False, True] * 3  # paper-style first, alternating
    assert all(t.startswith("procedural_") for t in mixed[6:])                   # then the kind that is left
    order = held_out_tasks(val, 23, seed=0)
    assert [t for t in mixed if t.startswith("procedural_")] == [t for t in order if t.startswith("procedural_")][:5]
    assert plain == order[:8] and held_out_tasks(val, 0, seed=0, stratify=True) == []


@pytest.mark.parametrize("family", ["smolvlm", "text"])
def test_sft_on_a_pretrained_lm_trains_saves_and_loads(tmp_path, family, no_recompute):
    """The stage on a backbone-style preset (a tiny local chat LM through model.name_or_path): trains in the LM's
    chat format, lowers the held-out loss and saves a checkpoint that loads as a policy."""
    from octopus.model.policy import Policy
    from tests.model.test_pretrained import CHAT
    from transformers import LlamaConfig, LlamaForCausalLM

    from octopus.model.tokenizer import train_tokenizer
    tok = train_tokenizer(TEXTS * 4, 400)
    tok.chat_template = CHAT
    torch.manual_seed(0)
    LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                                 pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                                 eos_token_id=tok.eos_token_id)).save_pretrained(tmp_path / "lm")
    tok.save_pretrained(tmp_path / "lm")
    data = dataset.write_dataset(tmp_path / "dataset", dataset.base_shards(SIZE))
    p = _params(model={"family": family, "preset": "smollm2-135m", "name_or_path": str(tmp_path / "lm"),
                       "max_length": 768, "image_size": 48}, sft={"epochs": 3, "learning_rate": 3e-3, "eval_every": 1000})
    out = train_sft(p, data, tmp_path / "sft", log=lambda s: None, quality_samples=2)
    m = out["metrics"]
    assert m["val_loss"] < m["val_loss_start"] and m["trainable_parameters"] == m["parameters"]
    policy = Policy.from_pretrained(tmp_path / "sft")
    assert policy.pm.meta["from_scratch"] is False and policy.pm.spec.prefix.startswith("<s>system")
    obs = {"text": prompt(), "views": views(0)} if family == "smolvlm" else {"message": prompt()}
    assert isinstance(policy.respond(obs), str)
