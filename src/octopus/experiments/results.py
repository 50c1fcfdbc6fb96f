"""The README's results, written from the reports of the last run, so that no figure there is typed by hand.

    octopus results              # print the block
    octopus results --write      # replace the block between the README's markers

The block has two tables: the evaluation table (every row of `reports/evaluate.json` with 95% CIs and its
failed steps by cause) and the training stages (`reports/sft/*.json`, `reports/rlef.json`): parameters,
training minutes, throughput, peak memory and completion on the held-out training tasks.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

START, END = "<!-- results:start -->", "<!-- results:end -->"
CAUSES = ("name", "precondition", "reach", "targets", "format", "code")


class ResultsError(ValueError):
    """A report is missing or unreadable, or the README lacks the markers."""


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ResultsError(f"{path} is missing: run the pipeline first (dvc repro)") from None
    except (OSError, ValueError) as err:
        raise ResultsError(f"{path} is unreadable: {err}") from None


def _ci(d: dict, key: str) -> str:
    if d.get(key) is None:
        return "–"
    lo, hi = d.get(f"{key}_lo"), d.get(f"{key}_hi")
    return f"{d[key]:.2f} [{lo:.2f}, {hi:.2f}]" if lo is not None and hi is not None else f"{d[key]:.2f}"


def evaluation_table(evaluate: dict) -> list[str]:
    lines = ["| Row | Task completion [95% CI] | Executable code [95% CI] | Plan score | "
             "Failed steps: " + " / ".join(CAUSES) + " |", "|---|---|---|---|---|"]
    for row, groups in evaluate["agents"].items():
        a = groups["all"]
        steps = (evaluate.get("failures", {}).get(row) or {}).get("steps", {})
        lines.append(f"| {row} | {_ci(a, 'task_completion')} | {_ci(a, 'code_executability')} | "
                     f"{a['plan_score']:.2f} | {' / '.join(str(steps.get(c, 0)) for c in CAUSES)} |")
    return lines


def _held_out(rollouts: dict | None) -> str:
    if not rollouts:
        return "–"
    return f"{_ci(rollouts, 'task_completion')} / {rollouts['code_executability']:.2f} ({rollouts['tasks']} tasks)"


def _sft_reports(reports: Path) -> dict[str, dict]:
    """Policy name -> its sft report (the loss curves beside them left out)."""
    return {p.stem: _read(p) for p in sorted((reports / "sft").glob("*.json")) if not p.name.endswith("_curve.json")}


def _optional(path: Path) -> dict:
    return _read(path) if path.exists() else {}


def training_table(sft: dict[str, dict], rlef: dict) -> list[str]:
    lines = ["| Stage | Model | Parameters (trained) | Trained on | Train min | Throughput | Peak GB | "
             "Held-out completion [95% CI] / executable |", "|---|---|---|---|---|---|---|---|"]
    for name, s in sft.items():
        lines.append(f"| sft@{name} | {s['family']} | "
                     f"{s['parameters'] / 1e6:.1f}M ({s['trainable_parameters'] / 1e6:.1f}M) | "
                     f"{s['train_steps']} steps x {s['epochs']:g} epoch | {s['train_s'] / 60:.1f} | "
                     f"{s['samples_per_s']:.2f} samples/s | {s['peak_memory_mb'] / 1024:.1f} | "
                     f"{_held_out(s.get('val_rollouts'))} |")
    for row, r in rlef.items():
        updates = r.get("updates") or 0
        on = (f"{r['pairs']} pairs, {updates} updates" if "pairs" in r
              else f"{updates} updates x {r.get('responses', 0) // max(updates, 1)} responses")
        speed = f"{r['responses_per_s']:.2f} responses/s" if "responses_per_s" in r else "–"
        lines.append(f"| rlef ({row}) | {r.get('algorithm', '')}, reward: {r.get('reward', '')} | – | {on} | "
                     f"{r.get('train_s', 0) / 60:.1f} | {speed} | – | {_held_out(r.get('val_rollouts'))} |")
    return lines


def stage_minutes(sft: dict[str, dict], reward: dict, rlef: dict, evaluate: dict) -> str:
    """Wall minutes of the training and evaluation stages, from their reports' `wall_s` (rlef: its runs')."""
    walls = {**{f"sft@{name}": s.get("wall_s") for name, s in sft.items()}, "reward": reward.get("wall_s"),
             "rlef": sum(r.get("wall_s", 0) for r in rlef.values()), "evaluate": evaluate.get("meta", {}).get("wall_s")}
    return ", ".join(f"{stage} {wall / 60:.1f}" for stage, wall in walls.items() if wall)


def render(reports: Path = Path("reports")) -> str:
    """The README's results block from `reports/`."""
    evaluate = _read(reports / "evaluate.json")
    sft, rlef = _sft_reports(reports), _optional(reports / "rlef.json")
    tasks = next(iter(evaluate["agents"].values()))["all"]["tasks"]
    return "\n".join([
        START,
        f"Task completion on the {tasks} evaluation tasks (`reports/evaluate.md`; 95% bootstrap intervals over tasks):",
        "",
        *evaluation_table(evaluate),
        "",
        "The training stages (`reports/sft/*.json`, `reports/rlef.json`; held-out: training tasks the policy never "
        "saw, rolled out in the simulator, where settings are chosen):",
        "",
        *training_table(sft, rlef),
        "",
        f"Wall minutes per stage: {stage_minutes(sft, _optional(reports / 'reward.json'), rlef, evaluate)}.",
        END,
    ])


def replace_block(text: str, block: str) -> str:
    """`text` with its results block replaced by `block` (ResultsError without the markers)."""
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise ResultsError(f"the README has no results block ({START} ... {END})")
    return pattern.sub(lambda m: block, text, count=1)
