"""Trial-and-error trees: siblings from one state, resets after failures, the task-level label rule.

`explore` steps `OctoGibsonEnv` (built by `env_for` for what the teacher reads, with views for the rows)
and tries siblings from one state with `env.snapshot()` / `env.restore()`."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from octopus.agents import Proposal
from octopus.agents.oracle import OracleAgent
from octopus.config import Params, RenderParams
from octopus.data.schema import encode_views
from octopus.data.tree import explore
from tests.helpers import kitchen_env, kitchen_task

GOAL = [["ontop", "apple.n.01_1", "countertop.n.01_1"]]
NOTHING = ("Explain:\nWait.\n\nSubtasks:\n(1) Wait\n\nCode:\n```python\ndef act(robot, env, camera):\n"
           "    donothing(env)\n```\n\nTarget States:\n(1) Inventory: None\n(2) Object Information:\n")
SMALL_MOVEBOT = ("Explain:\nGo to the apple.\n\nSubtasks:\n(1) Move to the apple\n\nCode:\n```python\n"
                 "def act(robot, env, camera):\n    apple = registry(env, \"apple_1\")\n"
                 "    MoveBot(env, robot, apple, camera)\n```\n\nTarget States:\n(1) Inventory: None\n"
                 "(2) Object Information:\n    (a) robot, nextto, apple_1, 1\n")


class Scripted:
    """Proposes `script[k]` texts at the k-th call; the string 'oracle' is the planner's correct step.

    It reads the true state (for the planner) and records what the env showed it at each call."""

    name = "scripted"
    reads = frozenset({"state"})

    def __init__(self, script: list[list[str]]) -> None:
        self.script, self.calls, self.oracle = script, 0, OracleAgent()
        self.shown: list[tuple[dict, dict]] = []

    def propose(self, obs: dict, info: dict, n: int = 1) -> list[Proposal]:
        self.shown.append((obs, {**info, "world_key": info["state"].world.state_key()}))
        texts = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        return [Proposal(self.oracle.respond(obs, info) if t == "oracle" else t, explore=None if t == "oracle" else "x")
                for t in texts[:n]]

    def usage(self) -> dict:
        return {"proposals": self.calls}


class Reader:
    """A text-only teacher (reads the full message): it always waits."""

    name = "reader"
    reads = frozenset({"message"})

    def __init__(self) -> None:
        self.shown: list[tuple[dict, dict]] = []

    def propose(self, obs: dict, info: dict, n: int = 1) -> list[Proposal]:
        self.shown.append((obs, info))
        return [Proposal(NOTHING)] * n

    def usage(self) -> dict:
        return {}


@pytest.fixture
def params() -> Params:
    p = Params()
    return replace(p, render=RenderParams(size=32), sim=replace(p.sim, distractors=0))


def _collect(params: Params, script: list[list[str]], samples: int = 1, teacher=None):
    params = replace(params, collect=replace(params.collect, samples_per_node=samples))
    teacher = teacher or Scripted(script)
    rows, stats = explore(kitchen_task(GOAL), params, teacher, episode=3)
    return rows, stats, teacher


def _calls(row: dict) -> list:
    return json.loads(row["calls"])


def test_a_failed_step_resets_and_its_retry_is_a_sibling(params):
    rows, stats, teacher = _collect(params, [["not a response"], [SMALL_MOVEBOT], ["oracle"]])
    first, second, third = rows[:3]
    assert [r["id"] for r in rows[:3]] == ["test_kitchen/e3/n0", "test_kitchen/e3/n1", "test_kitchen/e3/n2"]
    assert first["parsed"] is False and first["code"] is None and "format" in first["error"]
    assert second["parsed"] and not second["executed"] and "MoveBot" in second["error"]
    assert second["code"].startswith("def act(robot, env, camera):") and "MoveBot" in second["code"]
    # all three start from the initial state: same parent (the root), same views, attempts 0, 1, 2
    assert {r["parent_id"] for r in rows[:3]} == {None} and [r["attempt"] for r in rows[:3]] == [0, 1, 2]
    assert first["images"] == second["images"] == third["images"] and len(first["images"]) == 10
    assert len({info["world_key"] for _, info in teacher.shown[:3]}) == 1, "the teacher saw one state three times"
    assert "Execution Error" in second["prompt"] and "format" in second["prompt"]  # it read the failure
    assert second["message"].startswith("Observed Objects:") and "format" in second["message"]
    assert third["target_states_met"] and rows[3]["parent_id"] == third["id"] and rows[3]["depth"] == 1
    assert rows[3]["images"] != third["images"]  # the world moved on, and so did the views
    assert stats["success"] and all(r["task_success"] for r in rows)
    assert [r["label"] for r in rows] == [int(r["target_states_met"]) for r in rows]
    assert stats["nodes"] == len(rows) == stats["steps"] and stats["explored"] == 2
    assert stats["positive"] == sum(r["label"] for r in rows) == stats["nodes"] - 2
    # views are encoded once per state shown: the root's three attempts share one encoding
    assert stats["encoded_states"] == len({r["parent_id"] for r in rows}) < stats["nodes"]
    assert "renders" not in stats


def test_every_step_of_a_failed_task_is_negative(params):
    rows, stats, _ = _collect(params, [[NOTHING]])
    assert len(rows) == params.sim.max_steps and not stats["success"]
    assert all(r["target_states_met"] for r in rows)  # each step did what it said ...
    assert all(r["label"] == 0 and not r["task_success"] for r in rows)  # ... but the task failed
    assert stats["positive"] == 0
    assert [r["depth"] for r in rows] == list(range(params.sim.max_steps))
    assert all(r["parent_id"] == p["id"] for p, r in zip(rows, rows[1:]))
    assert stats["encoded_states"] == 1, "waiting never changes the views: one state, encoded once"


def test_siblings_share_a_state_and_cost_one_step(params):
    rows, stats, teacher = _collect(params, [[SMALL_MOVEBOT, "oracle"]], samples=2)
    assert stats["success"] and len(rows) == 2 * stats["steps"] and teacher.calls == stats["steps"]
    for a, b in zip(rows[::2], rows[1::2]):
        assert a["parent_id"] == b["parent_id"] and a["images"] == b["images"] and a["depth"] == b["depth"]
        assert a["prompt"] == b["prompt"] and a["message"] == b["message"], "both read the parent's state"
        assert not a["target_states_met"] and b["target_states_met"] and (a["label"], b["label"]) == (0, 1)
        assert [a["attempt"], b["attempt"]] == [0, 1]
    assert [r["parent_id"] for r in rows[2::2]] == [r["id"] for r in rows[1:-1:2]]  # the branch that worked


def test_a_sibling_after_a_success_runs_from_the_parent_state(params):
    """Two identical correct steps from one state do the same thing: the second ran from the restored parent,
    not from the state the first left (where grasping the apple again would fail)."""
    rows, stats, _ = _collect(params, [["oracle", "oracle"]], samples=2)
    assert stats["success"] and len(rows) == 2 * stats["steps"] >= 4
    for a, b in zip(rows[::2], rows[1::2]):
        assert a["response"] == b["response"] and a["target_states_met"] and b["target_states_met"]
        assert (_calls(a), a["progress"], a["error"]) == (_calls(b), b["progress"], b["error"])
    assert [r["parent_id"] for r in rows[2::2]] == [r["id"] for r in rows[:-2:2]], "the first success is the parent"


def test_the_tree_goes_on_from_the_successful_sibling_not_from_a_later_failure(params):
    rows, stats, teacher = _collect(params, [["oracle", SMALL_MOVEBOT]], samples=2)
    alone, alone_stats, _ = _collect(params, [["oracle"]])
    assert stats["success"] and stats["steps"] == alone_stats["steps"]
    assert [r["response"] for r in rows[::2]] == [r["response"] for r in alone], "the same correct path"
    assert [r["images"] for r in rows[::2]] == [r["images"] for r in alone]
    assert all(not b["target_states_met"] and b["label"] == 0 for b in rows[1::2])
    assert [r["parent_id"] for r in rows[2::2]] == [r["id"] for r in rows[:-2:2]]


def test_a_node_is_its_ancestors_responses_replayed(params):
    """Rebuilding a node's state: step its ancestors' responses from the task's start; the views are the row's."""
    rows, stats, _ = _collect(params, [["not a response", "oracle"], [SMALL_MOVEBOT, "oracle"]], samples=2)
    assert stats["success"]
    by_id = {r["id"]: r for r in rows}
    for row in rows[::2]:
        chain, parent = [], row["parent_id"]
        while parent is not None:
            chain.insert(0, by_id[parent])
            parent = by_id[parent]["parent_id"]
        env, obs, info = kitchen_env(GOAL, sim=params.sim, views=True, privileged=False)
        try:
            for ancestor in chain:
                obs, _, _, _, info = env.step(ancestor["response"])
                assert info["result"]["target_states_met"]
            assert encode_views(obs["views"]) == row["images"], row["id"]
            assert np.isclose(info["progress"], chain[-1]["progress"] if chain else info["progress"])
        finally:
            env.close()


def test_a_text_only_teacher_gets_no_state_but_the_rows_keep_the_views(params):
    rows, stats, reader = _collect(params, [], teacher=Reader())
    assert not stats["success"] and len(rows) == params.sim.max_steps
    assert all("state" not in info and "views" in obs for obs, info in reader.shown)
    assert all(len(r["images"]) == 10 and r["message"] == info["message"] for r, (_, info) in zip(rows, reader.shown))
    assert all(r["teacher"] == "reader" and r["explore"] is None for r in rows)


def test_trees_are_deterministic(params):
    script = [["not a response"], ["oracle"]]
    a, _, _ = _collect(params, script)
    b, _, _ = _collect(params, script)
    assert a == b
