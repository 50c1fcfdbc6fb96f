"""Trial-and-error trees (paper §4.1, Fig. 4d): a teacher explores one task, every attempt is a node.

From each state the teacher proposes `samples_per_node` responses; each is executed from that same
state (siblings). The first that reaches its Target States becomes the parent of the next state;
failed attempts reset the world to the parent's state (the simulator's rule), and the last failure's
error is what the next proposal reads. Proposals from one state count as one step of the episode's
budget (`sim.max_steps`). When the task ends, the task-level rule labels the tree: a step is positive
(label 1) only if it met its targets AND the task was completed; every step of a failed task is negative.

    rows, stats = explore(task, params, teacher, episode=0)
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

from octopus.agents import Teacher
from octopus.config import Params
from octopus.data.schema import encode_views
from octopus.sim.env import sanitize
from octopus.sim.episode import Episode, StepResult
from octopus.sim.tasks import Task


@dataclass
class _Checkpoint:
    """Everything an `Episode` changes in a step, so siblings can all start from one state."""

    world: Any
    steps: int
    subtasks: tuple | None
    previous_code: str | None
    error: str | None
    success: bool

    @classmethod
    def take(cls, ep: Episode) -> "_Checkpoint":
        return cls(ep.world.snapshot(), ep.steps, ep.subtasks, ep.previous_code, ep.error, ep.success)

    def restore(self, ep: Episode) -> None:
        ep.world.restore(self.world)
        ep.steps, ep.subtasks, ep.previous_code = self.steps, self.subtasks, self.previous_code
        ep.error, ep.success = self.error, self.success


class _Views:
    """PNG-encoded views of the current state, encoded once per distinct rendered state."""

    def __init__(self, episode: Episode, params: Params) -> None:
        from octopus.sim.render import SceneRenderer
        self.renderer = SceneRenderer(episode.world, params.render, seed=params.sim.seed)
        self._rgb: np.ndarray | None = None
        self._encoded: list[dict] = []
        self.encoded = 0

    def current(self) -> list[dict]:
        rgb = self.renderer.observe().rgb
        if rgb is not self._rgb:  # the renderer returns its cached array until the world changes
            self._rgb, self._encoded = rgb, encode_views(rgb)
            self.encoded += 1
        return self._encoded

    def close(self) -> None:
        self.renderer.close()


def node_id(task_id: str, episode: int, node: int) -> str:
    return f"{task_id}/e{episode}/n{node}"


def explore(task: Task, params: Params, teacher: Teacher, episode: int = 0) -> tuple[list[dict], dict]:
    """Explore one tree; returns its rows (schema columns) and stats (nodes, steps, success, timings)."""
    k = params.collect.samples_per_node
    ep = Episode(task, params.sim)
    views = _Views(ep, params)
    rows: list[dict] = []
    children: dict[str | None, int] = defaultdict(int)
    parent: str | None = None
    depth = 0
    t_teacher = t_step = t_views = 0.0
    try:
        while not ep.success and ep.steps < params.sim.max_steps:
            t0 = time.perf_counter()
            images = views.current()
            prompt = sanitize(ep.message(with_observations=False).render())
            message = ep.message(with_observations=True).render()
            t1 = time.perf_counter()
            proposals = teacher.propose(ep, k)
            t2 = time.perf_counter()
            start, chosen, last = _Checkpoint.take(ep), None, None
            for prop in proposals:
                start.restore(ep)
                result = ep.step(prop.text)
                nid = node_id(task.id, episode, len(rows))
                rows.append(_row(task, episode, len(rows), parent, depth, children[parent], teacher.name,
                                 prop.explore, images, prompt, message, prop.text, result, ep))
                children[parent] += 1
                after = _Checkpoint.take(ep)
                if result.target_states_met and chosen is None:
                    chosen = (nid, after)
                last = after
            (chosen[1] if chosen else last).restore(ep)
            if chosen:
                parent, depth = chosen[0], depth + 1
            t_views += t1 - t0
            t_teacher += t2 - t1
            t_step += time.perf_counter() - t2
    finally:
        views.close()
    success = bool(ep.success)
    for r in rows:
        r["task_success"] = success
        r["label"] = int(r["target_states_met"] and success)
    stats = {"nodes": len(rows), "steps": ep.steps, "success": success, "positive": sum(r["label"] for r in rows),
             "explored": sum(r["explore"] is not None for r in rows), "renders": views.renderer.renders,
             "encoded_states": views.encoded, "seconds_teacher": t_teacher, "seconds_step": t_step,
             "seconds_views": t_views}
    return rows, stats


def _row(task: Task, episode: int, node: int, parent: str | None, depth: int, attempt: int, teacher: str,
         explore_kind: str | None, images: list[dict], prompt: str, message: str, text: str,
         result: StepResult, ep: Episode) -> dict:
    return {
        "id": node_id(task.id, episode, node), "task_id": task.id, "episode": episode, "node": node,
        "parent_id": parent, "depth": depth, "attempt": attempt, "split": task.split, "scene": task.scene,
        "category": task.category, "instruction": task.instruction, "teacher": teacher, "explore": explore_kind,
        "images": images, "prompt": prompt, "message": message, "response": text,
        "code": ep.previous_code if result.parsed else None,
        "calls": json.dumps([[fn, list(args)] for fn, args in result.calls]),
        "parsed": bool(result.parsed), "executed": bool(result.executed), "error": result.error,
        "target_states_met": bool(result.target_states_met), "task_success": False, "label": 0,
        "progress": float(result.progress),
    }
