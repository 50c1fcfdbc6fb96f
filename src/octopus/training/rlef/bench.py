"""Benchmark of the rlef stage (`octopus bench rlef`; numbers, not tests).

For each algorithm, a few updates of the stage's own loop (`ppo.train`) on the SFT checkpoint, the
dataset's D_R states and the stage's reward (r_phi when models/reward exists, else the trivial
scorer), timed per phase of the loop; medians over the updates after the first (warm-up):
- rollout.responses_per_s: sampled responses per second (`generate` with the KV cache, log-probs kept);
- score.responses_per_s: the reward, the frozen reference's log-probs and the old values;
- update.samples_per_s: clipped-loss passes (forward, backward, AdamW) per second, `rlef.epochs` per
  response;
next to sft.samples_per_s: the sft stage's trainer on the same preset, data and batch size
(`octopus bench sft`'s `octopus` run), so `update_vs_sft` says what a sample of RL costs against SFT.
"""

from __future__ import annotations

import copy
import statistics
from dataclasses import replace
from pathlib import Path

from octopus.config import Params


def run_rlef_bench(params: Params, sft_dir: str | Path, reward_dir: str | Path, dataset_dir: str | Path,
                   algorithms: tuple[str, ...] = ("ppo", "grpo"), updates: int = 4, sft_steps: int = 20) -> dict:
    from octopus.data import preferences
    from octopus.model.reward import RewardModel
    from octopus.training.reward import trivial_score
    from octopus.training.rlef import load_policy, make_reward_fn, ppo, rl_config, rl_states, split_nodes
    from octopus.training.sft_bench import run_train_bench

    r = params.rlef
    pm = load_policy(Path(sft_dir), params)
    train_nodes, _ = split_nodes(preferences.read_nodes(dataset_dir), params)
    states = rl_states(pm, train_nodes, dataset_dir, r.states, r.seed)
    if Path(reward_dir).is_dir():
        reward_fn, reward = make_reward_fn("model", RewardModel.from_pretrained(reward_dir), None,
                                           r.minibatch_size * 2), "model"
    else:
        def reward_fn(batch):
            return [trivial_score(s.message, t) for s, t in zip(batch.states, batch.texts)], {}
        reward = "trivial"
    out: dict = {"policy": str(sft_dir), "reward": reward, "states": len(states), "updates": updates,
                 "batch_size": r.batch_size, "epochs": r.epochs, "max_new_tokens": r.max_new_tokens,
                 "parameters": sum(q.numel() for q in pm.model.parameters()), "algorithms": {}}
    for algorithm in algorithms:
        if algorithm == "dpo":  # offline: no rollouts to time
            continue
        policy, ref = copy.deepcopy(pm), copy.deepcopy(pm)
        policy.model.requires_grad_(True)
        cfg = replace(rl_config(params, algorithm, r.max_new_tokens or params.model.max_new_tokens), updates=updates)
        curve = ppo.train(policy, ref, reward_fn, states, cfg, log=lambda s: None)
        timed = curve[1:] or curve

        def med(key: str, per: int) -> float:
            return round(statistics.median(per / max(c[key], 1e-9) for c in timed), 2)
        out["algorithms"][algorithm] = {
            "rollout_responses_per_s": med("sample_seconds", r.batch_size),
            "score_responses_per_s": med("score_seconds", r.batch_size),
            "update_samples_per_s": med("update_seconds", r.batch_size * r.epochs),
            "seconds_per_update": round(statistics.median(c["seconds"] for c in timed), 2),
            "response_length": round(statistics.median(c["response_length"] for c in timed), 1)}
    sft = run_train_bench(params, dataset_dir, steps=sft_steps, repeats=1, kinds=("octopus",))
    out["sft_samples_per_s"] = sft["train"]["octopus"]["samples_per_s"]
    for a in out["algorithms"].values():
        a["update_vs_sft"] = round(a["update_samples_per_s"] / out["sft_samples_per_s"], 3)
    return out
