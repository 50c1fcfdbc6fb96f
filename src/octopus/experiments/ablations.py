"""The paper's ablations (Fig. 6) as queued DVC experiments: `dvc exp run --queue -S ... -n NAME`, then
`dvc queue start` runs them one after another in temporary copies of the workspace.

    octopus ablations --dry-run            # the dvc commands, nothing queued
    octopus ablations                      # queue all of them
    octopus ablations --only vision-shuffle,vision-noise --start
    octopus compare                        # once they ran: every experiment side by side

Each ablation changes only the `octopus` policy (`policies.octopus.*`), so `sft@blind` stays cached, and
evaluates only the octopus rows (`evaluate.agents`: its SFT row and a row per RLEF run it trains): the
random, oracle and blind rows do not depend on what an ablation changes and are in the baseline's table.
RLEF on/off is in every table already (`octopus_sft` next to `octopus_rlef*`), and so is "trained without
views" (`blind_sft`: the same steps, no views, the ground-truth objects and relations as text).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class Ablation:
    name: str            # the experiment's name (`dvc exp run -n`)
    figure: str          # which panel of the paper's Fig. 6 it reproduces (empty: not in the paper)
    what: str            # what it changes, in words
    sets: dict[str, Any]  # param path -> value (`-S path=value`)
    add_runs: tuple[str, ...] = ()  # RLEF runs added to the params file's `rlef.extra`


ABLATIONS = {a.name: a for a in (
    # Fig. 6a: the finetune modes on the pretrained LM (the default, `full`, is the baseline's row)
    Ablation("ft-connector", "6a", "sft trains only the vision encoder and connector; the pretrained LM is frozen",
             {"policies.octopus.sft.mode": "connector"}),
    Ablation("ft-connector-lora", "6a", "sft trains the vision encoder and connector, and LoRA adapters on the LM",
             {"policies.octopus.sft.mode": "connector_lm", "policies.octopus.sft.lora": True}),
    # Fig. 6b: model size, each at the settings it trains best with (the from-scratch preset on every step)
    Ablation("size-tiny", "6b", "the from-scratch tiny preset (~2M parameters, no pretrained LM) on every "
             "training step at its learning rate",
             {"policies.octopus.model.preset": "tiny", "policies.octopus.sft.learning_rate": 0.002,
              "policies.octopus.sft.batch_size": 8, "policies.octopus.sft.max_samples": 1000000}),
    Ablation("size-gemma", "6b", "Gemma-3-270M (268M parameters) instead of SmolLM2-135M as the LM",
             {"policies.octopus.model.preset": "gemma3-270m"}),
    Ablation("design-idefics", "", "the paper's Flamingo design (Idefics: Perceiver Resampler, gated cross-attention "
             "every 5 layers) on the same LM instead of SmolVLM's view tokens",
             {"policies.octopus.model.family": "idefics"}),
    Ablation("vision-shuffle", "6c", "evaluation with the 10 views in a random order at every step",
             {"evaluate.views": "shuffle"}),
    Ablation("vision-noise", "6c", "evaluation with every view replaced by uniform noise",
             {"evaluate.views": "noise"}),
    Ablation("rlef-rloo", "", "an RLOO run next to the configured RLEF runs (ppo by default)", {},
             add_runs=("rloo",)),
    Ablation("rlef-simulator", "", "RLEF rewarded by the simulator (execute the response) instead of r_phi",
             {"rlef.reward": "simulator"}),
)}


def _has(tree: Any, path: str) -> bool:
    for key in path.split("."):
        if not isinstance(tree, dict) or key not in tree:
            return False
        tree = tree[key]
    return True


def _value(v: Any) -> str:
    """A value in the override grammar `-S` reads (Hydra's): lists as [a,b], strings bare."""
    if isinstance(v, list):
        return "[" + ",".join(map(_value, v)) + "]"
    if isinstance(v, bool):
        return str(v).lower()
    return str(v)


def overrides(sets: dict[str, Any], params: dict) -> list[str]:
    """`-S` values; a param missing from params.yaml is added with Hydra's `+` (DVC refuses it otherwise)."""
    return [f"{'' if _has(params, k) else '+'}{k}={_value(v)}" for k, v in sets.items()]


def exp_run_command(name: str, sets: dict[str, Any], params: dict) -> list[str]:
    """`dvc exp run --queue -n NAME -S k=v ...` for an experiment that sets `sets` on top of `params`."""
    cmd = ["dvc", "exp", "run", "--queue", "-n", name]
    for o in overrides(sets, params):
        cmd += ["-S", o]
    return cmd


def _set(tree: dict, path: str, value: Any) -> dict:
    """A copy of `tree` with the dotted `path` set to `value` (what `-S path=value` does to params.yaml)."""
    head, _, rest = path.partition(".")
    node = dict(tree.get(head) or {}) if rest else value
    return {**tree, head: _set(node, rest, value) if rest else node}


def ablation_sets(a: Ablation, params: dict) -> dict[str, Any]:
    """What the experiment sets on top of `params`: the ablation's own values, `rlef.extra` with its added runs,
    and `evaluate.agents`: the policy's SFT row and one row per RLEF run the experiment trains (from its own
    params, so that a row is never asked of a model no stage makes)."""
    from octopus.config import parse_params, rlef_runs

    sets = dict(a.sets)
    if a.add_runs:
        extra = list((params.get("rlef") or {}).get("extra") or [])
        sets["rlef.extra"] = extra + [r for r in a.add_runs if r not in extra]
    merged = params
    for k, v in sets.items():
        merged = _set(merged, k, v)
    p = parse_params(merged)
    policy = p.rlef.policy
    return {"evaluate.agents": [f"{policy}_sft", *(r.row(policy) for r in rlef_runs(p.rlef))], **sets}


def commands(names: list[str], params_file: Path = Path("params.yaml")) -> list[list[str]]:
    """The `dvc exp run --queue` command of each named ablation (KeyError naming an unknown one; ConfigError
    when the params file, with the ablation's values, is not valid)."""
    unknown = [n for n in names if n not in ABLATIONS]
    if unknown:
        raise KeyError(f"unknown ablation {unknown[0]!r}; known: {', '.join(ABLATIONS)}")
    params = (yaml.safe_load(params_file.read_text()) if params_file.is_file() else {}) or {}
    return [exp_run_command(name, ablation_sets(ABLATIONS[name], params), params) for name in names]


def queue(names: list[str], start: bool = False, jobs: int = 1,
          params_file: Path = Path("params.yaml")) -> list[list[str]]:
    """Queue the ablations (and start the queue's workers); returns the commands run. Raises
    CalledProcessError with DVC's message when one is refused."""
    cmds = commands(names, params_file)
    if start:
        cmds.append(["dvc", "queue", "start", "-j", str(jobs)])
    for cmd in cmds:  # this environment's DVC, whatever is first on PATH
        run_leaving_children([sys.executable, "-m", "dvc", *cmd[1:]])
    return cmds


def run_leaving_children(argv: list[str]) -> str:
    """Run a command that may leave a process behind (`dvc queue start` starts a worker that outlives it) and
    return its output once the command itself exits; CalledProcessError with the output when it fails. The
    output goes to a file, not a pipe: reading a pipe would wait for every process holding it, the worker
    too, i.e. for the whole queue."""
    with tempfile.TemporaryFile() as out:
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        out.seek(0)
        text = out.read().decode(errors="replace")
    if r.returncode:
        raise subprocess.CalledProcessError(r.returncode, argv, output=text)
    return text
