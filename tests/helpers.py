"""Builders shared by tests in several folders (conftests hold fixtures only, and import from here).

    kitchen_task(goal)              a small kitchen from real BEHAVIOR-1K content (fridge, table, stove, ...)
    kitchen_env(goal)               OctoGibsonEnv over that task, reset: (env, obs, info); privileged by default
    prompt(), response(), views()   realistic model inputs and outputs for tiny policies
    merge(base, changes)            nested params dicts merged in place (tiny projects' params.yaml)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from octopus.config import Params, RenderParams, SimParams
from octopus.protocol import Response, TargetState
from octopus.sim.tasks import Suite, Task

# ---------------------------------------------------------------------- the kitchen
OBJECTS = {
    "electric_refrigerator.n.01": ["electric_refrigerator.n.01_1"],
    "breakfast_table.n.01": ["breakfast_table.n.01_1"],
    "countertop.n.01": ["countertop.n.01_1"],
    "bacon.n.01": ["bacon.n.01_1"],
    "apple.n.01": ["apple.n.01_1", "apple.n.01_2"],
    "wicker_basket.n.01": ["wicker_basket.n.01_1"],
    "stove.n.01": ["stove.n.01_1"],
    "floor.n.01": ["floor.n.01_1"],
    "agent.n.01": ["agent.n.01_1"],
}
INIT = [
    ["inside", "bacon.n.01_1", "electric_refrigerator.n.01_1"],
    ["ontop", "apple.n.01_1", "breakfast_table.n.01_1"],
    ["ontop", "apple.n.01_2", "countertop.n.01_1"],
    ["ontop", "wicker_basket.n.01_1", "floor.n.01_1"],
    ["ontop", "electric_refrigerator.n.01_1", "floor.n.01_1"],
    ["ontop", "breakfast_table.n.01_1", "floor.n.01_1"],
    ["ontop", "countertop.n.01_1", "floor.n.01_1"],
    ["ontop", "stove.n.01_1", "floor.n.01_1"],
    ["inroom", "electric_refrigerator.n.01_1", "kitchen"],
    ["inroom", "breakfast_table.n.01_1", "kitchen"],
    ["inroom", "countertop.n.01_1", "kitchen"],
    ["inroom", "stove.n.01_1", "kitchen"],
    ["inroom", "floor.n.01_1", "kitchen"],
    ["ontop", "agent.n.01_1", "floor.n.01_1"],
]
COOK_BACON = [["cooked", "bacon.n.01_1"]]


def kitchen_task(goal: list, task_id: str = "test_kitchen", instruction: str = "test") -> Task:
    return Task(task_id, "cook_bacon", "Rs_int", instruction, "follow",
                {k: list(v) for k, v in OBJECTS.items()}, [list(x) for x in INIT], goal)


def kitchen_env(goal: list = COOK_BACON, task_id: str = "test_kitchen", instruction: str = "test",
                sim: SimParams | None = None, views: bool = False, privileged: bool = True,
                **env_kwargs: Any) -> tuple[Any, dict, dict]:
    """The env over one kitchen task, reset: (env, obs, info). Views at 32 px when asked for."""
    from octopus.sim.env import OctoGibsonEnv
    params = Params(sim=sim or SimParams(sandbox_timeout_s=1.0), render=RenderParams(size=32))
    env = OctoGibsonEnv(params=params, suite=Suite([kitchen_task(goal, task_id, instruction)]), views=views,
                        privileged=privileged, **env_kwargs)
    obs, info = env.reset(options={"task": task_id})
    return env, obs, info


# ---------------------------------------------------------------------- model inputs
SIZE = 32  # px per view: 2 x 2 patches of 16 px, enough to tell views apart and fast


def prompt(goal: str = "Put the apple in the fridge", error: str = "No error") -> str:
    return (f"Inventory: None\nTask Goal: {goal}\nOriginal Subtasks: None\nPrevious Action Code: No code\n"
            f"Execution Error: {error}\nNow, please output Explain, Subtasks (revise if necessary), Code that "
            "completes the next subtask, and Target States.")


def response(obj: str = "apple_1") -> str:
    code = (f"def act(robot, env, camera):\n    # Subtask 1: Grasp the {obj}\n    {obj} = registry(env, \"{obj}\")\n"
            f"    EasyGrasp(robot, {obj})\n    donothing(env)")
    return Response(f"The next subtask is to grasp the {obj}.", (f"Grasp the {obj}",), code, (obj,),
                    (TargetState("robot", "nextto", "fridge_1", True),)).render()


def views(seed: int, size: int = SIZE) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (10, size, size, 3), dtype=np.uint8)


TEXTS = [prompt(g, e) for g in ("Put the apple in the fridge", "Cook the bacon", "Open the cabinet")
         for e in ("No error", "apple_1 is out of reach")] + [response(o) for o in ("apple_1", "bacon_1", "cabinet_1")]


def merge(base: dict, changes: dict) -> dict:
    """`changes` merged into `base` in place, mapping by mapping."""
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = value
    return base


def artifacts(flow_run_id: Any = None, key: str | None = None) -> list:
    """Artifacts on the configured Prefect API, newest first: of one flow run and/or with one key."""
    import asyncio

    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    async def read():
        async with get_client() as client:
            return await client.read_artifacts(artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]) if flow_run_id else None,
                key=ArtifactFilterKey(any_=[key]) if key else None), sort=ArtifactSort.CREATED_DESC)
    return asyncio.run(read())
