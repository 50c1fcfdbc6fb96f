"""What every stage's Hugging Face Trainer shares: the device and precision flags, and quiet logs.

    cfg = SFTConfig(..., **trainer_flags("auto"))      # bf16 where the chip computes it natively, else fp32, ...
    trainer = quiet(SFTTrainer(...), "sft-octopus")     # one short line per log on stderr; steps as the
                                                        # Prefect progress artifact octopus-sft-octopus-progress
"""

from __future__ import annotations

import sys

import torch
from transformers import TrainerCallback

from octopus.model.device import PrecisionError, resolve_precision
from octopus.progress import RunProgress


def precision_flags(precision: str, field: str = "sft.precision") -> dict[str, bool]:
    """The Trainer's bf16/fp16 flags (on a CPU, bf16 is autocast with fp32 master weights)."""
    precision = resolve_precision(precision, field)
    return {"bf16": precision == "bf16", "fp16": precision == "fp16"}


def trainer_flags(precision: str, field: str = "sft.precision") -> dict:
    """The flags every Trainer config of the project sets: the device and precision (`precision_flags`), no
    activation checkpointing (TRL's configs default to it; on the CPU presets it recomputes every forward pass
    for no memory worth saving: reward training took 1.4x as long), no pinned memory, no tqdm bars (`quiet`
    logs one line per step instead)."""
    return {"use_cpu": not torch.cuda.is_available(), "activation_checkpointing": False,
            "dataloader_pin_memory": False, "disable_tqdm": True, **precision_flags(precision, field)}


def trained_model(trainer, model=None):
    """The model a Trainer trained, as a plain module again: accelerate leaves `forward` wrapped in autocast (a
    precision the caller did not ask for) and its own unwrapping also strips transformers' decorators of the
    forward (its `return_dict` handling): the instance attributes it set go, the class's forward comes back."""
    model = trainer.accelerator.unwrap_model(trainer.model if model is None else model)
    for attr in ("forward", "_original_forward", "_converted_to_transformer_engine"):
        model.__dict__.pop(attr, None)
    return model


class StderrLogs(TrainerCallback):
    """Trainer logs as one short line on stderr (stdout stays clean for --json output)."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.is_world_process_zero and logs:
            keep = {k: v for k, v in logs.items() if k in ("loss", "eval_loss", "learning_rate", "grad_norm")}
            if keep:
                print(f"step {state.global_step} epoch {state.epoch or 0:.2f} " +
                      " ".join(f"{k}={v:.4g}" for k, v in keep.items()), file=sys.stderr, flush=True)


def quiet(trainer, progress: str | None = None):
    """Swap transformers' stdout printer for `StderrLogs`; with `progress`, show the steps as that progress artifact."""
    from transformers.trainer_callback import PrinterCallback
    trainer.remove_callback(PrinterCallback)
    trainer.add_callback(StderrLogs())
    if progress:
        trainer.add_callback(TrainerProgress(progress))
    return trainer


class TrainerProgress(TrainerCallback):
    """A Trainer's optimizer steps (of `state.max_steps`) as `octopus-NAME-progress`."""

    def __init__(self, name: str) -> None:
        self.name, self.progress = name, None

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.progress = RunProgress(self.name, state.max_steps, state.global_step,
                                        f"{self.name}: optimizer steps done")

    def on_step_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.set(state.global_step)

    def on_train_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.done()
