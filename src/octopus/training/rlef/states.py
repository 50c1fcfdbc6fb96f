"""RL states D_R (paper §4.4): the dataset's tree nodes, and their worlds rebuilt in the simulator.

    states = select_states(nodes, n=256, seed=0)            # distinct pre-step states of train-task nodes
    worlds = Worlds(params, suite)                          # simulator reward: execute from a node's state
    result = worlds.execute(state, response)                # {"parsed", "executed", "target_states_met", ...}

A node's row is exactly what the env showed before the step, so the policy's input (`prompt` + views)
and the reward model's (`message`) come straight from the dataset. Executing a new response from a
node's state needs that world: `Worlds` replays the node's episode from the task's start through the
one rollout path (`OctoGibsonEnv`), in node order, exactly as the collect stage explored it (proposals
from one state restore it before each; the next state is the first that met its targets, else the
last), snapshotting the state before every node. A replay is checked: the env's message must equal
the node's recorded message, or the state is reported as not reproduced (never silently used).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from octopus.config import Params


class ReplayError(RuntimeError):
    """A node's state could not be rebuilt exactly (the dataset and the simulator disagree)."""


@dataclass
class RLState:
    """One state of D_R: what the policy and the reward model read, and where it is in its tree."""

    id: str                 # the node whose pre-step state this is
    task_id: str
    episode: int
    prompt: str             # what a vision policy reads with the views
    message: str            # the full message (reward model, blind policy)
    progress: float         # goal progress before the step (the node's parent's progress)
    images: Any = None      # the row's PNG views (decoded lazily)
    views: np.ndarray | None = field(default=None, repr=False)


def select_states(nodes: list[dict], n: int | None, seed: int) -> list[RLState]:
    """Up to `n` distinct pre-step states (one per distinct message of a task-episode), seeded order."""
    by_id = {r["id"]: r for r in nodes}
    seen, states = set(), []
    for r in nodes:
        key = (r["task_id"], r["episode"], r["message"])
        if key in seen:
            continue
        seen.add(key)
        parent = by_id.get(r["parent_id"]) if r["parent_id"] else None
        states.append(RLState(r["id"], r["task_id"], int(r["episode"]), r["prompt"], r["message"],
                              float(parent["progress"]) if parent else 0.0, r.get("images")))
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(states))
    return [states[i] for i in order[:n if n is not None else len(states)]]


def episode_rounds(rows: list[dict]) -> list[list[dict]]:
    """An episode's nodes (in node order) grouped into rounds: the proposals made from one state.

    Proposals from one state read the same message; a new message starts a new round."""
    rounds: list[list[dict]] = []
    for r in sorted(rows, key=lambda r: r["node"]):
        if rounds and rounds[-1][0]["message"] == r["message"] and rounds[-1][0]["parent_id"] == r["parent_id"]:
            rounds[-1].append(r)
        else:
            rounds.append([r])
    return rounds


class Worlds:
    """Simulator worlds at dataset states: replay an episode once, keep a snapshot before each node.

    At most `live` envs are kept (least recently used closed first); each holds one task-episode."""

    def __init__(self, params: Params, suite, nodes: list[dict], live: int = 8, views: bool = False) -> None:
        self.params, self.suite, self.live, self.views = params, suite, live, views
        self._episodes: dict[tuple[str, int], list[dict]] = {}
        for r in nodes:
            self._episodes.setdefault((r["task_id"], int(r["episode"])), []).append(r)
        self._envs: OrderedDict[tuple[str, int], tuple[Any, dict]] = OrderedDict()
        self.replays = self.replay_steps = 0

    def close(self) -> None:
        for env, _ in self._envs.values():
            env.close()
        self._envs.clear()

    def __enter__(self) -> "Worlds":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _replay(self, key: tuple[str, int]) -> tuple[Any, dict]:
        from octopus.sim.env import OctoGibsonEnv
        from octopus.sim.tasks import Suite
        if key not in self._episodes:
            raise ReplayError(f"no nodes of task {key[0]!r} episode {key[1]} in the dataset")
        try:
            task = self.suite.get(key[0])
        except KeyError:
            raise ReplayError(f"task {key[0]!r} is not in the suite snapshot the dataset was collected from") from None
        env = OctoGibsonEnv(params=self.params, suite=Suite([task]), views=self.views)
        snaps: dict[str, tuple[Any, dict | None]] = {}
        obs, info = env.reset(options={"task": key[0]})
        for rnd in episode_rounds(self._episodes[key]):
            start = env.snapshot()
            chosen = last = None
            for j, r in enumerate(rnd):
                if j:
                    obs, info = env.restore(start)
                snaps[r["id"]] = (start, {"message": info["message"], "obs": obs})
                after = env.step(r["response"])
                self.replay_steps += 1
                if after[4]["result"]["target_states_met"] and chosen is None:
                    chosen = (env.snapshot(), after)
                last = (env.snapshot(), after)
            state, after = chosen or last
            if len(rnd) > 1:
                env.restore(state)
            obs, info = after[0], after[4]
            if after[2] or after[3]:
                break
        self.replays += 1
        return env, snaps

    def _episode(self, key: tuple[str, int]) -> tuple[Any, dict]:
        if key in self._envs:
            self._envs.move_to_end(key)
            return self._envs[key]
        while len(self._envs) >= self.live:
            _, (env, _) = self._envs.popitem(last=False)
            env.close()
        self._envs[key] = self._replay(key)
        return self._envs[key]

    def reach(self, state: RLState) -> tuple[Any, dict]:
        """The env at `state` (restored), and what it showed there: {"message", "obs"}; checked exact."""
        env, snaps = self._episode((state.task_id, state.episode))
        if state.id not in snaps:
            raise ReplayError(f"{state.id}: the replay of its episode ended before this node (the recorded "
                              "responses no longer lead there)")
        snap, shown = snaps[state.id]
        env.restore(snap)
        if shown["message"] != state.message:
            raise ReplayError(f"{state.id}: the replayed state's message differs from the recorded one (the "
                              "simulator or the suite changed since the dataset was collected)")
        return env, shown

    def execute(self, state: RLState, response: str) -> dict:
        """Run `response` from `state`: the step's result (parsed, executed, targets met, task success, progress)."""
        env, _ = self.reach(state)
        _, _, terminated, _, info = env.step(response)
        r = info["result"]
        return {"parsed": bool(r["parsed"]), "executed": bool(r["executed"]),
                "target_states_met": bool(r["target_states_met"]), "task_success": bool(terminated),
                "progress": float(r["progress"]), "error": r["error"]}


def simulator_reward(result: dict, progress_before: float) -> float:
    """The verified reward of one executed response: step success (targets met) + goal progress gained
    + 1 if it completes the task; 0 for code that does not parse or run."""
    if not result["executed"]:
        return 0.0
    return float(result["target_states_met"]) + max(result["progress"] - progress_before, 0.0) + \
        float(result["task_success"])
