"""Episodes: parse, sandboxed execution, target states, restore on failure, task success."""

import pytest

from octopus.agents import make_agent
from octopus.config import SimParams
from octopus.sim.episode import Episode

from tests.helpers import kitchen_task

SIM = SimParams(sandbox_timeout_s=1.0)
GOAL = [["cooked", "bacon.n.01_1"], ["inside", "apple.n.01_1", "wicker_basket.n.01_1"]]


def response(code: str, targets: str = "(1) Inventory: None\n(2) Object Information:\n(a) robot, nextto, electric_refrigerator_1, 1") -> str:
    body = "\n".join("    " + line for line in code.strip().splitlines())
    return (f"Explain:\ntest\n\nSubtasks:\n(1) do it\n\nCode:\n```python\ndef act(robot, env, camera):\n{body}\n```\n\n"
            f"Target States:\n{targets}\n")


@pytest.fixture
def episode():
    return Episode(kitchen_task(GOAL, "episode_kitchen", "cook the bacon and put an apple in the basket"), SIM)


def test_oracle_solves_the_task(episode):
    oracle = make_agent("oracle")
    while not episode.success and episode.steps < SIM.max_steps:
        result = episode.step(oracle.respond(episode))
        assert result.parsed and result.executed and result.target_states_met, result.error
    assert episode.success and episode.goal.satisfied()


def test_good_step_keeps_its_effects(episode):
    r = episode.step(response('fridge = registry(env, "electric_refrigerator_1")\nMoveBot(env, robot, fridge, camera)\ndonothing(env)'))
    assert r.feedback() == {"parsed": True, "executed": True, "error": None, "target_states_met": True, "task_success": False}
    assert episode.world.robot_at == episode.world.idx("electric_refrigerator_1")
    msg = episode.message().render()
    assert "Previous Action Code:" in msg and "MoveBot" in msg and "Execution Error: No error" in msg


def test_unmet_target_states_restore_the_state(episode):
    key = episode.world.state_key()
    r = episode.step(response('t = registry(env, "breakfast_table_1")\nMoveBot(env, robot, t, camera)'))
    assert r.executed and not r.target_states_met and "robot, nextto, electric_refrigerator_1, 1" in r.error
    assert episode.world.state_key() == key


def test_precondition_error_becomes_execution_error(episode):
    key = episode.world.state_key()
    r = episode.step(response('f = registry(env, "electric_refrigerator_1")\nMoveBot(env, robot, f, camera)\n'
                              'b = registry(env, "bacon_1")\nEasyGrasp(robot, b)'))
    assert not r.executed and r.error == "ActionError: electric_refrigerator_1 is closed: open it before taking bacon_1 out"
    assert episode.world.state_key() == key, "a failed step is rolled back, including the MoveBot before the error"
    assert "electric_refrigerator_1 is closed" in episode.message().render()


def test_malformed_response_is_a_failed_step(episode):
    r = episode.step("I think we should cook the bacon.")
    assert not r.parsed and not r.executed and r.error.startswith("Response format error")


@pytest.mark.parametrize("code,expected", [
    ("import os\nos.system('echo pwned')", "import"),
    ("while True:\n    pass", "TimeoutError"),
    ("open('/etc/passwd')", "open() missing 1 required positional argument"),
    ("().__class__.__bases__[0].__subclasses__()", "invalid attribute name"),
    ("x = 'a' * 10**10", "MemoryError"),
])
def test_hostile_code_never_corrupts_the_world(episode, code, expected):
    key = episode.world.state_key()
    r = episode.step(response(code))
    assert not r.executed and expected in r.error
    assert episode.world.state_key() == key
    ok = episode.step(response('f = registry(env, "electric_refrigerator_1")\nMoveBot(env, robot, f, camera)'))
    assert ok.target_states_met, "the simulator and its sandbox keep working after hostile code"


def test_episode_truncates_after_max_steps():
    ep = Episode(kitchen_task(GOAL, "trunc", "t"), SimParams(max_steps=2))
    ep.step("nonsense")
    r = ep.step("nonsense")
    assert r.truncated and r.done
    with pytest.raises(RuntimeError):
        ep.step("nonsense")
