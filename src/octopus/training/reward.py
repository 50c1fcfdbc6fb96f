"""The reward stage: r_phi learned from the feedback trees' preference pairs with TRL's RewardTrainer.

    out = train_reward(params, "data/dataset", "models/reward")
    out["metrics"]  # pairs by kind; held-out pairwise accuracy, AUC on step labels, margin; the trivial scorer's

dataset -> nodes -> preference pairs (`octopus.data.preferences`: siblings, then the task-level rule)
-> whole tasks held out (`reward.held_out`) -> a sequence classifier with one output
(`octopus.model.reward`) -> RewardTrainer (Bradley-Terry loss on chosen/rejected) -> checkpoint.

The held-out figures are computed here, not by the trainer, and the same for a trivial scorer (the
response parses, its code passes the sandbox's static checks, and it names only objects of the
message's Observed Objects), so a number means something: the reward model must beat the rule a
reader could write down.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from octopus.config import Params
from octopus.data import preferences
from octopus.data.preferences import Pair
from octopus.files import replace_dir
from octopus.model.reward import RewardModel


class RewardError(RuntimeError):
    """The reward stage cannot train (no pairs, impossible settings)."""


def trivial_score(message: str, response: str) -> float:
    """1.0 if the response parses, its code passes the static checks, and it names only observed objects."""
    from octopus.model.postprocess import ground_names
    from octopus.protocol import ResponseFormatError, check_code, parse_env_message, parse_response
    try:
        r = parse_response(response)
    except ResponseFormatError:
        return 0.0
    if check_code(r.code) is not None:
        return 0.0
    try:
        objects = parse_env_message(message).observed_objects or ()
    except ValueError:
        return 0.0
    g = ground_names(response, {o.name: o.distance for o in objects})
    return float(not g.mapping and not g.unresolved)


def auc(scores: Sequence[float], labels: Sequence[int]) -> float | None:
    """Area under the ROC curve (ties count half); None without both labels."""
    s, y = np.asarray(scores, dtype=float), np.asarray(labels, dtype=bool)
    pos, neg = np.sort(s[y]), np.sort(s[~y])
    if not len(pos) or not len(neg):
        return None
    below = np.searchsorted(neg, pos, side="left")
    ties = np.searchsorted(neg, pos, side="right") - below
    return float((below + 0.5 * ties).sum() / (len(pos) * len(neg)))


def pair_figures(chosen: Sequence[float], rejected: Sequence[float], kinds: Sequence[str]) -> dict[str, Any]:
    """Pairwise accuracy (ties half), mean margin, and accuracy per pair kind."""
    c, r = np.asarray(chosen, dtype=float), np.asarray(rejected, dtype=float)
    if not len(c):
        return {"pairs": 0}
    win = (c > r) + 0.5 * (c == r)
    out = {"pairs": int(len(c)), "pairwise_accuracy": round(float(win.mean()), 4),
           "mean_margin": round(float((c - r).mean()), 4)}
    for kind in preferences.PAIR_KINDS:
        sel = np.asarray([k == kind for k in kinds])
        if sel.any():
            out[f"accuracy_{kind}"] = round(float(win[sel].mean()), 4)
    return out


def _examples(rm: RewardModel, pairs: list[Pair]) -> list[dict]:
    return [{"chosen_ids": rm.encode(p.chosen["message"], p.chosen["response"]),
             "rejected_ids": rm.encode(p.rejected["message"], p.rejected["response"])} for p in pairs]


def evaluate_scorer(score: Callable[[list[tuple[str, str]]], list[float]], pairs: list[Pair],
                    nodes: list[dict]) -> dict[str, Any]:
    """A scorer's figures on held-out pairs and nodes (AUC against the RLEF label and the step label)."""
    chosen = score([(p.chosen["message"], p.chosen["response"]) for p in pairs])
    rejected = score([(p.rejected["message"], p.rejected["response"]) for p in pairs])
    node_scores = score([(r["message"], r["response"]) for r in nodes])
    out = pair_figures(chosen, rejected, [p.kind for p in pairs])
    out["auc_label"] = _round(auc(node_scores, [r["label"] for r in nodes]))
    out["auc_step"] = _round(auc(node_scores, [int(r["target_states_met"]) for r in nodes]))
    out["nodes"] = len(nodes)
    return out


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


def train_reward(params: Params, dataset_dir: str | Path, out_dir: str | Path,
                 log: Callable[[str], None] = print, work_dir: str | Path | None = None) -> dict[str, Any]:
    """Train r_phi, save it to `out_dir` (replaced atomically), return {"metrics", "curve"}."""
    from trl import RewardConfig, RewardTrainer

    from octopus.training.hf import quiet, trained_model, trainer_flags

    rp, t_start = params.reward, time.perf_counter()
    nodes = preferences.read_nodes(dataset_dir)
    pairs = preferences.preference_pairs(nodes)
    counts = preferences.pair_counts(pairs)
    used = [p for p in pairs if rp.pairs == "all" or p.kind == rp.pairs]
    train, held = preferences.split_by_task(used, rp.held_out, rp.seed)
    held_tasks = preferences.split_tasks([p.task_id for p in used], rp.held_out, rp.seed)
    held_nodes = [r for r in nodes if r["task_id"] in held_tasks]
    log(f"reward: {len(nodes)} nodes -> {counts['sibling']} sibling + {counts['rule']} rule pairs; "
        f"{len(train)} train / {len(held)} held-out pairs ({rp.pairs}) over {len(held_tasks)} held-out tasks")
    if not train:
        raise RewardError(f"{dataset_dir}: no {rp.pairs} preference pairs to train on: the trees have no failed "
                          "sibling or failed task (raise collect.oracle.explore or collect.samples_per_node)")
    texts = [r["message"] for r in nodes if r["task_id"] not in held_tasks] + \
            [r["response"] for r in nodes if r["task_id"] not in held_tasks]
    rm = RewardModel.build(rp.preset, texts, rp.max_length, rp.vocab_size, rp.name_or_path, rp.seed)
    import datasets
    train_ds = datasets.Dataset.from_list(_examples(rm, train))
    held_ds = datasets.Dataset.from_list(_examples(rm, held)) if held else None
    work = Path(work_dir or tempfile.mkdtemp(prefix="octopus-reward-"))
    cfg = RewardConfig(
        output_dir=str(work), per_device_train_batch_size=rp.batch_size, per_device_eval_batch_size=rp.batch_size,
        num_train_epochs=rp.epochs, max_steps=rp.max_steps, learning_rate=rp.learning_rate,
        lr_scheduler_type="cosine", warmup_steps=0.05, logging_steps=rp.log_every, logging_first_step=True,
        eval_strategy="steps" if held_ds is not None else "no", eval_steps=rp.eval_every, save_strategy="no",
        seed=rp.seed, data_seed=rp.seed, report_to=[] if rp.report_to == "none" else [rp.report_to],
        run_name="reward", max_length=None, center_rewards_coefficient=rp.center_rewards or None,
        **trainer_flags(rp.precision, "reward.precision"))
    trainer = quiet(RewardTrainer(model=rm.model, args=cfg, train_dataset=train_ds, eval_dataset=held_ds,
                                  processing_class=rm.tokenizer), progress="reward")
    t0 = time.perf_counter()
    result = trainer.train()
    train_s = time.perf_counter() - t0
    if not math.isfinite(result.training_loss):
        raise RewardError(f"training diverged (loss {result.training_loss}); lower reward.learning_rate")
    rm.model = trained_model(trainer)
    rm.model.eval()

    t0 = time.perf_counter()
    model_figures = evaluate_scorer(lambda items: rm.score(items, rp.batch_size * 2), held, held_nodes)
    score_s = time.perf_counter() - t0
    trivial = evaluate_scorer(lambda items: [trivial_score(m, r) for m, r in items], held, held_nodes)
    rm.meta.update({"params": {"reward": asdict(rp)}, "pairs": counts})
    with replace_dir(Path(out_dir)) as tmp:
        rm.save(tmp)
    samples = len(train) * 2 * (trainer.state.epoch or 0.0)
    metrics = {
        "nodes": len(nodes), "pairs": counts, "train_pairs": len(train), "held_out_pairs": len(held),
        "held_out_tasks": len(held_tasks), "preset": rp.preset,
        "parameters": sum(p.numel() for p in rm.model.parameters()),
        "epochs": round(trainer.state.epoch or 0.0, 3), "train_loss": round(result.training_loss, 4),
        **{f"held_out_{k}": v for k, v in model_figures.items()},
        "trivial": trivial,
        "beats_trivial": (model_figures.get("pairwise_accuracy") or 0) > (trivial.get("pairwise_accuracy") or 0),
        "samples_per_s": round(samples / train_s, 2), "train_s": round(train_s, 1),
        "scores_per_s": round((2 * len(held) + len(held_nodes)) / max(score_s, 1e-9), 1),
        "wall_s": round(time.perf_counter() - t_start, 1),
    }
    if not work_dir:
        shutil.rmtree(work, ignore_errors=True)
    return {"metrics": metrics, "curve": _curve(trainer.state.log_history)}


def _curve(history: list[dict]) -> list[dict]:
    """One row per logged step: train loss / accuracy and held-out loss / accuracy (DVC plots)."""
    rows: dict[int, dict] = {}
    for h in history:
        step = int(h.get("step", 0))
        row = rows.setdefault(step, {"step": step})
        for src, dst in (("loss", "train_loss"), ("accuracy", "train_accuracy"), ("eval_loss", "held_out_loss"),
                         ("eval_accuracy", "held_out_accuracy")):
            if src in h:
                row[dst] = round(float(h[src]), 4)
    return [rows[k] for k in sorted(rows) if len(rows[k]) > 1]
