"""Trial-and-error trees: siblings from one state, resets after failures, the task-level label rule."""

from __future__ import annotations

from dataclasses import replace

import pytest

from octopus.agents import Proposal
from octopus.agents.oracle import OracleAgent
from octopus.config import Params, RenderParams
from octopus.data.tree import explore
from tests.helpers import kitchen_task

GOAL = [["ontop", "apple.n.01_1", "countertop.n.01_1"]]
NOTHING = ("Explain:\nWait.\n\nSubtasks:\n(1) Wait\n\nCode:\n```python\ndef act(robot, env, camera):\n"
           "    donothing(env)\n```\n\nTarget States:\n(1) Inventory: None\n(2) Object Information:\n")
SMALL_MOVEBOT = ("Explain:\nGo to the apple.\n\nSubtasks:\n(1) Move to the apple\n\nCode:\n```python\n"
                 "def act(robot, env, camera):\n    apple = registry(env, \"apple_1\")\n"
                 "    MoveBot(env, robot, apple, camera)\n```\n\nTarget States:\n(1) Inventory: None\n"
                 "(2) Object Information:\n    (a) robot, nextto, apple_1, 1\n")


class Scripted:
    """Proposes `script[k]` texts at the k-th call; the string 'oracle' is the planner's correct step."""

    name = "scripted"

    def __init__(self, script: list[list[str]]) -> None:
        self.script, self.calls, self.oracle = script, 0, OracleAgent()

    def propose(self, episode, n: int = 1) -> list[Proposal]:
        texts = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        return [Proposal(self.oracle.respond(episode) if t == "oracle" else t, explore=None if t == "oracle" else "x")
                for t in texts[:n]]

    def usage(self) -> dict:
        return {"proposals": self.calls}


@pytest.fixture
def params() -> Params:
    p = Params()
    return replace(p, render=RenderParams(size=32), sim=replace(p.sim, distractors=0))


def _collect(params: Params, script: list[list[str]], samples: int = 1):
    params = replace(params, collect=replace(params.collect, samples_per_node=samples))
    return explore(kitchen_task(GOAL), params, Scripted(script), episode=3)


def test_a_failed_step_resets_and_its_retry_is_a_sibling(params):
    rows, stats = _collect(params, [["not a response"], [SMALL_MOVEBOT], ["oracle"]])
    first, second, third = rows[:3]
    assert [r["id"] for r in rows[:3]] == ["test_kitchen/e3/n0", "test_kitchen/e3/n1", "test_kitchen/e3/n2"]
    assert first["parsed"] is False and first["code"] is None and "format" in first["error"]
    assert second["parsed"] and not second["executed"] and "MoveBot" in second["error"]
    # all three start from the initial state: same parent (the root), same views, attempts 0, 1, 2
    assert {r["parent_id"] for r in rows[:3]} == {None} and [r["attempt"] for r in rows[:3]] == [0, 1, 2]
    assert first["images"] == second["images"] == third["images"]
    assert "Execution Error" in second["prompt"] and "format" in second["prompt"]  # it read the failure
    assert third["target_states_met"] and rows[3]["parent_id"] == third["id"] and rows[3]["depth"] == 1
    assert rows[3]["images"] != third["images"]  # the world moved on, and so did the views
    assert stats["success"] and all(r["task_success"] for r in rows)
    assert [r["label"] for r in rows] == [int(r["target_states_met"]) for r in rows]
    assert stats["nodes"] == len(rows) == stats["steps"] and stats["explored"] == 2


def test_every_step_of_a_failed_task_is_negative(params):
    rows, stats = _collect(params, [[NOTHING]])
    assert len(rows) == params.sim.max_steps and not stats["success"]
    assert all(r["target_states_met"] for r in rows)  # each step did what it said ...
    assert all(r["label"] == 0 and not r["task_success"] for r in rows)  # ... but the task failed
    assert [r["depth"] for r in rows] == list(range(params.sim.max_steps))
    assert all(r["parent_id"] == p["id"] for p, r in zip(rows, rows[1:]))


def test_siblings_share_a_state_and_cost_one_step(params):
    rows, stats = _collect(params, [[SMALL_MOVEBOT, "oracle"]], samples=2)
    assert stats["success"] and len(rows) == 2 * stats["steps"]
    for a, b in zip(rows[::2], rows[1::2]):
        assert a["parent_id"] == b["parent_id"] and a["images"] == b["images"] and a["depth"] == b["depth"]
        assert not a["target_states_met"] and b["target_states_met"] and (a["label"], b["label"]) == (0, 1)
    assert [r["parent_id"] for r in rows[2::2]] == [r["id"] for r in rows[1:-1:2]]  # the branch that worked


def test_trees_are_deterministic(params):
    script = [["not a response"], ["oracle"]]
    a, _ = _collect(params, script)
    b, _ = _collect(params, script)
    assert a == b
