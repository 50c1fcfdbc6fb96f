"""The rows of the evaluation table, registered by name: fixed agents, and one row per trained checkpoint.

    rows = table_rows(params)          # {"random": Row, "oracle": Row, "llm": Row, "octopus_sft": Row, ...}
    agent = rows["octopus_sft"].make(params, seed)

Fixed rows (`random`, `oracle`, `llm`) are registered with `register_row`. A stage that makes policy
checkpoints registers itself once with `register_checkpoint_stage(stage, checkpoint_of)`, and every
entry of `policies` then gets a row `NAME_<stage>` (`octopus_sft`) that loads `checkpoint_of(NAME)`
with that policy's model params, and a row `NAME_<stage>_names`: the same checkpoint with decoding
constrained to the scene's object names (`octopus.model.constrained`). The rlef stage's runs give
one row each for `rlef.policy`: `octopus_rlef` (the main run, the paper's PPO with the reward
model), `octopus_rlef_grpo`, `octopus_rlef_ppo_simulator`, ... for `rlef.extra`. A row's `baseline`
is the row it improves on (rlef rows: `POLICY_sft`; `_names` rows: the same checkpoint unconstrained);
the evaluate stage reports their difference paired over tasks.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from octopus import paths
from octopus.config import Params

#: the paper's OctoGibson task completion (Table 3, first value of each cell: the human plan score is not reproduced)
_COLS = ("Seen Env", "Unseen Env", "Follow", "Reason", "Total")
PAPER = {name: dict(zip(_COLS, vals)) for name, vals in {
    "GPT-4": (0.42, 0.46, 0.49, 0.27, 0.43),
    "GPT-4V": (0.40, 0.60, 0.42, 0.53, 0.45),
    "LLaMA GT (O+R)": (0.07, 0.13, 0.11, 0.00, 0.08),
    "CodeLLaMA GT (O+R)": (0.09, 0.20, 0.16, 0.00, 0.12),
    "TAPA (step-level)": (0.16, 0.13, 0.18, 0.07, 0.15),
    "EmbodiedGPT": (0.04, 0.27, 0.13, 0.00, 0.10),
    "Octopus (SFT only)": (0.11, 0.27, 0.16, 0.13, 0.15),
    "Octopus (SFT + RLEF)": (0.13, 0.33, 0.18, 0.20, 0.18),
}.items()}


@dataclass(frozen=True)
class Row:
    """One row of the table: how to build its agent for an episode, and what it is."""

    name: str
    make: Callable[[Params, int], Any]        # (params, seed) -> agent
    samples: Callable[[Params], bool]         # several seeds per task? (the agent samples)
    note: str = ""                            # listed under the table
    checkpoint: Path | None = None            # a trained policy's directory (loaded once per worker)
    stage: str | None = None                  # the DVC stage that makes the checkpoint (for error messages)
    baseline: str | None = None               # the row it is compared with, paired over tasks (rlef -> sft)


_FIXED: dict[str, Row] = {}
_STAGES: dict[str, tuple[Callable[[str], Path], dict[str, str]]] = {}


def register_row(row: Row) -> Row:
    _FIXED[row.name] = row
    return row


def register_checkpoint_stage(stage: str, checkpoint_of: Callable[[str], Path],
                              notes: dict[str, str] | None = None) -> None:
    """Every policy NAME gets a row NAME_<stage> loading `checkpoint_of(NAME)`; `notes`: policy -> row note."""
    _STAGES[stage] = (checkpoint_of, dict(notes or {}))


def table_rows(params: Params) -> dict[str, Row]:
    """Every row these params can put in the table."""
    from octopus.config import rlef_runs
    rows = dict(_FIXED)
    for stage, (checkpoint_of, notes) in _STAGES.items():
        for name in params.policies:
            rows[f"{name}_{stage}"] = _policy_row(name, stage, checkpoint_of(name), notes.get(name, ""))
            rows[f"{name}_{stage}_names"] = _policy_row(
                name, stage, checkpoint_of(name), f"{name}_{stage} with decoding constrained to the scene's object "
                "names inside registry(...) (an option; the paper grounds names after generation)", constrain=True,
                baseline=f"{name}_{stage}")
    policy = params.rlef.policy  # each rlef run is a row after the sft rows it improves
    for run in rlef_runs(params.rlef) if policy in params.policies else []:
        name = run.row(policy)
        note = ("Octopus after RLEF: PPO against the reward model, KL to the SFT policy (paper: Octopus (SFT + "
                "RLEF))" if run.name == "" and run.algorithm == "ppo" and run.reward == "model" and policy == "octopus"
                else f"{policy}_sft improved by rlef: offline DPO on the trees' preference pairs" if run.algorithm == "dpo"
                else f"{policy}_sft improved by rlef: {run.algorithm} with the {run.reward} reward")
        rows[name] = dataclasses.replace(_policy_row(policy, "rlef", paths.rlef_model(run.checkpoint_name(policy)),
                                                     note, name=name), stage="rlef", baseline=f"{policy}_sft")
    return rows


def _policy_row(policy: str, stage: str, checkpoint: Path, note: str, constrain: bool = False,
                name: str | None = None, baseline: str | None = None) -> Row:
    def make(p: Params, seed: int):
        from octopus.agents import make_agent
        agent = make_agent("policy", model=checkpoint, params=p.for_policy(policy), constrain_names=constrain,
                           views=p.evaluate.views, views_seed=p.evaluate.seed)
        agent.policy.generator_seed = seed
        return agent
    return Row(name or f"{policy}_{stage}" + ("_names" if constrain else ""), make, lambda p: p.for_policy(policy).model.temperature > 0,
               note or f"policies.{policy} trained by {stage}@{policy}", checkpoint, f"{stage}@{policy}", baseline)


def _plain(name: str, samples: Callable[[Params], bool], note: str, **kwargs: Callable[[Params, int], Any]) -> Row:
    def make(p: Params, seed: int):
        from octopus.agents import make_agent
        return make_agent(name, **{k: f(p, seed) for k, f in kwargs.items()})
    return register_row(Row(name, make, samples, note))


_plain("random", lambda p: True, "one random API call on a random visible object per step (a floor)",
       seed=lambda p, s: s)
_plain("oracle", lambda p: False, "the privileged planner that taught the data (a ceiling; not in the paper)")
_plain("llm", lambda p: p.collect.llm.temperature > 0,
       "an OpenAI-compatible endpoint given the full text message (paper: GPT-4)",
       params=lambda p, s: p.collect.llm, sim=lambda p, s: p.sim, seed=lambda p, s: s)
register_checkpoint_stage("sft", paths.sft_model, {
    "octopus": "Octopus, 10 views + instruction, trained by sft@octopus (paper: Octopus (SFT only))",
    "blind": "a text-only LM given the ground-truth Observed Objects and Relations instead of views, trained "
             "by sft@blind on the same steps (paper: LLaMA GT (O+R) / CodeLLaMA GT (O+R))"})
