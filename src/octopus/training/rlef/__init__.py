"""The rlef stage: the SFT policy improved against environmental feedback (paper §4.4, Eq. 2).

    out = train_rlef(params, run, "models/sft/octopus", "models/reward", "data/dataset", "data/tasks",
                     out_dir="models/rlef/octopus")

Algorithms are registered by name (`rlef.algorithm`, and `rlef.extra` for more rows):
- `ppo` (the paper's): `ppo.train` with the GAE estimator and a value head;
- `grpo`, `rloo`: the same loop with group-relative advantages and no critic (TRL's GRPOTrainer and
  RLOOTrainer generate from a processor's text and pass a fixed set of vision arguments without
  Idefics' `image_attention_mask`, and our states carry 10 views each: the loop here feeds the policy
  exactly as SFT and evaluation do);
- `dpo`: offline, TRL's DPOTrainer on the trees' preference pairs (`dpo.train_dpo`).
Reward sources (`rlef.reward`): `model` (r_phi, the reward stage's model), `simulator` (the response
executed from its state, rebuilt by replay: `states.Worlds`), or `both` (their sum).
States D_R are the dataset's nodes from training tasks; the SFT stage's held-out tasks stay out, and
the trained policy is rolled out on them (`sft.val_rollouts`), the same sample as the sft stage's, and
reported minus the SFT policy's episodes saved with its checkpoint, paired over tasks (`minus_sft`).
"""

from __future__ import annotations

import copy
import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from octopus import paths
from octopus.config import Params, RlefRun
from octopus.progress import RunProgress


class RLEFError(RuntimeError):
    """The rlef stage cannot run (missing or mismatched checkpoints, no states, bad settings)."""


def rl_config(params: Params, algorithm: str, max_new_tokens: int):
    from octopus.training.rlef.ppo import RLConfig
    r = params.rlef
    return RLConfig(estimator={"ppo": "gae"}.get(algorithm, algorithm), updates=r.updates, batch_size=r.batch_size,
                    group_size=1 if algorithm == "ppo" else r.group_size, epochs=r.epochs,
                    minibatch_size=r.minibatch_size, learning_rate=r.learning_rate, beta=r.beta,
                    adaptive_kl=r.adaptive_kl, target_kl=r.target_kl, kl_horizon=r.kl_horizon, gamma=r.gamma,
                    lam=r.lam, clip_range=r.clip_range, clip_range_value=r.clip_range_value, vf_coef=r.vf_coef,
                    ent_coef=r.ent_coef, max_grad_norm=r.max_grad_norm, temperature=r.temperature,
                    max_new_tokens=max_new_tokens, seed=r.seed, precision=params.sft.precision)


def load_policy(sft_dir: Path, params: Params):
    """The SFT checkpoint, checked against the policy's params (family)."""
    from octopus.model.factory import ModelError, load_model
    if not Path(sft_dir).is_dir():
        raise RLEFError(f"{sft_dir}: no SFT checkpoint for rlef.policy {params.rlef.policy!r} "
                        f"(run `dvc repro sft@{params.rlef.policy}`)")
    try:
        pm = load_model(sft_dir)
    except ModelError as err:
        raise RLEFError(str(err)) from err  # the cause says: a bad input (the CLI exits 2)
    want = params.model.family
    if pm.family.name != want:
        raise RLEFError(f"{sft_dir}: an SFT checkpoint of family {pm.family.name!r}, but rlef.policy "
                        f"{params.rlef.policy!r} is a {want!r} policy (policies.{params.rlef.policy}.model.family); "
                        "retrain it with `dvc repro sft`")
    return pm


def disable_dropout(model) -> None:
    import torch
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0


def split_nodes(nodes: list[dict], params: Params) -> tuple[list[dict], set[str]]:
    """(nodes of tasks RL may train on, the SFT stage's held-out tasks): the same split as sft's."""
    from octopus.data import builders
    s = params.sft
    chosen = [r for r in nodes if builders.ROW_FILTERS[s.rows](r)]
    _, val = builders.sft_split(chosen, s.val_fraction, s.seed)
    held = {r["task_id"] for r in val}
    return [r for r in nodes if r["task_id"] not in held], held


def rl_states(pm, nodes: list[dict], dataset_dir: str | Path, n: int | None, seed: int) -> list:
    """Up to `n` D_R states of these nodes, with their views when the policy reads them."""
    from octopus.data import preferences
    from octopus.training.rlef.states import select_states
    chosen = select_states(nodes, n, seed)
    if pm.family.reads_views:
        images = preferences.read_images(dataset_dir, {s.id for s in chosen})
        for s in chosen:
            s.images = images[s.id]
    return chosen


def make_reward_fn(source: str, rm, worlds, batch_size: int, format_penalty: float = 0.0) -> Callable:
    """batch -> (one score per response, averages to log); `format_penalty` off each response that does not parse."""
    from octopus.protocol import ResponseFormatError, parse_response
    from octopus.training.rlef.states import ReplayError, simulator_reward

    def parsed(text: str) -> bool:
        try:
            parse_response(text)
            return True
        except ResponseFormatError:
            return False

    def fn(batch) -> tuple[list[float], dict]:
        n = len(batch)
        ok_format = [parsed(t) for t in batch.texts]
        info: dict[str, float] = {"parsed": sum(ok_format) / n}
        total = [0.0 if ok else -format_penalty for ok in ok_format]
        if source in ("model", "both"):
            s = rm.score([(st.message, t) for st, t in zip(batch.states, batch.texts)], batch_size)
            total = [a + b for a, b in zip(total, s)]
            info["reward_model"] = sum(s) / n
        if source in ("simulator", "both"):
            results = []
            for st, t in zip(batch.states, batch.texts):
                try:
                    results.append((worlds.execute(st, t), st.progress))
                except ReplayError:
                    results.append(None)
            ok = [r for r in results if r is not None]
            sim = [simulator_reward(*r) if r is not None else 0.0 for r in results]
            total = [a + b for a, b in zip(total, sim)]
            info.update(reward_simulator=sum(sim) / n, executed=sum(r[0]["executed"] for r in ok) / n,
                        targets_met=sum(r[0]["target_states_met"] for r in ok) / n,
                        replay_failures=float(len(results) - len(ok)))
        return total, info
    return fn


def train_rlef(params: Params, run: RlefRun, sft_dir: str | Path, reward_dir: str | Path, dataset_dir: str | Path,
               suite_path: str | Path | None, out_dir: str | Path, log: Callable[[str], None] = print,
               on_update: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """One RLEF run: the improved policy saved to `out_dir` (atomically); returns {"metrics", "curve"}."""
    import torch

    from octopus.data import preferences
    from octopus.model.factory import ModelError
    from octopus.model.reward import RewardModel
    from octopus.training.rlef import states as st

    r, t_start = params.rlef, time.perf_counter()
    pm = load_policy(Path(sft_dir), params)
    ref = copy.deepcopy(pm)
    disable_dropout(pm.model)
    disable_dropout(ref.model)
    pm.model.train().requires_grad_(True)
    if r.lora:
        from octopus.training.sft import apply_lora
        apply_lora(pm, params)
    nodes = preferences.read_nodes(dataset_dir)
    train_nodes, held = split_nodes(nodes, params)
    if not train_nodes:
        raise RLEFError(f"{dataset_dir}: no training-task nodes left after holding out sft's validation tasks")
    max_new = r.max_new_tokens or params.model.max_new_tokens
    if torch.cuda.is_available():  # the loop runs where the policy is; the reference and r_phi follow it
        pm.model.cuda()
        ref.model.cuda()
    suite = None
    if suite_path is not None:
        from octopus.sim.tasks_stage import read_snapshot
        suite = read_snapshot(suite_path)
    t0 = time.perf_counter()
    if run.algorithm == "dpo":
        from octopus.training.rlef.dpo import train_dpo
        pairs = [p for p in preferences.preference_pairs(train_nodes) if r.dpo_pairs == "all" or p.kind == r.dpo_pairs]
        if pm.family.reads_views:
            images = preferences.read_images(dataset_dir, {p.chosen["id"] for p in pairs} | {p.rejected["id"] for p in pairs})
            pairs = [dataclasses.replace(p, chosen={**p.chosen, "images": images[p.chosen["id"]]},
                                         rejected={**p.rejected, "images": images[p.rejected["id"]]}) for p in pairs]
        with tempfile.TemporaryDirectory(prefix="octopus-dpo-") as work:
            curve = train_dpo(pm, ref, pairs, r, work, log)
        extra = {"pairs": len(pairs)}
    else:
        from octopus.training.rlef import ppo
        chosen = rl_states(pm, train_nodes, dataset_dir, r.states, r.seed)
        rm = None
        if run.reward in ("model", "both"):
            try:
                rm = RewardModel.from_pretrained(reward_dir)
            except ModelError as err:
                raise RLEFError(f"rlef.reward {run.reward!r} needs the reward model: {err}") from err
            rm.model.to(next(pm.model.parameters()).device)
        if run.reward in ("simulator", "both") and suite is None:
            raise RLEFError("rlef.reward simulator executes responses in the simulator: pass the suite snapshot")
        worlds = st.Worlds(params, suite, train_nodes) if run.reward in ("simulator", "both") else None
        progress = RunProgress(f"rlef-{run.algorithm}-{run.reward}", r.updates, description=f"rlef {run.algorithm} "
                               f"with reward {run.reward}: updates done")

        def updated(row: dict) -> None:
            progress.set(int(row.get("update", progress.count + 1)))
            if on_update is not None:
                on_update(row)
        try:
            reward_fn = make_reward_fn(run.reward, rm, worlds, r.minibatch_size * 2, r.format_penalty)
            curve = ppo.train(pm, ref, reward_fn, chosen, rl_config(params, run.algorithm, max_new), log, updated)
            progress.done()
        finally:
            if worlds is not None:
                worlds.close()
        extra = {"states": len(chosen), **({"replays": worlds.replays, "replay_steps": worlds.replay_steps}
                                           if worlds is not None else {})}
        responses = r.updates * r.batch_size
        samples = responses * r.epochs
        sample_s = sum(c["sample_seconds"] for c in curve)
        update_s = sum(c["update_seconds"] for c in curve)
        extra.update(responses=responses, responses_per_s=round(responses / max(sample_s, 1e-9), 2),
                     update_samples_per_s=round(samples / max(update_s, 1e-9), 2))
    train_s = time.perf_counter() - t0
    if r.lora:
        pm.model = pm.model.merge_and_unload()
    pm.model.eval()
    rollouts, episodes = None, []
    if suite_path is not None and params.sft.val_rollouts and held:
        from octopus.evaluation.metrics import paired_difference
        from octopus.training.sft import read_val_episodes, val_rollouts
        val = [n for n in nodes if n["task_id"] in held]
        rollouts, episodes = val_rollouts(pm, val, params, suite_path, log)
        base = read_val_episodes(sft_dir)
        if base:  # the same held-out sample as the sft stage's: this run minus SFT, paired over tasks
            rollouts["minus_sft"] = paired_difference(base, episodes, n_boot=1000, seed=params.sft.seed)["all"]
        else:
            log(f"rlef: {sft_dir} holds no held-out episodes ({paths.VAL_EPISODES}): no paired difference to SFT")
    from octopus.training.sft import save_checkpoint
    save_checkpoint(pm, Path(out_dir), {"params": {**pm.meta.get("params", {}), "rlef": dataclasses.asdict(r)},
                                        "rlef": {"algorithm": run.algorithm, "reward": run.reward,
                                                 "from": str(sft_dir)}}, episodes)
    last = curve[-1] if curve else {}
    metrics = {"row": run.row(r.policy), "algorithm": run.algorithm,
               "reward": "preference pairs" if run.algorithm == "dpo" else run.reward,
               "updates": len(curve), "train_s": round(train_s, 1), **extra,
               "first": curve[0] if curve else {}, "last": last,
               "device": "cuda" if torch.cuda.is_available() else "cpu",
               "val_rollouts": rollouts, "wall_s": round(time.perf_counter() - t_start, 1)}
    return {"metrics": metrics, "curve": curve}
