"""Trial-and-error trees (paper §4.1, Fig. 4d): a teacher explores one task, every attempt is a node.

From each state the teacher proposes `samples_per_node` responses; each is executed from that same
state (siblings: `env.restore` to the parent's snapshot before each). The first that reaches its
Target States becomes the parent of the next state; failed attempts leave the world at the parent's
state (the simulator's rule), and the last failure's error is what the next proposal reads.
Proposals from one state count as one step of the episode's budget (`sim.max_steps`). When the task
ends, the task-level rule labels the tree: a step is positive (label 1) only if it met its targets
AND the task was completed; every step of a failed task is negative.

    rows, stats = explore(task, params, teacher, episode=0)

A row is exactly what the env showed before the step (views, text, full message) and what it said
after it, so rebuilding a node's state is replaying its ancestors' responses from the task's start.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict

import numpy as np

from octopus.agents import Teacher, env_for
from octopus.config import Params
from octopus.data.schema import encode_views
from octopus.sim.tasks import Suite, Task


class _Views:
    """PNG-encoded views, encoded once per distinct rendered state (a failed step shows the same views again)."""

    def __init__(self) -> None:
        self._rgb: np.ndarray | None = None
        self._encoded: list[dict] = []
        self.encoded = 0

    def encode(self, rgb: np.ndarray) -> list[dict]:
        if self._rgb is None or not np.array_equal(rgb, self._rgb):
            self._rgb, self._encoded = rgb, encode_views(rgb)
            self.encoded += 1
        return self._encoded


def node_id(task_id: str, episode: int, node: int) -> str:
    return f"{task_id}/e{episode}/n{node}"


def explore(task: Task, params: Params, teacher: Teacher, episode: int = 0) -> tuple[list[dict], dict]:
    """Explore one tree; returns its rows (schema columns) and stats (nodes, steps, success, timings)."""
    k = params.collect.samples_per_node
    env = env_for(teacher, params, Suite([task]), views=True)  # rows keep the views whatever the teacher reads
    views = _Views()
    rows: list[dict] = []
    children: dict[str | None, int] = defaultdict(int)
    parent: str | None = None
    depth = 0
    t_teacher = t_step = t_views = 0.0
    try:
        obs, info = env.reset(options={"task": task.id})
        done = bool(info["task_success"])
        while not done:
            t0 = time.perf_counter()
            images = views.encode(obs["views"])
            t1 = time.perf_counter()
            proposals = teacher.propose(obs, info, k)
            t2 = time.perf_counter()
            start, chosen, last = env.snapshot(), None, None
            for j, prop in enumerate(proposals):
                if j:
                    env.restore(start)
                after = env.step(prop.text)
                nid = node_id(task.id, episode, len(rows))
                rows.append(_row(task, episode, len(rows), parent, depth, children[parent], teacher.name,
                                 prop.explore, images, obs["text"], info["message"], prop.text, after[4]["result"]))
                children[parent] += 1
                if after[4]["result"]["target_states_met"] and chosen is None:
                    chosen = (nid, env.snapshot(), after)
                last = (None, env.snapshot(), after)
            nid, state, (obs, _, terminated, truncated, info) = chosen or last
            if len(proposals) > 1:
                env.restore(state)
            done = terminated or truncated
            if chosen:
                parent, depth = nid, depth + 1
            t_views += t1 - t0
            t_teacher += t2 - t1
            t_step += time.perf_counter() - t2
        success = bool(info["task_success"])
        steps = int(info["steps"])
    finally:
        env.close()
    for r in rows:
        r["task_success"] = success
        r["label"] = int(r["target_states_met"] and success)
    stats = {"nodes": len(rows), "steps": steps, "success": success, "positive": sum(r["label"] for r in rows),
             "explored": sum(r["explore"] is not None for r in rows), "encoded_states": views.encoded,
             "seconds_teacher": t_teacher, "seconds_step": t_step, "seconds_views": t_views}
    return rows, stats


def _row(task: Task, episode: int, node: int, parent: str | None, depth: int, attempt: int, teacher: str,
         explore_kind: str | None, images: list[dict], prompt: str, message: str, text: str, result: dict) -> dict:
    return {
        "id": node_id(task.id, episode, node), "task_id": task.id, "episode": episode, "node": node,
        "parent_id": parent, "depth": depth, "attempt": attempt, "split": task.split, "scene": task.scene,
        "category": task.category, "instruction": task.instruction, "teacher": teacher, "explore": explore_kind,
        "images": images, "prompt": prompt, "message": message, "response": text,
        "code": result["code"], "calls": json.dumps(result["calls"]),
        "parsed": bool(result["parsed"]), "executed": bool(result["executed"]), "error": result["error"],
        "target_states_met": bool(result["target_states_met"]), "task_success": False, "label": 0,
        "progress": float(result["progress"]),
    }
