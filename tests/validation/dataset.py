"""A small, valid dataset built by hand (3 trees, 2 shards, real PNG views) and ways to break it.

Used by the tests and by `bench.py` (which scales it up to time the stage).
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from octopus.config import Params, RenderParams, TasksParams, ValidateParams
from octopus.data import schema
from octopus.protocol import Response, TargetState

SIZE = 32
SUITE = [  # (id, split, scene)
    ("set_table", "train", "scene_a"), ("grab_apple", "train", "scene_a"), ("cook_bacon", "train", "scene_b"),
    ("eval_seen_task", "eval_seen", "scene_a"), ("eval_unseen_task", "eval_unseen", "scene_u"),
    ("procedural_ok", "train", "scene_a"), ("procedural_on_eval_activity", "train", "scene_a"),
    ("procedural_eval_goal", "train", "scene_b"),
]
#: activity and goal of each task (procedural ones are checked for evaluation content)
_ACTIVITY = {"eval_seen_task": "serve_dinner", "procedural_on_eval_activity": "serve_dinner"}
_GOAL = {"eval_seen_task": [["ontop", "plate.n.04_1", "table.n.02_1"]],
         "procedural_eval_goal": [["ontop", "plate.n.04_1", "table.n.02_1"]],
         "procedural_ok": [["open", "cabinet.n.01_1"]]}
UNSEEN_PARAM = "scene_x"  # in params.tasks.unseen_scenes; scene_u is unseen through its eval_unseen task


def make_params(size: int = SIZE, min_rows: int = 1, image_sample: int = 0) -> Params:
    return Params(render=RenderParams(size=size), tasks=TasksParams(unseen_scenes=[UNSEEN_PARAM]),
                  validate=ValidateParams(min_rows=min_rows, image_sample=image_sample))


def write_suite(path: Path) -> Path:
    tasks = [{"id": i, "split": s, "scene": sc, "category": "follow", "instruction": f"do {i}",
              "activity": _ACTIVITY.get(i, i), "goal": _GOAL.get(i, [["open", f"{i}.n.01_1"]]),
              "source": "procedural" if i.startswith("procedural") else "octogibson"} for i, s, sc in SUITE]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": {}, "tasks": tasks}))
    return path


def views(seed: int, size: int = SIZE) -> list[dict]:
    rgb = np.random.default_rng(seed).integers(0, 256, (schema.N_VIEWS, 1, 1, 3), dtype=np.uint8)
    return schema.encode_views(np.broadcast_to(rgb, (schema.N_VIEWS, size, size, 3)).copy())


def code_for(obj: str, action: str = "MoveBot") -> str:
    call = f"MoveBot(env, robot, {obj}, camera)" if action == "MoveBot" else f"{action}(robot, {obj})"
    return (f"def act(robot, env, camera):\n    # Subtask 1: {action} {obj}\n"
            f'    {obj} = registry(env, "{obj}")\n    {call}\n    donothing(env)')


def response_for(code: str, obj: str) -> str:
    return Response(f"Next I go to the {obj}.", (f"go to {obj}", f"use {obj}"), code,
                    (), (TargetState("robot", "nextto", obj, True),)).render()


MALFORMED = "Explain:\nI will move.\n\nSubtasks:\n(1) move\n\nTarget States:\n(1) Inventory: None\n"


def tree(task: str, scene: str, episode: int, success: bool, seed: int, size: int = SIZE) -> list[dict]:
    """One trial-and-error tree: a root step, then failed and successful siblings from it."""
    base = {"task_id": task, "episode": episode, "split": "train", "scene": scene, "category": "follow",
            "instruction": f"do {task}", "teacher": "oracle", "prompt": "Inventory: None\nTask Goal: ...",
            "message": "Observed Objects: ...\nInventory: None", "task_success": success}

    def node(n: int, parent: int | None, depth: int, attempt: int, kind: str, obj: str = "table_1",
             explore: str | None = None) -> dict:
        code = code_for(obj, "teleport" if kind == "rejected" else "MoveBot")
        parsed = kind != "malformed"
        met = kind == "ok"
        row = dict(base, id=f"{task}/e{episode}/n{n}", node=n, depth=depth, attempt=attempt, explore=explore,
                   parent_id=None if parent is None else f"{task}/e{episode}/n{parent}",
                   images=views(seed + depth, size), response=MALFORMED if not parsed else response_for(code, obj),
                   code=code if parsed else None, parsed=parsed, executed=kind in ("ok", "unmet"),
                   calls=json.dumps([["registry", [obj]], ["MoveBot", [obj]]] if kind in ("ok", "unmet") else []),
                   error={"ok": None, "unmet": "Target states not reached: robot nextto table_1",
                          "malformed": "Response format error: missing Code: section",
                          "rejected": "NameError: name 'teleport' is not defined (line 4)"}[kind],
                   target_states_met=met, label=int(met and success), progress=0.5 if met else 0.0)
        return row

    rows = [node(0, None, 0, 0, "ok", "table_1"), node(1, 0, 1, 0, "unmet", "sink_1", "wrong_object"),
            node(2, 0, 1, 1, "malformed"), node(3, 0, 1, 2, "rejected", "fridge_1"), node(4, 0, 1, 3, "ok", "fridge_1")]
    return rows


def base_shards(size: int = SIZE) -> list[list[dict]]:
    """Two shards: trees of two tasks in the first (one solved, one not), a third tree in the second."""
    return [tree("set_table", "scene_a", 0, True, 0, size) + tree("grab_apple", "scene_a", 0, False, 10, size),
            tree("cook_bacon", "scene_b", 0, True, 20, size)]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_manifest(directory: Path) -> None:
    files = schema.shard_files(directory)
    shards = [{"file": f.name, "rows": pq.read_metadata(f).num_rows, "sha256": sha256(f)} for f in files]
    (directory / "manifest.json").write_text(json.dumps({"rows": sum(s["rows"] for s in shards), "shards": shards}))


def write_dataset(directory: Path, shards: list[list[dict]], manifest: bool = True) -> Path:
    """Write shards as collect does (schema-checked), plus manifest.json."""
    for k, rows in enumerate(shards):
        table = schema.to_table(rows) if all(r[c] is not None for r in rows for c in schema.REQUIRED) else \
            schema.pa.Table.from_pylist(rows, schema=schema.SCHEMA)  # null in a required column: bypass the check
        schema.write_table(table, directory / f"shard-{k:05d}-of-{len(shards):05d}.parquet")
    if manifest:
        write_manifest(directory)
    return directory


def copy_shards(shards: list[list[dict]]) -> list[list[dict]]:
    return copy.deepcopy(shards)
