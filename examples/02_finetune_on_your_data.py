"""Finetune a policy on a dataset of collected steps, then ask it about a step it never trained on.

Shows `octopus.training.sft.train_sft` (what `dvc repro sft@octopus` runs) on any directory of the
collect stage's Parquet shards, with a few `sft` settings overridden from params.yaml, and how the
saved checkpoint loads with `Policy.from_pretrained` and answers a held-out step.

    # in a checkout after `make run` (data/dataset exists); a quick run: 50 optimizer steps
    python examples/02_finetune_on_your_data.py --max-steps 50
    python examples/02_finetune_on_your_data.py --dataset my/shards --policy blind --epochs 3 --out models/my_blind
    python examples/02_finetune_on_your_data.py --mode connector_lm --lora     # LoRA on the LM, connector in full

The model starts from `params.model` with `policies.<policy>`'s overrides (the tiny preset trains
from scratch on a CPU in minutes; `model.preset: paper` starts from idefics-9b).
"""

from __future__ import annotations

import argparse
import dataclasses
import json

from octopus import paths
from octopus.config import load_params
from octopus.data import builders, schema
from octopus.model.policy import Policy
from octopus.training.sft import train_sft


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default=str(paths.DATASET), help="directory of Parquet shards (the collect stage's)")
    ap.add_argument("--out", default=str(paths.MODELS / "finetuned"), help="where the checkpoint is saved (replaced)")
    ap.add_argument("--params", default="params.yaml", help="params file (missing: the defaults)")
    ap.add_argument("--policy", default="octopus", help="entry of `policies` whose model/sft overrides apply")
    ap.add_argument("--epochs", type=float, help="passes over the training steps (default: sft.epochs)")
    ap.add_argument("--max-steps", type=int, help="optimizer steps, overriding epochs when > 0")
    ap.add_argument("--mode", choices=("connector", "connector_lm", "full"), help="what trains (default: sft.mode)")
    ap.add_argument("--lora", action="store_true", help="LoRA adapters on the LM instead of its full weights")
    ap.add_argument("--report-to", default="none", choices=("none", "wandb"), help="experiment tracking")
    args = ap.parse_args()

    params = load_params(args.params).for_policy(args.policy)
    overrides = {"epochs": args.epochs, "max_steps": args.max_steps, "mode": args.mode,
                 "lora": args.lora or None, "report_to": args.report_to}
    sft = dataclasses.replace(params.sft, **{k: v for k, v in overrides.items() if v is not None})
    params = dataclasses.replace(params, sft=sft)

    out = train_sft(params, args.dataset, args.out, quality_samples=8)
    m = out["metrics"]
    print(f"trained {m['optimizer_steps']} steps ({m['epochs']} epochs) on {m['train_steps']} steps of "
          f"{m['train_tasks']} tasks: train loss {m['train_loss']}, val loss {m['val_loss_start']} -> {m['val_loss']}")
    print("generation on held-out steps:", json.dumps({k: v for k, v in m["quality"].items() if k != "sample"}))

    # the same task-held-out split train_sft used: a step of a task the model never saw
    train, val = builders.sft_split(builders.read_steps(args.dataset, sft.rows), sft.val_fraction, sft.seed)
    step = (val or train)[0]
    m = params.model
    policy = Policy.from_pretrained(args.out, max_new_tokens=m.max_new_tokens, temperature=m.temperature)
    family = policy.pm.family  # what this policy reads: {"text", "views"}, or {"message"} for a blind one
    views = schema.decode_views(step["images"]) if family.reads_views else None
    answer = policy.respond(family.step_observation(step, views))
    print(f"\nheld-out step {step['id']} ({'validation' if val else 'training'} task {step['task_id']}):")
    print("--- policy's response ---\n" + answer)
    print("--- teacher's response ---\n" + step["response"])
    print(f"\ncheckpoint: {args.out}")


if __name__ == "__main__":
    main()
