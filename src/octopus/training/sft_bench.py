"""Benchmarks of the sft stage and the policy (`octopus bench sft`; numbers, not tests).

train[name]: samples/s and tokens/s of `steps` optimizer steps on the same model init, data and
    collator, for
    - `octopus`: our SFTTrainer (the model's own loss on response tokens),
    - `trainer`: a plain `transformers.Trainer` (the reference; the issue asks ours >= 0.9x of it),
    - `trl_default`: TRL's SFTTrainer with its own chunked output-layer loss (what we replace),
    - `grouped`: ours as the stage runs it, batching steps of similar length (`sft.group_by_length`);
    medians over `repeats` runs, run interleaved so machine noise hits all alike. The first three
    draw the same random batches.
    each at every precision asked for (`bf16`, `fp32`); `bf16_vs_fp32`: the ratio of their samples/s.
ratio_vs_trainer: octopus / trainer samples/s.
matmul_gflops: this machine's 2048 x 2048 matmul rate per precision (the roof a training step is held to);
    `mfu`: a run's 6 * parameters * tokens/s over that rate (the share of the chip's matmul rate it reaches).
inference: responses/s of greedy generation on held-out steps, one at a time and batched.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from octopus.config import Params
from octopus.data import builders
from octopus.model.device import resolve_precision
from octopus.model.factory import build_model, set_finetune_mode
from octopus.training.hf import trained_model, trainer_flags
from octopus.training.sft import (IndexedCollator, _index_dataset, encode_steps, make_trainer, peak_memory_mb, quiet,
                                  tokenizer_texts)


def matmul_gflops(dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    """The median rate of an n x n matmul at `dtype` on this machine's threads (GFLOP/s)."""
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    torch.matmul(a, b)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.matmul(a, b)
        times.append(time.perf_counter() - t0)
    return 2 * n ** 3 / statistics.median(times) / 1e9


def _trainer(kind: str, pm, examples: list, params: Params, work: Path):
    if kind in ("octopus", "grouped"):  # ours with the plain trainers' random batches (the ratio), and as shipped
        return make_trainer(pm, examples, [], replace(params, sft=replace(params.sft,
                                                                          group_by_length=kind == "grouped")), work)
    s = params.sft
    common = dict(output_dir=str(work), per_device_train_batch_size=s.batch_size, max_steps=s.max_steps,
                  learning_rate=s.learning_rate, logging_steps=10_000, save_strategy="no", report_to=[],
                  remove_unused_columns=False, seed=s.seed, **trainer_flags(s.precision))
    data, collator = _index_dataset(0, examples), IndexedCollator(pm, examples)
    if kind == "trainer":
        from transformers import Trainer, TrainingArguments
        return quiet(Trainer(model=pm.model, args=TrainingArguments(**common), train_dataset=data,
                             data_collator=collator))
    from trl import SFTConfig, SFTTrainer
    return quiet(SFTTrainer(model=pm.model, args=SFTConfig(**common, dataset_kwargs={"skip_prepare_dataset": True},
                                                           max_length=None),
                            train_dataset=data, data_collator=collator, processing_class=pm.tokenizer))


def run_train_bench(params: Params, dataset_dir: str | Path, steps: int = 30, repeats: int = 3,
                    kinds: tuple[str, ...] = ("octopus", "trainer", "trl_default", "grouped"),
                    precisions: tuple[str, ...] = ("auto",)) -> dict:
    p = replace(params, sft=replace(params.sft, max_steps=steps, report_to="none", warmup_ratio=0.0))
    data = builders.sample_steps(builders.read_steps(dataset_dir, p.sft.rows), steps * p.sft.batch_size, p.sft.seed)
    pm = build_model(p.model, tokenizer_texts(p.model.family, data), seed=0)
    init = {k: v.clone() for k, v in pm.model.state_dict().items()}
    examples, _ = encode_steps(pm, data)
    samples = steps * p.sft.batch_size
    tokens = sum(len(examples[i % len(examples)].input_ids) for i in range(samples))
    resolved = {prec: resolve_precision(prec) for prec in precisions}
    runs = [(kind, prec) for kind in kinds for prec in precisions]
    name = {(k, prec): k if len(precisions) == 1 else f"{k}_{resolved[prec]}" for k, prec in runs}
    times: dict[str, list[float]] = {name[r]: [] for r in runs}
    for _ in range(repeats):
        for kind, prec in runs:
            pm.model.load_state_dict(init)
            set_finetune_mode(pm, p.sft.mode)
            q = replace(p, sft=replace(p.sft, precision=resolved[prec]))
            with tempfile.TemporaryDirectory() as work:
                trainer = _trainer(kind, pm, examples, q, Path(work))
                t0 = time.perf_counter()
                trainer.train()
                times[name[(kind, prec)]].append(time.perf_counter() - t0)
            pm.model = trained_model(trainer)
    n_params = sum(x.numel() for x in pm.model.parameters())
    peak = {r: round(matmul_gflops(torch.bfloat16 if r == "bf16" else torch.float32), 1) for r in set(resolved.values())}
    out = {"model": f"{p.model.family}/{p.model.preset}", "steps": steps, "batch_size": p.sft.batch_size,
           "samples": samples, "tokens": tokens, "parameters": n_params, "threads": torch.get_num_threads(),
           "matmul_gflops": peak, "train": {}}
    for (kind, prec) in runs:
        ts = times[name[(kind, prec)]]
        med = statistics.median(ts)
        flops = 6 * n_params * tokens / med / 1e9
        out["train"][name[(kind, prec)]] = {
            "precision": resolved[prec], "samples_per_s": round(samples / med, 3), "tokens_per_s": round(tokens / med, 1),
            "model_gflops": round(flops, 1), "mfu": round(flops / peak[resolved[prec]], 3),
            "seconds_median": round(med, 2), "seconds": [round(t, 2) for t in ts]}
    if "trainer" in kinds and "octopus" in kinds and len(precisions) == 1:
        out["ratio_vs_trainer"] = round(out["train"]["octopus"]["samples_per_s"]
                                        / out["train"]["trainer"]["samples_per_s"], 3)
    if {"bf16", "fp32"} <= set(resolved.values()):
        by = {resolved[prec]: prec for prec in precisions}
        for kind in kinds:
            b, f = (out["train"][name[(kind, by[x])]]["samples_per_s"] for x in ("bf16", "fp32"))
            out.setdefault("bf16_vs_fp32", {})[kind] = round(b / f, 2)
    out["peak_memory_mb"] = round(peak_memory_mb(), 1)
    return out


def run_inference_bench(params: Params, model_dir: str | Path, dataset_dir: str | Path, n: int = 32,
                        batch_sizes: tuple[int, ...] = (1, 8), repeats: int = 2) -> dict:
    """Greedy responses/s on the first `n` held-out steps, per batch size (median of `repeats`)."""
    from octopus.model.policy import Policy
    steps = builders.read_steps(dataset_dir, params.sft.rows)
    _, val = builders.sft_split(steps, params.sft.val_fraction, params.sft.seed)
    val = (val or steps)[:n]
    policy = Policy.from_pretrained(model_dir, max_new_tokens=params.model.max_new_tokens, memo=False)
    examples, _ = encode_steps(policy.pm, val)  # views decoded at the model's size (none for a blind policy)
    obs = [policy.pm.family.step_observation(r, ex.views) for r, ex in zip(val, examples)]
    out = {"responses": len(obs), "max_new_tokens": params.model.max_new_tokens, "per_batch_size": {}}
    for b in batch_sizes:
        policy.batch_size = b
        rates, tok = [], []
        for _ in range(repeats):
            policy.stats = {"responses": 0, "generated_tokens": 0, "seconds": 0.0}
            policy.respond_batch(obs)
            rates.append(len(obs) / policy.stats["seconds"])
            tok.append(policy.stats["generated_tokens"] / policy.stats["seconds"])
        out["per_batch_size"][str(b)] = {"responses_per_s": round(statistics.median(rates), 2),
                                         "tokens_per_s": round(statistics.median(tok), 1)}
    return out
