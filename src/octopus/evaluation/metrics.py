"""Table 3 metrics from episode records, with bootstrap confidence intervals over tasks.

    summary = summarize(records)                    # one agent's EpisodeRecords (or their dicts)
    summary["unseen"]["task_completion"]            # {"mean": 0.33, "lo": 0.13, "hi": 0.60}
    rows = per_task(records)                        # [{"task_id", "split", "category", "success_rate", ...}]
    failure_counts(records)                         # {"steps": {"name": 12, ...}, "episodes": {...}}
    paired_difference(sft, rlef)["all"]["task_completion"]   # rlef - sft over the tasks both ran, with its CI

Groups: all, seen (split eval_seen), unseen (eval_unseen), follow, reason. Per group:
- task_completion: share of episodes whose task succeeded (a crashed episode is a failure);
- code_executability: share of steps whose response parsed and whose code ran without error (the
  paper's "written code successfully executed"), over every step taken;
- step_success: share of steps whose Target States held;
- mean_steps_to_success: mean steps over successful episodes (None when none succeeded);
- plan_score: mean best goal progress (the automatic stand-in for the paper's human plan score).

Tasks are the unit of resampling: a task's value is the mean over its episodes (seeds), the group's
task-level means weigh every task equally, and step-level rates pool the steps of the resampled tasks
(ratio estimators). Percentile bootstrap, vectorised: 60 tasks x 1000 resamples take milliseconds.

Two rows on the same tasks are compared by `paired_difference`: each resample draws tasks once and
evaluates both rows on them, so the task-to-task spread (most of each row's own CI) cancels and the
interval is that of the difference itself; two overlapping per-row CIs say little about it.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable

import numpy as np

from octopus.evaluation.rollouts import EpisodeRecord, StepRecord

GROUPS: dict[str, Callable[[EpisodeRecord], bool]] = {
    "all": lambda r: True,
    "seen": lambda r: r.split == "eval_seen",
    "unseen": lambda r: r.split == "eval_unseen",
    "follow": lambda r: r.category == "follow",
    "reason": lambda r: r.category == "reason",
}
METRICS = ("task_completion", "code_executability", "step_success", "mean_steps_to_success", "plan_score")
Interval = dict[str, float]


#: step failure cause -> fragments of the simulator's error message (first match wins; see octopus.sim.actions)
CAUSES: dict[str, tuple[str, ...]] = {
    "format": ("Response format error",),
    "name": ("there is no object called",),
    "reach": ("out of reach", "cannot MoveBot to"),
    "precondition": ("is closed", "not in the robot's hands", "hands are full", "cannot be grasped", "already in the",
                     "too large to fit", "not a container", "cannot be ", "cannot put"),
    "targets": ("Target states not reached",),
}


def step_cause(step: StepRecord) -> str:
    """Why a step failed: format, name (an object the scene lacks), reach, precondition (closed, hands, abilities),
    targets (the code ran, its Target States did not hold), code (any other error: sandbox, Python, API
    arguments); "ok" when its targets were met."""
    if step.target_states_met:
        return "ok"
    error = step.error or ""
    for cause, fragments in CAUSES.items():
        if any(f in error for f in fragments):
            return cause
    return "code"


def failure_counts(records: list[EpisodeRecord | dict]) -> dict[str, dict[str, int]]:
    """Failed steps by cause, and failed episodes by the cause of their last step ("planning": every step
    met its targets, yet the task was not completed within the step budget; "crashed"; "no_steps")."""
    steps: dict[str, int] = defaultdict(int)
    episodes: dict[str, int] = defaultdict(int)
    for r in as_records(records):
        for s in r.steps:
            if not s.target_states_met:
                steps[step_cause(s)] += 1
        if r.success:
            continue
        if r.crashed:
            episodes["crashed"] += 1
        elif not r.steps:
            episodes["no_steps"] += 1
        else:
            last = step_cause(r.steps[-1])
            episodes["planning" if last == "ok" else last] += 1
    return {"steps": dict(sorted(steps.items())), "episodes": dict(sorted(episodes.items()))}


def as_records(records: list[EpisodeRecord | dict]) -> list[EpisodeRecord]:
    return [r if isinstance(r, EpisodeRecord) else EpisodeRecord.from_dict(r) for r in records]


def _by_task(records: list[EpisodeRecord]) -> dict[str, list[EpisodeRecord]]:
    tasks: dict[str, list[EpisodeRecord]] = defaultdict(list)
    for r in records:
        tasks[r.task_id].append(r)
    return dict(sorted(tasks.items()))


def _task_arrays(tasks: dict[str, list[EpisodeRecord]]) -> dict[str, np.ndarray]:
    """Per task: episode means (success, plan score) and step/episode counts (numerators, denominators)."""
    rows = []
    for eps in tasks.values():
        steps = [s for e in eps for s in e.steps]
        won = [e for e in eps if e.success]
        rows.append((np.mean([e.success for e in eps]), np.mean([e.plan_score for e in eps]),
                     sum(s.parsed and s.executed for s in steps), sum(s.target_states_met for s in steps),
                     len(steps), sum(len(e.steps) for e in won), len(won)))
    cols = np.asarray(rows, dtype=np.float64).reshape(-1, 7).T
    return dict(zip(("success", "plan", "executed", "met", "steps", "won_steps", "won"), cols))


def _resample_counts(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n) how often each task is drawn in each resample (tasks drawn with replacement)."""
    idx = rng.integers(0, n, size=(n_boot, n)) + n * np.arange(n_boot)[:, None]
    return np.bincount(idx.ravel(), minlength=n_boot * n).reshape(n_boot, n).astype(np.float64)


def _interval(point: float | None, boot: np.ndarray, ci: float) -> Interval | None:
    if point is None:
        return None
    boot = boot[np.isfinite(boot)]
    if boot.size == 0:
        return {"mean": point, "lo": point, "hi": point}
    lo, hi = np.quantile(boot, [(1 - ci) / 2, 1 - (1 - ci) / 2])
    return {"mean": point, "lo": float(lo), "hi": float(hi)}


def _ratio_draws(num: np.ndarray, den: np.ndarray, counts: np.ndarray) -> tuple[float | None, np.ndarray]:
    """A pooled rate (None without a denominator) and its value in every resample."""
    total = den.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        return (float(num.sum() / total) if total > 0 else None), (counts @ num) / (counts @ den)


def _ratio(num: np.ndarray, den: np.ndarray, counts: np.ndarray, ci: float) -> Interval | None:
    return _interval(*_ratio_draws(num, den, counts), ci)


def _check_bootstrap(n_boot: int, ci: float) -> None:
    if n_boot < 1:
        raise ValueError(f"n_boot: must be >= 1, got {n_boot}")
    if not 0 < ci < 1:
        raise ValueError(f"ci: must be between 0 and 1 (exclusive), got {ci}")


def _mean(values: np.ndarray, counts: np.ndarray, ci: float) -> Interval:
    return _interval(float(values.mean()), counts @ values / values.size, ci)  # type: ignore[return-value]


def _group(records: list[EpisodeRecord], n_boot: int, seed: int, ci: float) -> dict[str, Any]:
    tasks = _by_task(records)
    out: dict[str, Any] = {"tasks": len(tasks), "episodes": len(records),
                           "crashed": sum(r.crashed for r in records), "steps": sum(len(r.steps) for r in records)}
    if not tasks:
        return {**out, **{m: None for m in METRICS}}
    a = _task_arrays(tasks)
    counts = _resample_counts(len(tasks), n_boot, np.random.default_rng(seed))
    return {**out,
            "task_completion": _mean(a["success"], counts, ci),
            "code_executability": _ratio(a["executed"], a["steps"], counts, ci),
            "step_success": _ratio(a["met"], a["steps"], counts, ci),
            "mean_steps_to_success": _ratio(a["won_steps"], a["won"], counts, ci),
            "plan_score": _mean(a["plan"], counts, ci)}


def summarize(records: list[EpisodeRecord | dict], n_boot: int = 1000, seed: int = 0,
              ci: float = 0.95) -> dict[str, dict[str, Any]]:
    """Metrics of ONE agent's episodes per group: counts and {"mean", "lo", "hi"} (None when undefined)."""
    _check_bootstrap(n_boot, ci)
    recs = as_records(records)
    agents = sorted({r.agent for r in recs})
    if len(agents) > 1:
        raise ValueError(f"records of several agents ({', '.join(agents)}): summarize one agent at a time")
    return {name: _group([r for r in recs if keep(r)], n_boot, seed, ci) for name, keep in GROUPS.items()}


def paired_difference(base: list[EpisodeRecord | dict], other: list[EpisodeRecord | dict], n_boot: int = 1000,
                      seed: int = 0, ci: float = 0.95) -> dict[str, dict[str, Any]]:
    """`other` minus `base` per group on the tasks both ran (paired over tasks): {"tasks", metric: {"mean",
    "lo", "hi"}} for each metric but mean steps (undefined where either row completes nothing)."""
    _check_bootstrap(n_boot, ci)
    a_recs, b_recs = as_records(base), as_records(other)
    out: dict[str, dict[str, Any]] = {}
    for name, keep in GROUPS.items():
        a_tasks = _by_task([r for r in a_recs if keep(r)])
        b_tasks = _by_task([r for r in b_recs if keep(r)])
        common = sorted(set(a_tasks) & set(b_tasks))
        group: dict[str, Any] = {"tasks": len(common)}
        if not common:
            out[name] = {**group, **{m: None for m in METRICS if m != "mean_steps_to_success"}}
            continue
        a = _task_arrays({t: a_tasks[t] for t in common})
        b = _task_arrays({t: b_tasks[t] for t in common})
        counts = _resample_counts(len(common), n_boot, np.random.default_rng(seed))
        for metric, key in (("task_completion", "success"), ("plan_score", "plan")):
            group[metric] = _mean(b[key] - a[key], counts, ci)
        for metric, key in (("code_executability", "executed"), ("step_success", "met")):
            (pa, da), (pb, db) = _ratio_draws(a[key], a["steps"], counts), _ratio_draws(b[key], b["steps"], counts)
            group[metric] = None if pa is None or pb is None else _interval(pb - pa, db - da, ci)
        out[name] = group
    return out


def flatten(group: dict[str, Any]) -> dict[str, Any]:
    """One group of `summarize()` as flat numbers: counts, and each metric as metric, metric_lo, metric_hi."""
    flat: dict[str, Any] = {k: v for k, v in group.items() if k not in METRICS}
    for m in METRICS:
        v = group.get(m)
        flat[m], flat[f"{m}_lo"], flat[f"{m}_hi"] = (v["mean"], v["lo"], v["hi"]) if v else (None, None, None)
    return flat


def per_task(records: list[EpisodeRecord | dict]) -> list[dict[str, Any]]:
    """One row per task of ONE agent (sorted by id): episodes, crashed, success rate over seeds, mean plan score."""
    rows = []
    for task_id, eps in _by_task(as_records(records)).items():
        rows.append({"task_id": task_id, "split": eps[0].split, "category": eps[0].category, "scene": eps[0].scene,
                     "episodes": len(eps), "crashed": sum(e.crashed for e in eps),
                     "success_rate": float(np.mean([e.success for e in eps])),
                     "plan_score": float(np.mean([e.plan_score for e in eps]))})
    return rows
