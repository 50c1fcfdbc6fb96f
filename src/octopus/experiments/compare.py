"""The workspace and every DVC experiment side by side: the metrics that matter and the params that differ.

    exps = collect(".")                       # workspace, its baseline commit, and that commit's experiments
    cmp = comparison(exps)                    # the three tables (params, evaluation, training)
    print(markdown(cmp))                      # what `octopus compare` writes to reports/compare/compare.md

What is read: each experiment's params.yaml and the metrics files dvc.yaml declares, as `dvc exp show`
sees them (DVC's own API, so queued, running and failed experiments are listed too):
- reports/evaluate.json  task completion per agent row (all, seen, unseen, follow, reason), executable
                         code, step success, plan score (paper Table 3)
- reports/sft/NAME.json  per policy: validation loss, parse rate of sampled responses, held-out
                         training tasks' completion and executable code (sft.val_rollouts)
- reports/reward.json    held-out pairwise accuracy of r_phi (and the trivial baseline's)
- reports/rlef.json      per RLEF run: final reward and KL, held-out completion and executable code, and
                         held-out completion minus the SFT policy's on the same tasks (paired)

A metric an experiment lacks (a stage not run, a queued or still running experiment) shows as "–". A
metrics file DVC cannot parse is a `CompareError` naming the experiment and the file.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: metrics files, relative to the repository root (the dvc.yaml `metrics` entries)
EVALUATE = "reports/evaluate.json"
REWARD = "reports/reward.json"
RLEF = "reports/rlef.json"
SFT = re.compile(r"^reports/sft/([^/]+)\.json$")

#: evaluation columns: (header, split, metric) of reports/evaluate.json's agents.ROW.SPLIT.METRIC
EVAL_COLUMNS = (("All", "all", "task_completion"), ("Seen", "seen", "task_completion"),
                ("Unseen", "unseen", "task_completion"), ("Follow", "follow", "task_completion"),
                ("Reason", "reason", "task_completion"), ("Executable code", "all", "code_executability"),
                ("Step success", "all", "step_success"), ("Plan score", "all", "plan_score"))
#: training columns; each stage's metrics file fills the ones it has (the rest are "–")
TRAIN_COLUMNS = ("Val loss", "Parse rate", "Pairwise acc", "Trivial acc", "Final reward", "Final KL",
                 "Held-out completion", "Held-out exec code", "Held-out completion minus SFT", "Minutes")
DASH = "–"


class CompareError(RuntimeError):
    """The experiments cannot be read (not a DVC repository, a metrics file DVC cannot parse)."""


@dataclass
class Experiment:
    """One column of `dvc exp show`: the workspace, a commit, or an experiment based on a commit."""

    name: str                      # "workspace", the branch/commit name, or the experiment's name
    rev: str                       # commit sha (short) or "workspace"
    kind: str                      # workspace | baseline | experiment
    state: str                     # an experiment's: success | queued | running | failed ("–" for the others)
    params: dict[str, Any] = field(default_factory=dict)      # flattened: "sft.mode" -> "full"
    metrics: dict[str, dict] = field(default_factory=dict)    # metrics file -> its parsed contents


def collect(root: str | Path = ".", all_commits: bool = False, num: int = 1) -> list[Experiment]:
    """The workspace, the last `num` commits and their experiments (every commit's with `all_commits`),
    through DVC's API: the same data as `dvc exp show --json`."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo
    try:
        with Repo(str(root)) as repo:
            states = repo.experiments.show(all_commits=all_commits, num=num, force=True)
            raw = [s.dumpd() for s in states]
    except DvcException as err:
        raise CompareError(f"{root}: cannot read the experiments: {err}") from None
    return from_exp_show(json.loads(json.dumps(raw, default=_jsonable)))


def _jsonable(o: Any) -> Any:
    """What `dvc exp show --json` writes for a non-JSON value: errors as {"type", "msg"}, the rest as text."""
    if isinstance(o, BaseException):
        return {"type": type(o).__name__, "msg": str(o)}
    return str(o)


def from_exp_show(raw: list[dict]) -> list[Experiment]:
    """Experiments from `dvc exp show --json`'s output (a list of baseline states with their experiments)."""
    out: list[Experiment] = []
    for state in raw:
        kind = "workspace" if state["rev"] == "workspace" else "baseline"
        out.append(_experiment(state, kind, DASH))  # the workspace and commits have no run state
        for rng in state.get("experiments") or []:
            executor = rng.get("executor") or {}
            for exp in rng.get("revs") or []:
                out.append(_experiment(exp, "experiment", executor.get("state") or "success",
                                       name=rng.get("name")))
    return out


UNFINISHED = ("queued", "running")


def _experiment(state: dict, kind: str, run_state: str, name: str | None = None) -> Experiment:
    rev = state["rev"]
    label = state.get("name") or name or ("workspace" if rev == "workspace" else rev[:7])
    data = state.get("data") or {}
    exp = Experiment(name=label, rev=rev if rev == "workspace" else rev[:7], kind=kind, state=run_state)
    for path, result in (data.get("params") or {}).items():
        if result.get("error"):
            raise CompareError(f"{label}: {path}: DVC cannot read it: {_msg(result['error'])}")
        exp.params.update(flatten(result.get("data") or {}))
    if run_state in UNFINISHED:
        return exp  # its metrics files are the baseline's, some half rewritten, until the run ends: "–"
    for path, result in (data.get("metrics") or {}).items():
        error = result.get("error")
        if error and _missing(error):
            continue  # not made yet (a stage not run, a queued experiment): its columns show "–"
        if error:
            raise CompareError(f"{label}: metrics file {path} is broken: {_msg(error)} "
                               "(fix or delete it, or rerun its stage)")
        exp.metrics[path] = result.get("data") or {}
    return exp


def _missing(error: Any) -> bool:
    return isinstance(error, dict) and error.get("type") in ("FileNotFoundError", "PathMissingError")


def _msg(error: Any) -> str:
    return error.get("msg") or error.get("type") or str(error) if isinstance(error, dict) else str(error)


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists and scalars are leaves."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _get(d: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d if isinstance(d, (int, float)) and not isinstance(d, bool) else None


@dataclass
class Comparison:
    """The three tables: rows of (label, {column: value or None})."""

    experiments: list[Experiment]
    param_names: list[str]                                    # the params that differ between them
    evaluation: list[tuple[str, str, dict[str, float | None]]]   # (experiment, agent row, columns)
    training: list[tuple[str, str, dict[str, float | None]]]     # (experiment, stage run, columns)


def differing_params(exps: list[Experiment]) -> list[str]:
    """Params whose value is not the same in every experiment that has params (a missing key counts)."""
    with_params = [e for e in exps if e.params]
    names = sorted({k for e in with_params for k in e.params})
    return [k for k in names
            if len({json.dumps(e.params.get(k), sort_keys=True) for e in with_params}) > 1]


def _eval_rows(exp: Experiment) -> list[tuple[str, dict]]:
    agents = (exp.metrics.get(EVALUATE) or {}).get("agents") or {}
    return [(agent, {h: _get(splits, split, metric) for h, split, metric in EVAL_COLUMNS})
            for agent, splits in agents.items()]


def _minutes(d: dict) -> float | None:
    s = _get(d, "wall_s") or _get(d, "train_s")
    return s / 60 if s is not None else None


def _train_rows(exp: Experiment) -> list[tuple[str, dict]]:
    rows: list[tuple[str, dict]] = []
    for path in sorted(exp.metrics):
        m = SFT.match(path)
        if m:
            d = exp.metrics[path]
            rows.append((f"sft@{m.group(1)}", {
                "Val loss": _get(d, "val_loss"), "Parse rate": _get(d, "quality", "parse_rate"),
                "Held-out completion": _get(d, "val_rollouts", "task_completion"),
                "Held-out exec code": _get(d, "val_rollouts", "code_executability"), "Minutes": _minutes(d)}))
    if REWARD in exp.metrics:
        d = exp.metrics[REWARD]
        rows.append(("reward", {"Pairwise acc": _get(d, "held_out_pairwise_accuracy"),
                                "Trivial acc": _get(d, "trivial", "pairwise_accuracy"), "Minutes": _minutes(d)}))
    for run, d in (exp.metrics.get(RLEF) or {}).items():
        if isinstance(d, dict):
            rows.append((f"rlef:{run}", {
                "Final reward": _get(d, "last", "reward"), "Final KL": _get(d, "last", "kl"),
                "Held-out completion": _get(d, "val_rollouts", "task_completion"),
                "Held-out exec code": _get(d, "val_rollouts", "code_executability"),
                "Held-out completion minus SFT": _get(d, "val_rollouts", "minus_sft", "task_completion", "mean"),
                "Minutes": _minutes(d)}))
    return rows


def comparison(exps: list[Experiment]) -> Comparison:
    """The tables; an experiment without a stage's metrics gets one row of "–" in its table."""
    def rows(extract) -> list[tuple[str, str, dict]]:
        return [(e.name, label, cols) for e in exps for label, cols in (extract(e) or [(DASH, {})])]
    return Comparison(exps, differing_params(exps), rows(_eval_rows), rows(_train_rows))


def fmt(value: Any, digits: int = 2) -> str:
    """A cell: "–" for missing, numbers rounded, lists and strings as YAML would show them."""
    if value is None:
        return DASH
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return str(value)


def tables(cmp: Comparison) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, headers, rows of cells) for each table, shared by the terminal and the Markdown output."""
    params = ("Params that differ", ["Experiment", "rev", "State", *cmp.param_names],
              [[e.name, e.rev, e.state, *(_param(e.params.get(k)) for k in cmp.param_names)]
               for e in cmp.experiments])
    evaluation = _drop_empty("Evaluation: task completion per split (paper Table 3)", ["Experiment", "Agent"],
                             [h for h, _, _ in EVAL_COLUMNS], cmp.evaluation)
    training = _drop_empty("Training: sft, reward, rlef", ["Experiment", "Stage"], list(TRAIN_COLUMNS), cmp.training)
    return [params, evaluation, training]


def _param(value: Any) -> str:
    return DASH if value is None else fmt(value) if isinstance(value, (bool, list, dict)) else str(value)


def _drop_empty(title: str, keys: list[str], columns: list[str], rows: list[tuple[str, str, dict]]):
    """A metrics table without the columns no row has a value in."""
    digits = {"Minutes": 1, "Val loss": 3, "Final KL": 1}
    kept = [h for h in columns if any(cols.get(h) is not None for _, _, cols in rows)]
    return (title, [*keys, *kept], [[exp, label, *(fmt(cols.get(h), digits.get(h, 2)) for h in kept)]
                                    for exp, label, cols in rows])


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(cmp: Comparison, plots: list[str] | None = None) -> str:
    lines = ["# Experiments compared", "",
             f"{len(cmp.experiments)} experiments (`octopus compare`; the workspace, its baseline commit and the "
             "commit's DVC experiments). Missing metrics show as –.", ""]
    for title, headers, rows in tables(cmp):
        lines += [f"## {title}", ""]
        if not rows:
            lines += ["(no metrics yet)", ""]
            continue
        lines += ["| " + " | ".join(map(_md_cell, headers)) + " |", "|" + " --- |" * len(headers)]
        lines += ["| " + " | ".join(map(_md_cell, r)) + " |" for r in rows]
        lines.append("")
    if plots:
        lines += ["## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in plots] + [""]
    return "\n".join(lines)


def print_tables(cmp: Comparison, console: Any) -> None:
    """The tables on a rich console."""
    from rich.table import Table
    for title, headers, rows in tables(cmp):
        table = Table(title=title, title_justify="left")
        for i, h in enumerate(headers):
            table.add_column(h, justify="left" if i < 2 else "right", no_wrap=i < 2)
        for r in rows:
            table.add_row(*r)
        console.print(table)

