"""Build, prove and cache the task suite (see `octopus.sim.tasks` for what a task is).

Building proves every candidate task solvable with the planner, so it takes a while; the result is
cached on disk keyed by everything it depends on (params, the package version and the source of the
simulator modules), and `octopus tasks export` writes it as the pinned suite snapshot under `data/`.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict
from importlib import resources
from pathlib import Path
from typing import Callable

from octopus.config import SimParams, TasksParams
from octopus.files import write_atomic
from octopus.sim import content
from octopus.sim.layout import LayoutError, LayoutParams
from octopus.sim.planner import plan
from octopus.sim.tasks import Suite, Task, assign_splits, behavior_tasks, published_tasks, task_list_bytes

_SIM_MODULES = ("world", "actions", "layout", "planner", "tasks", "goals", "content", "procedural", "tasks_stage")


def layout_params(sim: SimParams) -> LayoutParams:
    return LayoutParams(reach_m=sim.reach_m, hands=sim.hands, distractors=sim.distractors, seed=sim.seed)


def prove(task: Task, sim: SimParams) -> str | None:
    """None if the planner solves the task within the step budget, else why the task is excluded."""
    try:
        world, goal = task.build(layout_params(sim))
    except (LayoutError, content.ContentError, KeyError, ValueError) as err:
        return f"cannot build: {err}"
    except Exception as err:  # noqa: BLE001 - bddl raises its own error types for scope problems
        return f"cannot build: {type(err).__name__}: {err}"
    if goal.satisfied():
        return "goal already holds at the start"
    result = plan(world, goal, max_steps=sim.max_steps, max_expansions=sim.planner_expansions)
    if not result.solved:
        return f"planner: {result.reason}"
    task.plan_steps = len(result.steps)
    return None


def build_suite(sim: SimParams, tp: TasksParams, progress: Callable[[int, int], None] | None = None,
                task_list: str | None = None) -> Suite:
    published, excluded = published_tasks(task_list)
    names = {t.activity for t in published}
    extra = behavior_tasks(content.activities(), names, set(tp.unseen_scenes))[: tp.behavior_extra]
    candidates, kept = published + extra, []
    for n, task in enumerate(candidates):
        why = prove(task, sim)
        if why is None:
            kept.append(task)
        else:
            excluded.append((task.id, why))
        if progress:
            progress(n + 1, len(candidates))
    excluded += assign_splits(kept, list(tp.unseen_scenes), tp.eval_seen, tp.eval_unseen, tp.eval_reason, tp.seed)
    # procedural train tasks come last, built on the train split just chosen (never on evaluation content)
    from octopus.sim.procedural import procedural_tasks
    more = procedural_tasks(kept, tp.procedural, sim, tp.seed, prove,
                            (lambda k, n: progress(len(candidates) + k, len(candidates) + n)) if progress else None,
                            short_names=tp.short_names)
    return Suite(kept + more, excluded)


def _fingerprint(sim: SimParams, tp: TasksParams, task_list: str | None) -> str:
    h = hashlib.sha256(json.dumps([asdict(sim), asdict(tp)], sort_keys=True, default=str).encode())
    # the list's content, not its path: the pinned copy under data/ and the vendored one share a cache
    h.update(task_list_bytes(task_list))
    for mod in _SIM_MODULES:
        h.update(resources.files("octopus.sim").joinpath(f"{mod}.py").read_bytes())
    return h.hexdigest()[:16]


def cache_dir() -> Path:
    return Path(os.environ.get("OCTOPUS_CACHE", Path.home() / ".cache" / "octopus"))


def load_suite(sim: SimParams, tp: TasksParams, progress: Callable[[int, int], None] | None = None,
               task_list: str | None = None) -> Suite:
    """The suite for these params, from the cache when present (built and cached otherwise)."""
    path = cache_dir() / f"suite-{_fingerprint(sim, tp, task_list)}.json"
    if path.exists():
        try:
            data = json.loads(path.read_text())
            if data["meta"]["sha256"] != _content_digest(data):  # an edited or bit-flipped file that still parses
                raise ValueError("content digest differs")
            return Suite([Task(**t) for t in data["tasks"]], [tuple(e) for e in data["excluded"]])
        except (ValueError, KeyError, TypeError):
            path.unlink(missing_ok=True)  # a corrupt cache is rebuilt, never trusted
    t0 = time.perf_counter()
    suite = build_suite(sim, tp, progress, task_list)
    write_suite(suite, path, {"build_s": round(time.perf_counter() - t0, 1),
                              "sha256": _content_digest({"tasks": [t.to_dict() for t in suite.tasks],
                                                         "excluded": suite.excluded})})
    return suite


def _content_digest(data: dict) -> str:
    """sha256 of a suite file's tasks and excluded list (what the cache must give back unchanged)."""
    return hashlib.sha256(json.dumps([data["tasks"], data["excluded"]], sort_keys=True).encode()).hexdigest()


class SnapshotError(RuntimeError):
    """The suite snapshot is missing or unreadable; the message says which file and what to run."""


def read_snapshot(path: str | Path) -> Suite:
    """The task suite snapshot written by the tasks stage (`data/tasks/tasks.json`)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        return Suite([Task(**t) for t in data["tasks"]], [tuple(e) for e in data.get("excluded", [])])
    except FileNotFoundError:
        raise SnapshotError(f"{path}: no task suite snapshot (run `dvc repro tasks`)") from None
    except (ValueError, KeyError, TypeError) as err:
        raise SnapshotError(f"{path}: not a task suite snapshot ({err})") from None


def write_suite(suite: Suite, path: Path, meta: dict | None = None) -> None:
    """Write atomically (temporary name, then rename)."""
    write_atomic(path, json.dumps({"meta": meta or {}, "tasks": [t.to_dict() for t in suite.tasks],
                                   "excluded": suite.excluded}, indent=1))
