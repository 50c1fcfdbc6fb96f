"""The sft stage: supervised finetuning of the policy on the collected steps with TRL's SFTTrainer.

    metrics = train_sft(params.for_policy("octopus"), "data/dataset", out_dir="models/sft/octopus")

dataset -> steps (positive by default) -> task-held-out split -> model (family/preset, finetune mode,
optional LoRA) -> SFTTrainer -> checkpoint (`save_pretrained`, loads with `Policy.from_pretrained`)
-> metrics (losses, throughput, memory, generation quality on held-out steps).

Two things differ from a stock SFTTrainer run, both for this model:
- our collator (`octopus.model.inputs`) puts the 10 views before the text, with an image mask that
  lets every token see all of them, and keeps decoded pixels in memory;
- `compute_loss` is the model's own loss on response tokens (TRL 1.16 always swaps in a chunked
  output-layer loss, ~66% slower for the tiny preset on a CPU).
"""

from __future__ import annotations

import gc
import json
import math
import re
import resource
import shutil
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Callable

import torch

from octopus import paths
from octopus.config import Params
from octopus.data import builders
from octopus.model.device import resolve_precision
from octopus.model.factory import PolicyModel, build_model, get_family, set_finetune_mode, train_only
from octopus.model.inputs import IGNORE
from octopus.files import replace_dir, write_json
from octopus.training import augment
from octopus.training.hf import StderrLogs, quiet, trained_model, trainer_flags  # noqa: F401 - also the sft API


class SFTError(RuntimeError):
    """The sft stage cannot train (no data, impossible settings)."""


class IndexedCollator:
    """Batches of dataset indices -> model inputs, from examples encoded once up front."""

    def __init__(self, pm: PolicyModel, examples: list) -> None:
        self.pm, self.examples = pm, examples

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        return self.pm.collate([self.examples[f["index"]] for f in features])


def _index_dataset(start: int, examples: list):
    """Dataset indices (what the collator looks up) and each example's length (what group_by_length sorts on)."""
    import datasets
    return datasets.Dataset.from_dict({"index": list(range(start, start + len(examples))),
                                       "length": [len(e.input_ids) for e in examples]})


def tokenizer_texts(family: str, steps: list[dict]) -> list[str]:
    """What a from-scratch tokenizer is trained on: the steps' inputs as the family reads them, and responses."""
    column = get_family(family).prompt_column
    return [r[column] for r in steps] + [r["response"] for r in steps]


def encode_steps(pm: PolicyModel, steps: list[dict], workers: int = 2,
                 prompt_loss: bool = False) -> tuple[list, int]:
    """Examples for `steps` (views decoded, and resized to the model's size, once) and how many were cut.

    A blind family (`text`) reads each step's message with Observed Objects/Relations, no views.
    `prompt_loss`: the instruction's tokens are labels too (`sft.prompt_loss`)."""
    column = pm.family.prompt_column
    views = builders.decode_all(steps, pm.spec.image_size, workers) if pm.family.reads_views else [None] * len(steps)
    examples = [pm.encode(r[column], v, r["response"]) for r, v in zip(steps, views)]
    if prompt_loss:
        examples = [label_prompt(pm, e) for e in examples]
    return examples, sum(e.truncated > 0 for e in examples)


def label_prompt(pm: PolicyModel, example):
    """`example` with its prompt's text tokens as labels as well: every position the encoder left unlabelled
    except the first and special tokens (BOS, padding, the views' image and fake tokens)."""
    spec = pm.spec
    skip = set(pm.tokenizer.all_special_ids) | {getattr(spec, k) for k in (
        "bos_token_id", "pad_token_id", "image_token_id", "fake_token_id") if getattr(spec, k, None) is not None}
    labels = [t if lab == IGNORE and i > 0 and t not in skip else lab
              for i, (t, lab) in enumerate(zip(example.input_ids, example.labels))]
    return replace(example, labels=labels)


def make_trainer(pm: PolicyModel, train_examples: list, val_examples: list, params: Params, work_dir: Path,
                 callbacks: list | None = None, run_name: str | None = None):
    """The SFTTrainer for this run (model's own loss on response tokens; our vision collator)."""
    from trl import SFTConfig, SFTTrainer

    scaled_lr = set()  # vision and connector on a pretrained LM: new modules, trained at a higher rate
    if params.sft.new_modules_lr_scale != 1 and not pm.meta.get("from_scratch", True):
        scaled_lr = {n for n, g in pm.groups().items() if g in ("vision", "connector")}

    class OctopusSFTTrainer(SFTTrainer):
        def create_optimizer(self, model=None):
            optimizer = super().create_optimizer(model)
            if scaled_lr and not getattr(optimizer, "_octopus_scaled", False):
                scale_lr(optimizer, self.model if model is None else model, scaled_lr, params.sft.new_modules_lr_scale)
                optimizer._octopus_scaled = True
            return optimizer

        # the loss on response tokens, their logits only (not TRL's chunked head, not the whole vocabulary at
        # every prompt position: a 49k-token head at 1,000 positions is a fifth of a 135M model's compute)
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            scaled = num_items_in_batch if self.model_accepts_loss_kwargs else None
            loss, outputs = response_loss(model, inputs, scaled)
            return (loss, outputs) if return_outputs else loss

    s = params.sft
    cfg = SFTConfig(
        output_dir=str(work_dir), per_device_train_batch_size=s.batch_size, per_device_eval_batch_size=s.batch_size,
        gradient_accumulation_steps=s.grad_accum, num_train_epochs=s.epochs, max_steps=s.max_steps,
        learning_rate=s.learning_rate, lr_scheduler_type="cosine", warmup_steps=s.warmup_ratio,
        weight_decay=s.weight_decay, logging_steps=s.log_every, logging_first_step=True,
        eval_strategy="steps" if val_examples else "no", eval_steps=s.eval_every, save_strategy="no",
        seed=s.seed, data_seed=s.seed, report_to=[] if s.report_to == "none" else [s.report_to],
        run_name=run_name or f"sft-{params.model.family}-{params.model.preset}-{s.mode}",
        remove_unused_columns=False, dataset_kwargs={"skip_prepare_dataset": True}, max_length=None, packing=False,
        train_sampling_strategy="group_by_length" if s.group_by_length else "random", length_column_name="length",
        **trainer_flags(s.precision))
    # one collator over train + validation examples; the validation indices follow the training ones
    n = len(train_examples)
    return quiet(OctopusSFTTrainer(model=pm.model, args=cfg, train_dataset=_index_dataset(0, train_examples),
                             eval_dataset=_index_dataset(n, val_examples) if val_examples else None,
                             data_collator=IndexedCollator(pm, train_examples + val_examples),
                             processing_class=pm.tokenizer,
                             callbacks=callbacks), progress=cfg.run_name)


def scale_lr(optimizer, model, names: set[str], scale: float) -> None:
    """Move the parameters named in `names` into param groups of their own at `scale` times their group's rate
    (before the scheduler is made, so its schedule applies to them too)."""
    chosen = {id(p) for n, p in model.named_parameters() if n.removeprefix("base_model.model.") in names or n in names}
    for group in list(optimizer.param_groups):
        moved = [p for p in group["params"] if id(p) in chosen]
        if moved:
            group["params"] = [p for p in group["params"] if id(p) not in chosen]
            optimizer.add_param_group({**{k: v for k, v in group.items() if k != "params"}, "params": moved,
                                       "lr": group["lr"] * scale})


def response_loss(model, inputs: dict, num_items: Any = None) -> tuple[torch.Tensor, Any]:
    """Next-token cross-entropy on the labelled (response) tokens, with logits computed at those positions only
    (`logits_to_keep` as a boolean mask); the mean, or the sum over `num_items` (the Trainer's count across
    gradient accumulation). Returns (loss, the model's outputs)."""
    inputs = dict(inputs)
    labels = inputs.pop("labels")
    target = labels[:, 1:]
    wanted = target != IGNORE
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = wanted
    outputs = model(**inputs, logits_to_keep=keep)
    nats = torch.nn.functional.cross_entropy(outputs.logits.float(), target[wanted], reduction="sum")
    denominator = num_items if num_items is not None else wanted.sum().clamp(min=1)
    return nats / denominator, outputs


def fit(trainer, what: str) -> tuple[Any, float]:
    """`trainer.train()` and its seconds; SFTError when the loss is not finite."""
    t0 = time.perf_counter()
    result = trainer.train()
    seconds = time.perf_counter() - t0
    if not math.isfinite(result.training_loss):
        raise SFTError(f"{what} diverged (loss {result.training_loss}); lower sft.learning_rate")
    return result, seconds


GATES = ("alpha_cross_attn", "alpha_dense")  # Idefics' tanh gates on the cross-attention and its dense block


def pretrain_text(pm: PolicyModel, train_examples: list, val_examples: list, params: Params, work_dir: Path,
                  run_name: str | None, log: Callable[[str], None]) -> dict[str, Any]:
    """`sft.text_pretrain` epochs of the language model alone, before the finetune mode applies.

    Every cross-attention gate is held at 0 (tanh(0) = 0: the views add nothing to the text stream) and only
    the `lm` group trains, so the LM learns the instructions and responses as a text model would. The gates
    get their initial values back afterwards. On the from-scratch presets this stands in for the paper's
    pretrained LLaMA: `sft.mode: connector` then trains the views into a language model that already writes
    programs (paper Fig. 6a), instead of into a random one."""
    s = params.sft
    if not pm.family.reads_views:
        raise SFTError(f"sft.text_pretrain: the {pm.family.name} policy reads no views; it is a text model "
                       "already (train it longer with sft.epochs)")
    gates = {n: p for n, p in pm.model.named_parameters() if n.rsplit(".", 1)[-1] in GATES}
    if not gates:
        raise SFTError(f"sft.text_pretrain: the {pm.family.name} model has no cross-attention gates to close")
    opened = {n: p.detach().clone() for n, p in gates.items()}
    with torch.no_grad():
        for p in gates.values():
            p.zero_()
    train_only(pm, {n for n, g in pm.groups().items() if g == "lm"})
    text = replace(params, sft=replace(s, epochs=s.text_pretrain, max_steps=-1))
    trainer = make_trainer(pm, train_examples, val_examples, text, work_dir,
                           run_name=f"{run_name or 'sft'}-text-pretrain")
    result, train_s = fit(trainer, "text pretraining")
    val = trainer.evaluate()["eval_loss"] if val_examples else None
    pm.model = trained_model(trainer, pm.model)
    with torch.no_grad():
        for n, p in pm.model.named_parameters():
            if n in opened:
                p.copy_(opened[n])
    log(f"sft: text pretraining: {trainer.state.global_step} optimizer steps in {train_s:.0f} s, "
        f"held-out loss without views {_r(val)}")
    return {"epochs": round(trainer.state.epoch or 0.0, 3), "optimizer_steps": trainer.state.global_step,
            "train_s": round(train_s, 2), "train_loss_mean": round(result.training_loss, 4), "val_loss": _r(val)}


#: the LM's attention and MLP projections, never the vision tower's (SigLIP and CLIP name theirs alike)
LORA_TARGETS = r"^(?!.*vision_model).*\.layers\.\d+\.(self_attn|mlp)\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)$"


def apply_lora(pm: PolicyModel, params: Params) -> None:
    """LoRA adapters on the LM's projections; the connector (and vision in `full`) keep training in full."""
    from peft import LoraConfig, get_peft_model
    s = params.sft
    keep = [n for n, p in pm.model.named_parameters() if p.requires_grad and pm.groups()[n] != "lm"]
    targets = LORA_TARGETS
    pm.model = get_peft_model(pm.model, LoraConfig(r=s.lora_r, lora_alpha=s.lora_alpha, lora_dropout=0.0,
                                                   target_modules=targets, bias="none"))
    wanted = {f"base_model.model.{n}" for n in keep}
    for n, p in pm.model.named_parameters():
        if n in wanted:
            p.requires_grad_(True)


def peak_memory_mb() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def generation_quality(pm: PolicyModel, steps: list[dict], examples: list, params: Params, n: int) -> dict:
    """Greedy responses on up to `n` held-out steps: do they parse into all four sections, does the code compile?"""
    from octopus.model.policy import Policy
    from octopus.protocol import ResponseFormatError, check_code, parse_response
    picked = list(range(len(steps)))[:n]
    if not picked:
        return {"generated": 0}
    policy = Policy(pm, max_new_tokens=params.model.max_new_tokens, batch_size=params.model.batch_size)
    obs = [pm.family.step_observation(steps[i], examples[i].views) for i in picked]
    t0 = time.perf_counter()
    texts = policy.respond_batch(obs)
    took = time.perf_counter() - t0
    parsed = compiled = same = 0
    for i, text in zip(picked, texts):
        try:
            r = parse_response(text)
        except ResponseFormatError:
            continue
        parsed += 1
        compiled += check_code(r.code) is None  # the sandbox's own rules: policy, API names, act()
        try:  # the same program as the teacher's (whitespace aside)?
            same += r.code.split() == parse_response(steps[i]["response"]).code.split()
        except ResponseFormatError:
            pass
    k = len(picked)
    return {"generated": k, "parse_rate": round(parsed / k, 4), "compile_rate": round(compiled / k, 4),
            "code_match_rate": round(same / k, 4), "responses_per_s": round(k / took, 3),
            "sample": texts[0][:2000]}


NO_PLAN = re.compile(r"^Original Subtasks: None$", re.M)


@torch.no_grad()
def goal_reading(pm: PolicyModel, steps: list[dict], examples: list, batch_size: int = 4) -> dict:
    """Does the policy read the task? The response loss (nats per token) on held-out steps with their own
    Task Goal, and with the Task Goal line of the next held-out step of another goal (views and the rest of
    the instruction unchanged). A policy that writes its plan from the goal pays for the wrong one: `gap`
    near 0 means the response comes from the views and the training scenes' habits, not the instruction.
    `first_steps`: the same on the steps without Original Subtasks, where the goal is the only statement of
    the task (later steps can also read the plan's object names from the subtasks)."""
    column = pm.family.prompt_column
    found = [(i, m.group(1)) for i, r in enumerate(steps) if (m := augment.GOAL.search(r[column]))]
    rows, goals = [i for i, _ in found], [g for _, g in found]
    pairs = []
    for k, i in enumerate(rows):
        following = (goals[(k + j) % len(rows)] for j in range(1, len(rows)))
        other = next((g for g in following if g != goals[k]), None)
        if other is not None:
            pairs.append((i, augment.GOAL.sub(lambda _: f"Task Goal: {other}", steps[i][column], count=1)))
    if not pairs:
        return {"steps": 0}
    was, device = pm.model.training, next(pm.model.parameters()).device
    pm.model.eval()
    sums = []  # per pair: (own nats, swapped nats, tokens)
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start:start + batch_size]
        per = []
        for batch in ([examples[i] for i, _ in chunk],
                      [pm.encode(text, examples[i].views, steps[i]["response"]) for i, text in chunk]):
            b = {k: v.to(device) for k, v in pm.collate(batch).items()}
            if "pixel_values" in b:
                b["pixel_values"] = b["pixel_values"].to(pm.model.dtype)
            target = b["labels"][:, 1:]
            mask = target != IGNORE
            keep = torch.zeros_like(b["labels"], dtype=torch.bool)
            keep[:, :-1] = mask
            b.pop("labels")
            logits = pm.model(**b, logits_to_keep=keep).logits.float()  # (response tokens, vocabulary)
            nats = torch.nn.functional.cross_entropy(logits, target[mask], reduction="none")
            rows = torch.arange(len(batch), device=device).unsqueeze(1).expand_as(mask)[mask]
            per.append((torch.zeros(len(batch), device=device).index_add_(0, rows, nats).tolist(), mask.sum(1).tolist()))
        sums += [(o, w, n) for o, w, n in zip(per[0][0], per[1][0], per[0][1])]
    pm.model.train(was)

    def figures(keep: list[int]) -> dict:
        own, swapped, n = (sum(sums[k][j] for k in keep) for j in range(3))
        return {"steps": len(keep), "own_goal_loss": round(own / max(n, 1), 4),
                "swapped_goal_loss": round(swapped / max(n, 1), 4), "gap": round((swapped - own) / max(n, 1), 4)}

    first = [k for k, (i, _) in enumerate(pairs) if NO_PLAN.search(steps[i][column])]
    return {**figures(list(range(len(pairs)))), "first_steps": figures(first)}


def val_rollouts(pm: PolicyModel, val: list[dict], params: Params, suite_path: str | Path,
                 log: Callable[[str], None] = print) -> tuple[dict[str, Any], list]:
    """The trained policy rolled out (greedy, one episode each, names grounded) on `sft.val_rollouts` of the
    held-out training tasks (half paper-style, half procedural, where there are enough), as the evaluate stage
    rolls out on the suite: (figures, episode records). Figures: completion with its CI, executable code, step
    success, failures by cause, and the same split by task source (paper / behavior / procedural). The sample
    depends only on the held-out task ids and `sft.seed`, so the rlef stage rolls its runs out on the same tasks
    and pairs them with the SFT policy's episodes saved with its checkpoint."""
    from octopus.agents.learned import PolicyAgent
    from octopus.evaluation.metrics import failure_counts, flatten, summarize
    from octopus.evaluation.rollouts import rollout_batch
    from octopus.model.policy import Policy
    from octopus.sim.tasks_stage import read_snapshot

    ids = builders.held_out_tasks(val, params.sft.val_rollouts, params.sft.seed, stratify=True)
    if not ids:
        return {"tasks": 0}, []
    suite = read_snapshot(suite_path)
    try:
        tasks = [suite.get(i) for i in ids]
    except KeyError as err:
        raise SFTError(f"{suite_path}: {err.args[0]}: the dataset was collected from another suite snapshot") from None
    m = params.model
    agent = PolicyAgent(params=params, policy=Policy(pm, max_new_tokens=m.max_new_tokens, batch_size=m.batch_size))
    t0 = time.perf_counter()
    records = rollout_batch(agent, tasks, params, name="val", live=16)  # 16 live envs (renderers) at a time
    took = time.perf_counter() - t0
    log(f"sft: {len(records)} held-out training tasks rolled out in {took:.0f} s")

    keep = ("tasks", "steps", *(f"{k}{end}" for k in ("task_completion", "code_executability", "step_success",
                                                       "plan_score") for end in ("", "_lo", "_hi")))

    def figures(recs: list) -> dict[str, Any]:
        flat = flatten(summarize(recs, n_boot=1000, seed=params.sft.seed)["all"])
        return {k: flat[k] for k in keep}

    by_source = {}
    for r, t in zip(records, tasks):
        by_source.setdefault(t.source or "paper", []).append(r)
    return ({**figures(records), "failures": failure_counts(records), "seconds": round(took, 1),
             "by_source": {k: figures(v) for k, v in sorted(by_source.items())}}, records)


def save_val_episodes(checkpoint: Path, records: list) -> None:
    """A checkpoint's held-out episodes (`paths.VAL_EPISODES`), written into it before it is swapped in."""
    if records:
        write_json(checkpoint / paths.VAL_EPISODES, [r.to_dict() for r in records])


def read_val_episodes(checkpoint: str | Path) -> list | None:
    """The held-out episodes saved with a checkpoint; None where it has none (rollouts off, an older checkpoint)
    or they do not read (then the difference is left out, never guessed)."""
    from octopus.evaluation.rollouts import EpisodeRecord
    path = Path(checkpoint) / paths.VAL_EPISODES
    try:
        return [EpisodeRecord.from_dict(d) for d in json.loads(path.read_text())]
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def train_sft(params: Params, dataset_dir: str | Path, out_dir: str | Path, work_dir: str | Path | None = None,
              log: Callable[[str], None] = print, quality_samples: int = 32,
              run_name: str | None = None, suite_path: str | Path | None = None,
              split: tuple[list[dict], list[dict]] | None = None) -> dict[str, Any]:
    """Train, save the policy to `out_dir` (replaced atomically), and return the stage's metrics. With
    `suite_path` (the suite snapshot the dataset was collected from), `sft.val_rollouts` held-out training
    tasks are rolled out in the simulator (`val_rollouts` in the metrics). `split`: (train, validation)
    steps to use instead of the dataset's own split (`octopus bench scaling`)."""
    s, t_start = params.sft, time.perf_counter()
    if split is None:
        train, val = builders.sft_split(builders.read_steps(dataset_dir, s.rows), s.val_fraction, s.seed)
    else:
        train, val = split
    if s.max_samples and len(train) > s.max_samples:  # a seeded sample, spread over every training task
        train = builders.sample_steps(train, s.max_samples, s.seed)
    if not train:
        raise SFTError(f"no training steps left after holding out {s.val_fraction:.0%} of tasks")
    val_all = val
    if s.val_steps is not None and len(val) > s.val_steps:  # what validation loss and goal reading are measured on
        val = builders.sample_steps(val, s.val_steps, s.seed)
    log(f"sft: {len(train)} train / {len(val)} validation steps ({s.rows}) from {dataset_dir}")
    renamed = 0
    if s.rename_objects > 0:
        if suite_path is None:
            raise SFTError("sft.rename_objects needs the suite snapshot (its evaluation categories are never used)")
        pool = augment.category_pool(augment.suite_categories(suite_path))
        train, renamed = augment.rename_steps(train, s.rename_objects, get_family(params.model.family).prompt_column,
                                              pool, s.seed)
        log(f"sft: {renamed} training steps with their goal's objects renamed ({len(pool)} categories)")
    pm = build_model(params.model, tokenizer_texts(params.model.family, train), seed=s.seed)
    if s.mode == "connector" and pm.family.reads_views and pm.meta.get("from_scratch") and not s.text_pretrain:
        raise SFTError(f"sft.mode: connector on the from-scratch preset {params.model.preset!r} would train the "
                       "connector into a random, frozen language model; set sft.text_pretrain (epochs of the "
                       "language model alone first, the stand-in for a pretrained LM) or use connector_lm / full")
    t0 = time.perf_counter()
    train_ex, cut_train = encode_steps(pm, train, prompt_loss=s.prompt_loss)
    val_ex, cut_val = encode_steps(pm, val)
    t_encode = time.perf_counter() - t0
    tokens = sum(len(e.input_ids) for e in train_ex)
    work = Path(work_dir or tempfile.mkdtemp(prefix="octopus-sft-"))
    pretrained = pretrain_text(pm, train_ex, val_ex, params, work / "text", run_name, log) if s.text_pretrain else None

    trainable, total = set_finetune_mode(pm, s.mode)
    if s.lora:
        apply_lora(pm, params)
        trainable = sum(p.numel() for p in pm.model.parameters() if p.requires_grad)
    if trainable == 0:
        raise SFTError(f"sft.mode {s.mode} trains no parameters of this model")
    log(f"sft: model {params.model.family}/{params.model.preset} {total / 1e6:.2f}M parameters, "
        f"{trainable / 1e6:.2f}M trained ({s.mode}{' + LoRA' if s.lora else ''}); encoded in {t_encode:.1f} s")
    trainer = make_trainer(pm, train_ex, val_ex, params, work, run_name=run_name)
    val_start = trainer.evaluate()["eval_loss"] if val_ex else None
    result, train_s = fit(trainer, "training")
    val_end = trainer.evaluate()["eval_loss"] if val_ex else None
    if s.lora:
        pm.model = pm.model.merge_and_unload()
    curve = _curve(trainer.state.log_history, val_start)
    main = trainer.is_world_process_zero()  # under `accelerate launch`, one process writes
    if not main:
        return {"metrics": {}, "curve": curve, "main": False}
    pm.model = trained_model(trainer, pm.model)
    trainer.optimizer = trainer.lr_scheduler = None  # the optimizer state is not needed to generate: free it
    gc.collect()
    # the trained policy is saved first: an evaluation below that fails (or runs out of memory) loses nothing
    save_checkpoint(pm, Path(out_dir), {"params": {"model": asdict(params.model), "sft": asdict(s)},
                                        "data": builders.fingerprint(train)}, [])
    quality = generation_quality(pm, val, val_ex, params, quality_samples) if val_ex else {"generated": 0}
    with torch.autocast(str(trainer.args.device.type), dtype=torch.bfloat16,
                        enabled=resolve_precision(s.precision) == "bf16"):
        reading = goal_reading(pm, val, val_ex) if val_ex else {"steps": 0}
    log(f"sft: goal reading: held-out response loss {reading.get('own_goal_loss')} with the own Task Goal, "
        f"{reading.get('swapped_goal_loss')} with another's")
    rollouts, episodes = (val_rollouts(pm, val_all, params, suite_path, log) if suite_path is not None
                          and s.val_rollouts else (None, []))
    save_val_episodes(Path(out_dir), episodes)
    epochs = trainer.state.epoch or 0.0
    samples = len(train_ex) * epochs
    metrics = {
        "train_steps": len(train_ex), "val_steps": len(val_ex), "train_tasks": len({r["task_id"] for r in train}),
        "val_tasks": len({r["task_id"] for r in val}), "truncated_prompts": cut_train + cut_val,
        "renamed_steps": renamed,
        "family": params.model.family, "reads": pm.family.prompt_column + ("+views" if pm.family.reads_views else ""),
        "parameters": total, "trainable_parameters": trainable, "mode": s.mode, "lora": s.lora,
        "epochs": round(epochs, 3), "optimizer_steps": trainer.state.global_step,
        "train_loss": round(curve[-1]["train_loss"] if curve and curve[-1].get("train_loss") is not None
                            else result.training_loss, 4),
        "train_loss_mean": round(result.training_loss, 4),
        "val_loss_start": _r(val_start), "val_loss": _r(val_end),
        "samples_per_s": round(samples / train_s, 3), "tokens_per_s": round(tokens * epochs / train_s, 1),
        "train_s": round(train_s, 2), "encode_s": round(t_encode, 2), "wall_s": round(time.perf_counter() - t_start, 2),
        "peak_memory_mb": round(peak_memory_mb(), 1), "device": str(trainer.args.device),
        "quality": quality, "goal_reading": reading, "val_rollouts": rollouts, "text_pretrain": pretrained,
    }
    if not work_dir:
        shutil.rmtree(work, ignore_errors=True)
    return {"metrics": metrics, "curve": curve, "main": True}


def _r(x: float | None) -> float | None:
    return None if x is None else round(float(x), 4)


def _curve(history: list[dict], val_start: float | None) -> list[dict]:
    """One row per logged step: step, train_loss and/or val_loss (DVC plots)."""
    rows: dict[int, dict] = {}
    if val_start is not None:
        rows[0] = {"step": 0, "val_loss": round(val_start, 4)}
    for h in history:
        step = int(h.get("step", 0))
        if "loss" in h:
            rows.setdefault(step, {"step": step})["train_loss"] = round(float(h["loss"]), 4)
        if "eval_loss" in h and step > 0:
            rows.setdefault(step, {"step": step})["val_loss"] = round(float(h["eval_loss"]), 4)
    return [rows[k] for k in sorted(rows)]


def save_checkpoint(pm: PolicyModel, out: Path, extra: dict, episodes: list) -> None:
    """Write the checkpoint (meta updated with `extra`, and its held-out episodes) next to `out`, then swap it
    in: a reader never sees half a model. The sft and rlef stages' one way to save a policy."""
    pm.meta.update(extra)
    with replace_dir(out) as tmp:
        pm.save(tmp)
        save_val_episodes(tmp, episodes)
