"""RLEF by policy gradient (paper §4.4, Eq. 2), readable top to bottom like cleanrl's ppo.py.

    history = train(pm, ref, reward_fn, states, RLConfig(estimator="gae"))   # PPO, the paper's
    history = train(pm, ref, reward_fn, states, RLConfig(estimator="grpo", group_size=4))

The policy pi_theta starts as a copy of the SFT policy; pi_INIT (`ref`, frozen) is the SFT policy
itself. Each update is one visible loop:

1. rollout: sample `batch_size` responses to D_R states (`group_size` per state), with the
   log-probabilities recorded while sampling (`sampling.sample`);
2. reward: `reward_fn(batch)` scores each whole response (the reward model r_phi, the simulator, or
   both), and the frozen reference scores the same tokens;
3. advantages, by estimator:
   - `gae` (PPO, the default): per-token reward -beta * (log pi - log pi_INIT), plus the response's
     score on its last token (Eq. 2: r_phi - beta * KL); a value head on the policy's trunk; GAE(gamma,
     lambda); advantages whitened;
   - `grpo`: no critic; the score standardised within its state's group; beta * KL to the reference
     as a loss term (the k3 estimator), as in GRPO;
   - `rloo`: no critic; the sequence reward score - beta * KL, minus the mean of the other responses
     to the same state (leave-one-out baseline), as in RLOO;
4. update: `epochs` passes over the batch in minibatches: the clipped policy-ratio loss, for PPO the
   clipped value loss, an optional entropy bonus; gradients clipped.
Adaptive beta (Ziegler et al. 2019) moves beta to keep the KL near `target_kl`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from octopus.model.factory import PolicyModel
from octopus.training.rlef.sampling import (Batch, ValueHead, hidden_size, masked_mean, sample, score,
                                            seeded_batches, whiten)

ESTIMATORS = ("gae", "grpo", "rloo")


@dataclass
class RLConfig:
    """One RL run's knobs (the rlef section of params.yaml fills them; see docs/params.md)."""

    estimator: str = "gae"        # gae (PPO with a critic) | grpo | rloo (group baselines, no critic)
    updates: int = 40             # rollout -> advantages -> update rounds
    batch_size: int = 16          # responses per update
    group_size: int = 1           # responses per state (grpo/rloo need >= 2)
    epochs: int = 4               # passes over each rollout batch
    minibatch_size: int = 8
    learning_rate: float = 1e-4
    beta: float = 0.05            # KL coefficient (Eq. 2's beta)
    adaptive_kl: bool = False
    target_kl: float = 6.0        # nats per response, for adaptive beta
    kl_horizon: int = 10000       # responses over which beta adapts
    gamma: float = 1.0
    lam: float = 0.95
    clip_range: float = 0.2
    clip_range_value: float = 0.2
    vf_coef: float = 0.1
    ent_coef: float = 0.0
    max_grad_norm: float = 1.0
    temperature: float = 1.0
    max_new_tokens: int = 400
    seed: int = 0
    precision: str = "auto"       # bf16 autocast for scoring and updates, and a bf16 copy to sample from, where it pays

    def __post_init__(self) -> None:
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {', '.join(ESTIMATORS)}, got {self.estimator!r}")
        if self.estimator != "gae" and self.group_size < 2:
            raise ValueError(f"{self.estimator} compares responses to one state: group_size must be >= 2")
        if self.batch_size % self.group_size:
            raise ValueError(f"batch_size {self.batch_size} is not a multiple of group_size {self.group_size}")


RewardFn = Callable[[Batch], tuple[list[float], dict]]


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float,
        lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over response tokens (right-padded; 0 past the mask)."""
    t_len = rewards.shape[1]
    adv = torch.zeros_like(rewards)
    last = torch.zeros(rewards.shape[0], device=rewards.device)
    for t in reversed(range(t_len)):
        next_v = values[:, t + 1] * mask[:, t + 1] if t + 1 < t_len else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_v - values[:, t]
        last = (delta + gamma * lam * last) * mask[:, t]
        adv[:, t] = last
    return adv, (adv + values) * mask


def group_advantages(scores: torch.Tensor, group: int, estimator: str) -> tuple[torch.Tensor, float]:
    """Per-response advantages from the group's other responses; and the share of groups with one reward."""
    g = scores.view(-1, group)
    same = float((g.std(1) < 1e-6).float().mean())
    if estimator == "grpo":
        adv = (g - g.mean(1, keepdim=True)) / (g.std(1, keepdim=True) + 1e-4)
    else:  # rloo: leave-one-out mean
        adv = g - (g.sum(1, keepdim=True) - g) / (group - 1)
    return adv.reshape(-1), same


def train(pm: PolicyModel, ref: PolicyModel, reward_fn: RewardFn, states: list, cfg: RLConfig,
          log: Callable[[str], None] = print, on_update: Callable[[dict], None] | None = None) -> list[dict]:
    """Improve `pm.model` in place; returns one row of statistics per update."""
    from octopus.model.device import resolve_precision
    from octopus.model.policy import Policy
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model, device = pm.model, next(pm.model.parameters()).device
    ref.model.eval().requires_grad_(False)
    bf16 = resolve_precision(cfg.precision, "precision") == "bf16"
    autocast = lambda: torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)  # noqa: E731
    sampler = Policy(pm, max_new_tokens=cfg.max_new_tokens, precision=cfg.precision)  # what rollouts generate with
    head = ValueHead(hidden_size(pm)).to(device) if cfg.estimator == "gae" else None
    params = [p for p in model.parameters() if p.requires_grad] + (list(head.parameters()) if head else [])
    opt = torch.optim.AdamW(params, lr=cfg.learning_rate, eps=1e-5, weight_decay=0.0)
    beta, history = cfg.beta, []
    per_update = cfg.batch_size // cfg.group_size
    if not states:
        raise ValueError("no RL states to train on")
    for update in range(1, cfg.updates + 1):
        t0 = time.perf_counter()
        # ---- 1. rollout: group_size responses to each of per_update states
        pick = rng.choice(len(states), size=per_update, replace=len(states) < per_update)
        batch_states = [states[i] for i in pick for _ in range(cfg.group_size)]
        model.eval()
        sampler.refresh()
        batch = sample(pm, sampler.model, batch_states, cfg.max_new_tokens, cfg.temperature,
                       generator_seed=cfg.seed * 100003 + update, **sampler.generate_kwargs())
        t_sample = time.perf_counter() - t0
        # ---- 2. reward; the policy's and the reference's log-probs of the sampled tokens, old values: scored
        # by the same forward pass as the update's, so the first ratio is 1 whatever precision sampled them
        scores_list, reward_info = reward_fn(batch)
        scores = torch.tensor(scores_list, dtype=torch.float32, device=device)
        mask = batch.response_mask.float()
        with torch.no_grad(), autocast():
            ref_logp, _, _ = score(ref, ref.model, batch, cfg.temperature)
            batch.logprobs, _, old_values = score(pm, model, batch, cfg.temperature, head)
        kl_tok = (batch.logprobs - ref_logp) * mask
        t_score = time.perf_counter() - t0 - t_sample
        kl_seq = kl_tok.sum(1)
        # ---- 3. advantages
        frac_same = None
        if cfg.estimator == "gae":
            rewards = -beta * kl_tok
            last = (batch.lengths - 1).clamp(min=0)
            rewards[torch.arange(len(batch)), last] += scores
            adv, returns = gae(rewards, old_values * mask, mask, cfg.gamma, cfg.lam)
            adv = whiten(adv, mask)
        else:
            seq = scores - beta * kl_seq if cfg.estimator == "rloo" else scores
            seq_adv, frac_same = group_advantages(seq, cfg.group_size, cfg.estimator)
            adv, returns = seq_adv.unsqueeze(1) * mask, None
        # ---- 4. update: epochs x minibatches of the clipped objectives
        model.train()
        t_update = time.perf_counter()
        stats = {k: [] for k in ("policy_loss", "value_loss", "clip_fraction", "approx_kl", "entropy", "kl_loss")}
        for _ in range(cfg.epochs):
            for mb in seeded_batches(len(batch), cfg.minibatch_size, rng):
                sub = batch.select(mb.tolist())
                m = mask[mb]
                with autocast():
                    logp, entropy, values = score(pm, model, sub, cfg.temperature, head, with_entropy=True)
                log_ratio = (logp - sub.logprobs) * m
                ratio = log_ratio.exp()
                a = adv[mb]
                pg = torch.max(-a * ratio, -a * ratio.clamp(1 - cfg.clip_range, 1 + cfg.clip_range))
                loss = masked_mean(pg, m)
                stats["policy_loss"].append(loss.item())
                if head is not None:
                    ov, ret = old_values[mb], returns[mb]
                    v_clip = ov + (values - ov).clamp(-cfg.clip_range_value, cfg.clip_range_value)
                    v_loss = 0.5 * masked_mean(torch.max((values - ret) ** 2, (v_clip - ret) ** 2), m)
                    loss = loss + cfg.vf_coef * v_loss
                    stats["value_loss"].append(v_loss.item())
                if cfg.estimator == "grpo" and beta > 0:
                    d = (ref_logp[mb] - logp) * m
                    k3 = masked_mean(d.exp() - d - 1, m)
                    loss = loss + beta * k3
                    stats["kl_loss"].append(k3.item())
                ent = masked_mean(entropy, m)
                if cfg.ent_coef:
                    loss = loss - cfg.ent_coef * ent
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                opt.step()
                with torch.no_grad():
                    stats["clip_fraction"].append(masked_mean(((ratio - 1).abs() > cfg.clip_range).float(), m).item())
                    stats["approx_kl"].append(masked_mean(ratio - 1 - log_ratio, m).item())
                    stats["entropy"].append(ent.item())
        t_update = time.perf_counter() - t_update
        kl_mean = float(kl_seq.mean())
        row = {"update": update, "reward": round(float(scores.mean()), 4), "reward_std": round(float(scores.std()), 4)
               if len(scores) > 1 else 0.0, "kl": round(kl_mean, 4), "beta": round(beta, 5),
               "response_length": round(float(batch.lengths.float().mean()), 1),
               **{k: round(float(np.mean(v)), 5) for k, v in stats.items() if v},
               "seconds": round(time.perf_counter() - t0, 2), "sample_seconds": round(t_sample, 2),
               "score_seconds": round(t_score, 2), "update_seconds": round(t_update, 2),
               **{k: v for k, v in reward_info.items() if isinstance(v, (int, float))}}
        if frac_same is not None:
            row["frac_reward_zero_std"] = round(frac_same, 3)
        if not all(math.isfinite(v) for v in row.values() if isinstance(v, float)):
            raise FloatingPointError(f"update {update}: non-finite statistics {row}; lower rlef.learning_rate")
        history.append(row)
        if cfg.adaptive_kl:  # Ziegler et al.: proportional control of beta towards target_kl
            err = float(np.clip(kl_mean / cfg.target_kl - 1, -0.2, 0.2))
            beta *= 1 + err * len(batch) / cfg.kl_horizon
        log(f"rlef update {update}/{cfg.updates}: reward {row['reward']:.3f} kl {row['kl']:.3f} "
            f"beta {row['beta']:.4f} length {row['response_length']:.0f} ({row['seconds']:.1f} s)")
        if on_update:
            on_update(row)
    model.eval()
    return history
