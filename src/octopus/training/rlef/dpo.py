"""Offline RLEF by DPO: TRL's DPOTrainer on the trees' preference pairs, for any policy family.

    history = train_dpo(pm, ref, pairs, params.rlef, work_dir)      # pm.model improved in place

The pairs are `octopus.data.preferences` pairs (siblings share their state; rule pairs each keep
their own). Two small adapters make TRL's trainer read this project's policies:
- the dataset holds only pair indices (plus an empty `images` column for a vision policy, which makes
  TRL skip its own tokenisation); `PairCollator` encodes each pair with the policy's own
  `encode`/`collate` (10 views first, the image mask that lets every token see all of them, the
  instruction's middle cut to fit) and returns [chosen..., rejected...] with `completion_mask`;
- TRL's fused LM head calls the model's backbone with the collator's extra inputs
  (`pixel_values`, `image_attention_mask`), which `IdeficsModel` takes as they are.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import torch

from octopus.model.factory import PolicyModel
from octopus.training.rlef.sampling import state_observation


class PairCollator:
    """Pair indices -> the policy's inputs for [chosen..., rejected...] with a completion mask."""

    def __init__(self, pm: PolicyModel, pairs: list) -> None:
        self.pm, self.pairs = pm, pairs

    def encode(self, side: dict) -> Any:
        from octopus.training.rlef.states import RLState
        state = RLState(side["id"], side["task_id"], int(side.get("episode", 0)), side["prompt"], side["message"],
                        0.0, side.get("images"))
        obs = state_observation(self.pm, state)
        return self.pm.encode(obs[self.pm.family.observation_key], obs.get("views"), side["response"])

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        picked = [self.pairs[f["index"]] for f in features]
        examples = [self.encode(p.chosen) for p in picked] + [self.encode(p.rejected) for p in picked]
        batch = self.pm.collate(examples)
        labels = batch.pop("labels")
        batch["completion_mask"] = (labels != -100).long()
        return batch


def train_dpo(pm: PolicyModel, ref: PolicyModel, pairs: list, rp, work_dir: str | Path,
              log: Callable[[str], None] = print) -> list[dict]:
    """DPO (sigmoid loss, beta = rlef.dpo_beta; plus `rlef.dpo_sft_weight` x NLL of the chosen responses) over
    `pairs` for rlef.dpo_epochs; one row per logged step."""
    import datasets
    from trl import DPOConfig, DPOTrainer

    from octopus.training.hf import quiet, trained_model, trainer_flags
    if not pairs:
        raise ValueError("no preference pairs for DPO (the trees have no failed sibling or failed task)")
    columns: dict[str, list] = {"index": list(range(len(pairs)))}
    if pm.family.reads_views:
        columns["images"] = [[] for _ in pairs]  # marks a vision dataset: TRL leaves encoding to our collator
    else:  # TRL tokenises text datasets itself; our collator re-encodes with the middle cut, so keep them short
        columns.update(prompt=[""] * len(pairs), chosen=["."] * len(pairs), rejected=["."] * len(pairs))
    cfg = DPOConfig(
        output_dir=str(work_dir), per_device_train_batch_size=rp.minibatch_size, num_train_epochs=rp.dpo_epochs,
        learning_rate=rp.learning_rate, lr_scheduler_type="constant", beta=rp.dpo_beta,
        loss_type=["sigmoid", "sft"] if rp.dpo_sft_weight else ["sigmoid"],
        loss_weights=[1.0, rp.dpo_sft_weight] if rp.dpo_sft_weight else None,
        logging_steps=5, logging_first_step=True, save_strategy="no", seed=rp.seed, data_seed=rp.seed,
        report_to=[] if rp.report_to == "none" else [rp.report_to], run_name="rlef-dpo",
        remove_unused_columns=False, max_length=None, max_grad_norm=rp.max_grad_norm, **trainer_flags("auto"))
    trainer = quiet(DPOTrainer(model=pm.model, ref_model=ref.model, args=cfg,
                               train_dataset=datasets.Dataset.from_dict(columns),
                               data_collator=PairCollator(pm, pairs),
                               processing_class=pm.processor if pm.family.reads_views else pm.tokenizer),
                    progress=cfg.run_name)
    t0 = time.perf_counter()
    trainer.train()
    log(f"rlef dpo: {len(pairs)} pairs x {rp.dpo_epochs} epoch(s) in {time.perf_counter() - t0:.0f} s")
    pm.model = trained_model(trainer)
    pm.model.eval()
    rows = []
    for h in trainer.state.log_history:
        if "loss" in h:
            rows.append({"update": int(h.get("step", 0)), "loss": round(float(h["loss"]), 4),
                         **{k.replace("rewards/", "reward_"): round(float(v), 4) for k, v in h.items()
                            if k.startswith("rewards/")}})
    return rows
