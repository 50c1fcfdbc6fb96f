"""Episodes: parse, sandboxed execution, target states, restore on failure, task success, checkpoints.

These test the episode rules themselves, so they step `Episode` directly; a privileged agent is shown
what the env would show it, `info["state"]` (`Episode.state()`).
"""

import pytest

from octopus.agents import make_agent
from octopus.config import SimParams
from octopus.sim.episode import Checkpoint, Episode, SimState

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
        result = episode.step(oracle.respond({"text": episode.message(False).render()}, {"state": episode.state()}))
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


FRIDGE = 'f = registry(env, "electric_refrigerator_1")\nMoveBot(env, robot, f, camera)'


def test_state_is_the_live_episode(episode):
    state = episode.state()
    assert isinstance(state, SimState) and state.task is episode.task
    assert state.world is episode.world and state.goal is episode.goal, "the live world and goal, not copies"
    assert (state.steps, state.max_steps, state.error) == (0, SIM.max_steps, None)
    episode.step("nonsense")
    state = episode.state()
    assert state.steps == 1 and state.error == episode.error and state.error.startswith("Response format error")


def test_objects_are_every_item_and_furniture_with_its_distance(episode):
    objects = episode.objects()
    w = episode.world
    assert set(objects) == {o.name for o in w.objects if o.kind in ("item", "furniture")}
    assert "robot" not in objects and "floor_1" not in objects
    assert "bacon_1" in objects and "bacon_1" not in episode.message().render(), "hidden in the fridge, yet nameable"
    assert all(isinstance(d, float) and d >= 0 for d in objects.values())
    far = objects["electric_refrigerator_1"]
    assert episode.step(response(FRIDGE)).target_states_met
    assert episode.objects()["electric_refrigerator_1"] < far, "distances follow the robot"


def test_checkpoint_restore_returns_world_steps_and_message_history(episode):
    start, msg0, key0 = episode.checkpoint(), episode.message().render(), episode.world.state_key()
    assert isinstance(start, Checkpoint)
    ok = episode.step(response(FRIDGE))
    assert ok.target_states_met and episode.world.state_key() != key0
    moved, msg1, key1 = episode.checkpoint(), episode.message().render(), episode.world.state_key()
    assert "MoveBot" in msg1 and msg1 != msg0
    bad = episode.step("nonsense")
    assert not bad.parsed and episode.steps == 2 and "Response format error" in episode.message().render()

    episode.restore(moved)  # back to after the good step: its code in the message, no error, one step
    assert (episode.steps, episode.error, episode.world.state_key()) == (1, None, key1)
    assert episode.message().render() == msg1
    episode.restore(start)  # back to the very start: nothing happened yet
    assert (episode.steps, episode.subtasks, episode.previous_code, episode.error) == (0, None, None, None)
    assert episode.world.state_key() == key0 and episode.message().render() == msg0
    again = episode.step(response(FRIDGE))  # the same response from the same state does the same again
    assert again.feedback() == ok.feedback() and again.calls == ok.calls and episode.world.state_key() == key1


def test_restore_undoes_success_and_the_step_budget():
    ep = Episode(kitchen_task([["nextto", "agent.n.01_1", "electric_refrigerator.n.01_1"]], "near", "t"),
                 SimParams(max_steps=2, sandbox_timeout_s=1.0))
    ep.step("nonsense")
    before_last = ep.checkpoint()
    assert ep.step(response(FRIDGE)).task_success and ep.success
    with pytest.raises(RuntimeError, match="over"):
        ep.step("nonsense")
    ep.restore(before_last)
    assert not ep.success and ep.steps == 1 and not ep.goal.satisfied()
    r = ep.step("nonsense")  # the episode goes on from there: its last step, now a failure
    assert r.truncated and not r.task_success
