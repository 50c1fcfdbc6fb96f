"""The rlef stage: sampling and scoring agree, PPO/GRPO/RLOO raise a reward, DPO runs on the trees' pairs,
states replay exactly, and bad input is a clear error."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch

from octopus.config import ConfigError, parse_params
from octopus.model.factory import build_model
from octopus.training.rlef import ppo
from octopus.training.rlef.sampling import ValueHead, hidden_size, sample, score
from octopus.training.rlef.states import RLState
from tests.helpers import SIZE, TEXTS, prompt, response, views

TINY = {"model": {"image_size": SIZE, "max_length": 256, "vocab_size": 400, "max_new_tokens": 12, "batch_size": 4},
        "sft": {"rows": "all", "epochs": 2, "batch_size": 4, "report_to": "none", "val_rollouts": 0},
        "rlef": {"report_to": "none"}}


def _params(**over):
    raw = copy.deepcopy(TINY)
    for section, values in over.items():
        raw.setdefault(section, {}).update(values)
    return parse_params(raw)


def _states(n: int) -> list[RLState]:
    goals = ("Put the apple in the fridge", "Cook the bacon", "Open the cabinet")
    return [RLState(f"s{k}", f"t{k % 3}", 0, prompt(goals[k % 3]), "msg", 0.0, views=views(k)) for k in range(n)]


@pytest.fixture(scope="module")
def pm():
    p = _params()
    return build_model(p.model, TEXTS + [response()], seed=0)


@pytest.mark.parametrize("family", ["idefics", "smolvlm", "text"])
def test_log_probs_recorded_while_sampling_equal_scoring_the_same_tokens(family, pm):
    if family == "text":
        p = _params(model={"family": "text"})
        pm = build_model(p.model, TEXTS + [response()], seed=0)
        states = [replace(s, message=s.prompt) for s in _states(5)]
    elif family == "smolvlm":  # its image inputs (pixel_values, pixel_attention_mask) travel with the batch
        p = _params(model={"family": "smolvlm", "image_size": 48, "max_length": 512})
        pm = build_model(p.model, TEXTS + [response()], seed=0)
        states = _states(5)
    else:
        states = _states(5)  # prompts of different lengths: left padding in generation and scoring
    batch = sample(pm, pm.model, states, max_new_tokens=10, temperature=1.0, generator_seed=3)
    assert batch.logprobs.shape == batch.response_mask.shape and (batch.lengths >= 1).all()
    with torch.no_grad():
        logp, entropy, _ = score(pm, pm.model, batch, temperature=1.0, with_entropy=True)
    m = batch.response_mask.bool()
    assert torch.allclose(logp[m], batch.logprobs[m], atol=2e-4), (logp[m] - batch.logprobs[m]).abs().max()
    assert (entropy[m] > 0).all()
    # the decoded text is what the tokens say (up to the end-of-sequence token)
    ids = batch.input_ids[0, batch.prompt_length:][batch.response_mask[0].bool()].tolist()
    assert pm.tokenizer.decode([i for i in ids if i != pm.spec.eos_token_id], skip_special_tokens=True) == batch.texts[0]


def test_first_update_has_ratio_one_and_zero_kl_to_the_reference(pm):
    pm = copy.deepcopy(pm)
    ref = copy.deepcopy(pm)
    seen = []

    def reward(batch):
        return [1.0] * len(batch), {}
    cfg = ppo.RLConfig(updates=1, batch_size=4, epochs=1, minibatch_size=4, max_new_tokens=8, learning_rate=1e-3)
    orig = ppo.score

    def spy(*args, **kwargs):
        out = orig(*args, **kwargs)
        seen.append(out[0].detach().clone())
        return out
    ppo.score, history = spy, None
    try:
        history = ppo.train(pm, ref, reward, _states(4), cfg, log=lambda s: None)
    finally:
        ppo.score = orig
    row = history[0]
    assert row["kl"] == pytest.approx(0.0, abs=1e-3)         # the policy is the reference before any update
    assert row["approx_kl"] == pytest.approx(0.0, abs=1e-5) and row["clip_fraction"] == 0.0  # ratio 1
    assert len(seen) == 3  # reference, old values, one minibatch


def _even_token_reward(batch):
    """A synthetic reward a random-init policy earns about half of: the share of its tokens with even ids."""
    out = []
    for ids, m in zip(batch.input_ids[:, batch.prompt_length:], batch.response_mask):
        ids = ids[m.bool()]
        out.append(float((ids % 2 == 0).float().mean()))
    return out, {}


@pytest.mark.slow
@pytest.mark.parametrize("estimator", ["gae", "grpo", "rloo"])
def test_policy_gradient_raises_a_synthetic_reward(estimator, pm):
    pm, ref = copy.deepcopy(pm), copy.deepcopy(pm)
    cfg = ppo.RLConfig(estimator=estimator, updates=25, batch_size=8, group_size=1 if estimator == "gae" else 4,
                       epochs=2, minibatch_size=8, learning_rate=2e-3, beta=0.01, max_new_tokens=6, vf_coef=0.5)
    history = ppo.train(pm, ref, _even_token_reward, _states(8), cfg, log=lambda s: None)
    first = np.mean([h["reward"] for h in history[:4]])
    last = np.mean([h["reward"] for h in history[-4:]])
    assert last >= 0.8 and last > first + 0.2, [h["reward"] for h in history]
    kls = [h["kl"] for h in history]
    # bounded by the penalty: collapsing onto one token would cost ~6 tokens x ln(400) nats
    assert max(kls) < 0.75 * 6 * np.log(400), kls
    if estimator == "gae":
        losses = [h["value_loss"] for h in history]
        assert np.mean(losses[-5:]) < np.mean(losses[:5])
    else:
        assert "frac_reward_zero_std" in history[-1] and "value_loss" not in history[-1]


def test_the_format_penalty_lowers_the_reward_of_responses_that_do_not_parse():
    from types import SimpleNamespace

    from octopus.training.rlef import make_reward_fn

    class ConstantRM:  # r_phi stand-in: the same score for every response
        def score(self, pairs, batch_size):
            return [0.5] * len(pairs)
    texts = [response(), "def act(robot, env, camera):\n    EasyGrasp(robot, apple_1"]
    batch = type("Batch", (), {"texts": texts, "states": [SimpleNamespace(message="msg")] * 2,
                               "__len__": lambda self: 2})()
    scores, info = make_reward_fn("model", ConstantRM(), None, 4, format_penalty=2.0)(batch)
    assert scores == [0.5, -1.5] and info["parsed"] == 0.5 and info["reward_model"] == 0.5
    assert make_reward_fn("model", ConstantRM(), None, 4)(batch)[0] == [0.5, 0.5]  # off by default


def test_gae_and_group_advantages_by_hand():
    rewards = torch.tensor([[0.0, 0.0, 1.0, 0.0]])
    values = torch.zeros(1, 4)
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    adv, ret = ppo.gae(rewards, values, mask, gamma=1.0, lam=1.0)
    assert adv.tolist() == [[1.0, 1.0, 1.0, 0.0]] and ret.tolist() == adv.tolist()
    adv, _ = ppo.gae(rewards, values, mask, gamma=0.5, lam=1.0)
    assert adv[0, :3].tolist() == [0.25, 0.5, 1.0]
    scores = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    rloo, same = ppo.group_advantages(scores, 3, "rloo")
    assert rloo.tolist() == pytest.approx([1.0, -0.5, -0.5, 0.0, 0.0, 0.0]) and same == 0.5
    grpo, _ = ppo.group_advantages(scores, 3, "grpo")
    assert grpo[0] > 0 > grpo[1] and grpo[3:].abs().max() < 1e-6
    with pytest.raises(ValueError, match="group_size must be >= 2"):
        ppo.RLConfig(estimator="grpo", group_size=1)


def test_value_head_reads_the_policy_trunk(pm):
    head = ValueHead(hidden_size(pm))
    batch = sample(pm, pm.model, _states(2), max_new_tokens=4, temperature=1.0, generator_seed=0)
    _, _, values = score(pm, pm.model, batch, 1.0, head)
    assert values.shape == batch.response_mask.shape


def test_bad_rlef_values_name_the_field():
    with pytest.raises(ConfigError, match="rlef.algorithm: must be one of ppo, grpo, rloo, dpo"):
        parse_params({"rlef": {"algorithm": "a2c"}})
    with pytest.raises(ConfigError, match="rlef.extra: unknown reward source 'oracle'"):
        parse_params({"rlef": {"extra": ["ppo:oracle"]}})
    with pytest.raises(ConfigError, match="rlef.extra: 'ppo' repeats"):
        parse_params({"rlef": {"extra": ["ppo"]}})
    with pytest.raises(ConfigError, match="rlef.policy: no policy 'nope'"):
        parse_params({"rlef": {"policy": "nope"}})
    with pytest.raises(ConfigError, match="rlef.beta: must be >= 0"):
        parse_params({"rlef": {"beta": -1}})


@pytest.mark.parametrize("samples", [1, 2])
def test_replaying_a_nodes_ancestors_reproduces_its_message_and_views(samples):
    """States of a collected tree (failures, retries, siblings) rebuilt by replay: message and views exact."""
    from octopus.config import Params, RenderParams
    from octopus.data.schema import encode_views
    from octopus.data.tree import explore
    from octopus.sim.tasks import Suite
    from octopus.training.rlef.states import ReplayError, Worlds, select_states
    from tests.data.test_tree import GOAL, SMALL_MOVEBOT, Scripted
    from tests.helpers import kitchen_task

    p = Params()
    params = replace(p, render=RenderParams(size=32), sim=replace(p.sim, distractors=0),
                     collect=replace(p.collect, samples_per_node=samples))
    task = kitchen_task(GOAL)
    script = [["not a response", SMALL_MOVEBOT], [SMALL_MOVEBOT, "oracle"], ["oracle", "oracle"], ["oracle"]]
    rows, stats = explore(task, params, Scripted(script), episode=3)
    assert stats["success"] and len({r["parent_id"] for r in rows}) < len(rows)  # failures and siblings
    with Worlds(params, Suite([task]), rows, views=True) as worlds:
        for r in rows:
            state = select_states([r], 1, 0)[0]
            env, shown = worlds.reach(state)
            assert shown["message"] == r["message"]
            assert encode_views(shown["obs"]["views"]) == r["images"], r["id"]
        assert worlds.replays == 1 and worlds.replay_steps == len(rows)
        # a node's world runs a new response from there (the recorded one meets its targets again)
        last = select_states([rows[-1]], 1, 0)[0]
        result = worlds.execute(last, rows[-1]["response"])
        assert result["target_states_met"] == rows[-1]["target_states_met"] and result["task_success"]
        tampered = replace(last, message=last.message + " (changed)")
        with pytest.raises(ReplayError, match="message differs"):
            worlds.reach(tampered)


def test_a_missing_reward_model_or_sft_checkpoint_of_another_family_names_the_file(tmp_path, pm):
    from octopus.config import rlef_runs
    from octopus.training.rlef import RLEFError, load_policy, train_rlef
    from tests.validation.dataset import tree, write_dataset

    params = _params()
    data = write_dataset(tmp_path / "dataset", [tree("t0", "s", 0, True, 0, size=8) + tree("t1", "s", 0, True, 1, size=8)])
    with pytest.raises(RLEFError, match=f"{tmp_path / 'sft'}: no SFT checkpoint for rlef.policy 'octopus'"):
        load_policy(tmp_path / "sft", params)
    pm.save(tmp_path / "sft")
    run = rlef_runs(params.rlef)[0]
    with pytest.raises(RLEFError, match=f"rlef.reward 'model' needs the reward model: {tmp_path / 'reward'}: not a "
                                        "reward model checkpoint"):
        train_rlef(params, run, tmp_path / "sft", tmp_path / "reward", data, None, tmp_path / "out", log=lambda s: None)
    assert not (tmp_path / "out").exists()
    blind = parse_params({**TINY, "model": {**TINY["model"], "family": "text"}})
    build_model(blind.model, TEXTS + [response()], seed=0).save(tmp_path / "blind")
    with pytest.raises(RLEFError, match=r"blind: an SFT checkpoint of family 'text', but rlef.policy 'octopus' is a "
                                        r"'idefics' policy \(policies.octopus.model.family\)"):
        load_policy(tmp_path / "blind", params)


@pytest.mark.slow
def test_dpo_trains_on_the_trees_pairs_and_saves_a_loadable_policy(tmp_path, pm, no_recompute):
    """The offline row: TRL's DPOTrainer on sibling pairs, views included, the result loads as a Policy."""
    from octopus.config import rlef_runs
    from octopus.model.policy import Policy
    from octopus.training.rlef import train_rlef
    from tests.validation.dataset import tree, write_dataset

    params = _params(rlef={"algorithm": "dpo", "extra": [], "minibatch_size": 4, "dpo_epochs": 2.0,
                           "learning_rate": 1e-3},
                     sft={"val_rollouts": 0})
    data = write_dataset(tmp_path / "dataset", [sum((tree(f"t{k}", "s", 0, True, k, size=8) for k in range(4)), [])])
    pm.save(tmp_path / "sft")
    out = train_rlef(params, rlef_runs(params.rlef)[0], tmp_path / "sft", tmp_path / "none", data, None,
                     tmp_path / "out", log=lambda s: None)
    m, curve = out["metrics"], out["curve"]
    assert m["algorithm"] == "dpo" and m["pairs"] == 4 * 3 and curve
    assert curve[-1]["reward_margins"] > curve[0]["reward_margins"], curve  # chosen pulled above rejected
    policy = Policy.from_pretrained(tmp_path / "out", max_new_tokens=4)
    assert policy.pm.meta["rlef"]["algorithm"] == "dpo"


@pytest.mark.slow
def test_the_bench_times_each_phase_next_to_sft(tmp_path, pm):
    """`octopus bench rlef`: rollout, scoring and update throughput per algorithm, and SFT's on the same preset."""
    from octopus.training.rlef.bench import run_rlef_bench
    from tests.validation.dataset import tree, write_dataset

    params = _params(rlef={"batch_size": 4, "minibatch_size": 4, "group_size": 2, "epochs": 1, "max_new_tokens": 6})
    data = write_dataset(tmp_path / "dataset", [sum((tree(f"t{k}", "s", 0, True, k, size=8) for k in range(4)), [])])
    pm.save(tmp_path / "sft")
    out = run_rlef_bench(params, tmp_path / "sft", tmp_path / "no-reward-model", data, ("ppo", "grpo", "dpo"),
                         updates=2, sft_steps=2)
    assert out["reward"] == "trivial" and out["states"] > 0 and set(out["algorithms"]) == {"ppo", "grpo"}
    for a in out["algorithms"].values():
        assert a["rollout_responses_per_s"] > 0 and a["score_responses_per_s"] > 0 and a["update_samples_per_s"] > 0
        assert a["update_vs_sft"] == pytest.approx(a["update_samples_per_s"] / out["sft_samples_per_s"], rel=1e-2)


def test_the_paper_scale_configuration_parses_and_fails_clearly_without_weights(monkeypatch):
    """infra/params-paper.yaml (Idefics-9B with LoRA, CodeLlama-7B r_phi, PPO) is valid params; without the
    weights each model fails within seconds naming the field to point at a local copy."""
    from pathlib import Path

    import yaml

    from octopus.config import load_params
    from octopus.model.factory import ModelError
    from octopus.model.reward import RewardModel
    root = Path(__file__).resolve().parents[2]
    p = load_params(root / "infra" / "params-paper.yaml")
    assert p.model.preset == "paper" and p.sft.lora and p.rlef.lora and p.rlef.algorithm == "ppo"
    assert p.reward.preset == "paper" and p.rlef.adaptive_kl and p.rlef.states is None
    for name in ("cpu", "ddp", "fsdp", "multi_cpu"):  # the accelerate configs the file's comments name
        assert yaml.safe_load((root / "infra" / "accelerate" / f"{name}.yaml").read_text())["distributed_type"]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match="codellama/CodeLlama-7b-hf.*set reward.name_or_path to the local"):
        RewardModel.build(p.reward.preset, [], p.reward.max_length)
    with pytest.raises(ModelError, match="idefics-9b.*set model.name_or_path to the local"):
        build_model(p.for_policy(p.rlef.policy).model, [])


@pytest.mark.parametrize("family", ["idefics", "smolvlm"])
def test_a_policy_never_samples_the_view_placeholder(family, pm):
    """A sampled image token would make the response unreadable with its views ("image features and image tokens
    do not match"): generation suppresses it, and scoring reads the same distribution."""
    from octopus.model.inputs import never_generated
    if family == "smolvlm":
        pm = build_model(_params(model={"family": "smolvlm", "image_size": 48, "max_length": 512}).model,
                         TEXTS + [response()], seed=0)
    else:
        pm = copy.deepcopy(pm)
    token = pm.spec.image_token_id
    assert never_generated(pm.spec) == [token]
    with torch.no_grad():  # make the placeholder the likeliest next token everywhere
        head = pm.model.get_output_embeddings()
        head.weight[token] = head.weight.mean(0) + 50 * head.weight.std(0)
    batch = sample(pm, pm.model, _states(3), max_new_tokens=8, temperature=1.0, generator_seed=0)
    assert token not in batch.input_ids[:, batch.prompt_length:].tolist()
    with torch.no_grad():
        logp, entropy, _ = score(pm, pm.model, batch, temperature=1.0, with_entropy=True)
    m = batch.response_mask.bool()
    assert torch.allclose(logp[m], batch.logprobs[m], atol=2e-4) and torch.isfinite(entropy[m]).all()
