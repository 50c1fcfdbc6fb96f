"""How Octopus scales with model size and training data on this simulator (`octopus bench scaling`; paper Fig. 6b).

    report = run_scaling(params, presets=["tiny", "small"], fractions=[0.25, 1.0])

For each (preset, share of the training tasks): the sft stage's own `train_sft` on that share of the
dataset's tasks (the held-out validation tasks stay the same for every run), then greedy rollouts of the
checkpoint on the held-out training tasks (`sft.val_rollouts`, what settings are chosen on) and on the
60-task evaluation suite (what is reported), names grounded as in the paper's row. Each row: parameters,
training steps and minutes, validation loss, completion with its 95% bootstrap CI, executable code, and
failed steps by cause. Numbers, not a test: minutes to hours on 2 CPU cores.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Callable

from octopus import paths
from octopus.config import Params
from octopus.data import builders


def _suite_figures(checkpoint: Path, params: Params) -> dict[str, Any]:
    from octopus.agents.learned import PolicyAgent
    from octopus.evaluation.metrics import failure_counts, summarize
    from octopus.evaluation.rollouts import rollout_batch
    from octopus.sim.tasks_stage import read_snapshot

    tasks = read_snapshot(paths.SUITE_TASKS).evaluation()
    agent = PolicyAgent(checkpoint, params=params)
    records = rollout_batch(agent, tasks, params, name="scaling", live=16)
    s = summarize(records, n_boot=params.evaluate.n_boot, seed=params.evaluate.seed)
    out: dict[str, Any] = {"tasks": len(records)}
    for group in ("all", "seen", "unseen", "follow", "reason"):
        v = s[group]["task_completion"]
        out[f"completion_{group}"] = v["mean"] if v else None
        if group == "all" and v:
            out["completion_lo"], out["completion_hi"] = v["lo"], v["hi"]
    ex = s["all"]["code_executability"]
    out["executable"] = ex["mean"] if ex else None
    out["failures"] = failure_counts(records)
    return out


def subset_split(steps: list[dict], fraction: float, params: Params) -> tuple[list[dict], list[dict]]:
    """(train, val): `fraction` of the training tasks (seeded, nested across fractions) and the stage's own
    held-out validation tasks, the same for every fraction."""
    train, val = builders.sft_split(steps, params.sft.val_fraction, params.sft.seed)
    ids = builders.held_out_tasks(train, len(train), params.sft.seed + 1)
    keep = set(ids[:max(1, round(len(ids) * fraction))])
    return [r for r in train if r["task_id"] in keep], val


def run_scaling(params: Params, presets: list[str], fractions: list[float], out_dir: str | Path | None = None,
                log: Callable[[str], None] = print) -> dict[str, Any]:
    from octopus.training import sft

    steps = builders.read_steps(paths.DATASET, params.sft.rows)
    rows = []
    root = Path(out_dir or tempfile.mkdtemp(prefix="octopus-scaling-"))
    for preset in presets:
        for fraction in fractions:
            p = replace(params, model=replace(params.model, preset=preset),
                        sft=replace(params.sft, report_to="none"))
            name = f"{preset}-{fraction:g}"
            log(f"scaling: {name}")
            t0 = time.perf_counter()
            out = sft.train_sft(p, paths.DATASET, root / name, log=log, quality_samples=0,
                                suite_path=paths.SUITE_TASKS, run_name=f"scaling-{name}",
                                split=subset_split(steps, fraction, p))
            m = out["metrics"]
            v = m["val_rollouts"] or {}
            row = {"preset": preset, "fraction": fraction, "parameters": m["parameters"],
                   "train_tasks": m["train_tasks"], "train_steps": m["train_steps"], "epochs": m["epochs"],
                   "train_min": round(m["train_s"] / 60, 2), "val_loss": m["val_loss"],
                   "val_completion": v.get("task_completion"), "val_completion_lo": v.get("task_completion_lo"),
                   "val_completion_hi": v.get("task_completion_hi"), "val_executable": v.get("code_executability"),
                   "val_by_source": {k: {"tasks": f["tasks"], "completion": f["task_completion"],
                                         "executable": f["code_executability"]}
                                     for k, f in (v.get("by_source") or {}).items()},
                   "suite": _suite_figures(root / name, p), "wall_min": round((time.perf_counter() - t0) / 60, 2)}
            log(f"scaling: {name}: {row}")
            rows.append(row)
    return {"rows": rows, "params": {"sft": asdict(params.sft), "model": asdict(params.model)}}


def markdown(report: dict[str, Any]) -> str:
    head = ["preset", "parameters", "train tasks", "train steps", "train min", "val loss",
            "held-out train tasks: completion [95% CI]", "suite: completion [95% CI]", "suite: executable code",
            "suite: failed steps by cause"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in report["rows"]:
        s = r["suite"]

        def ci(m, lo, hi):
            return "–" if m is None else f"{m:.2f} [{lo:.2f}, {hi:.2f}]"
        lines.append("| " + " | ".join([
            r["preset"], f"{r['parameters'] / 1e6:.1f}M", str(r["train_tasks"]), str(r["train_steps"]),
            f"{r['train_min']:.1f}", f"{r['val_loss']:.3f}",
            ci(r["val_completion"], r["val_completion_lo"], r["val_completion_hi"]),
            ci(s.get("completion_all"), s.get("completion_lo"), s.get("completion_hi")),
            f"{s['executable']:.2f}" if s.get("executable") is not None else "–",
            ", ".join(f"{k} {v}" for k, v in s["failures"]["steps"].items())]) + " |")
    return "\n".join(lines) + "\n"
