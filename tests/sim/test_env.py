"""OctoGibsonEnv and the backend registry: Gymnasium API, rewards, episode ends, clear errors (real renderer)."""

from __future__ import annotations

import dataclasses
import importlib.util

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from octopus.agents import make_agent
from octopus.config import Params
from octopus.sim.backends import (Backend, BackendUnavailableError, backend_names, make_backend,
                                  register_backend)
from octopus.sim.env import CHARSET, ENV_ID, TEXT_MAX, EnvSnapshot, OctoGibsonEnv, sanitize
from octopus.sim.episode import SimState
from octopus.sim.render import VIEWS

from tests.helpers import kitchen_env

SIZE = 32


@pytest.fixture(scope="module")
def small(params) -> Params:
    """Default params (so the session's cached suite is reused) with tiny views."""
    return dataclasses.replace(params, render=dataclasses.replace(params.render, size=SIZE))


@pytest.fixture(scope="module")
def eval_task(suite) -> str:
    return suite.select("eval_seen")[0].id


@pytest.fixture
def env(small, suite):
    e = OctoGibsonEnv(params=small)
    yield e
    e.close()


@pytest.fixture
def privileged(small, suite):
    """The env with views and the simulator's true state (what the oracle reads)."""
    e = OctoGibsonEnv(params=small, privileged=True)
    yield e
    e.close()


def test_check_env_passes(small, suite):
    env = gym.make(f"octopus.sim.env:{ENV_ID}", params=small, render_mode="rgb_array")
    check_env(env.unwrapped)
    env.close()


def test_check_env_passes_with_depth_and_segmentation_without_warnings(small, suite):
    import warnings
    env = OctoGibsonEnv(params=small, depth=True, segmentation=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env, skip_render_check=True)
    env.close()


def test_gym_make_by_plain_id_after_import(small, suite, eval_task):
    env = gym.make(ENV_ID, params=small, split="eval_seen", reward="progress")
    obs, info = env.reset(seed=0, options={"task": eval_task})
    assert env.unwrapped.reward_mode == "progress" and info["task"] == eval_task
    assert obs in env.observation_space
    env.close()


def test_spaces_and_observation(env, eval_task, suite):
    assert env.observation_space["views"].shape == (len(VIEWS), SIZE, SIZE, 3)
    obs, info = env.reset(options={"task": eval_task})
    assert obs in env.observation_space and obs["views"].dtype == np.uint8 and obs["views"].std() > 0
    # the text part only: ground-truth objects and relations go to info["message"]
    assert "Task Goal: " + suite.get(eval_task).instruction in obs["text"]
    assert "Observed Objects" not in obs["text"] and "Inventory: None" in obs["text"]
    assert info["message"].startswith("Observed Objects:") and "Observed Relations:" in info["message"]
    assert info == {**info, "task": eval_task, "steps": 0, "task_success": False}
    assert 0.0 <= info["progress"] < 1.0 and "state" not in info, "the true state only for privileged=True"


def test_reset_is_deterministic_per_seed(env, suite):
    train = {t.id for t in suite.select("train")}
    drawn = []
    for seed in (3, 4, 5, 6, 3):
        obs, info = env.reset(seed=seed)
        drawn.append((info["task"], obs))
    assert all(task in train for task, _ in drawn)
    assert drawn[0][0] == drawn[-1][0] and np.array_equal(drawn[0][1]["views"], drawn[-1][1]["views"])
    assert len({task for task, _ in drawn}) > 1, "different seeds draw different tasks"


def test_oracle_reaches_the_goal_with_reward_one(privileged, eval_task):
    env, oracle = privileged, make_agent("oracle")
    obs, info = env.reset(options={"task": eval_task})
    rewards, terminated, truncated = [], False, False
    while not (terminated or truncated):
        obs, reward, terminated, truncated, info = env.step(oracle.respond(obs, info))
        rewards.append(reward)
        assert obs in env.observation_space and info["result"]["target_states_met"], info["result"]["error"]
        assert info["result"]["calls"] and all(isinstance(c, list) for c in info["result"]["calls"])
    assert terminated and not truncated and info["task_success"] and info["result"]["progress"] == 1.0
    assert rewards[-1] == 1.0 and sum(rewards) == 1.0 and info["steps"] == len(rewards)
    with pytest.raises(gym.error.ResetNeeded, match="episode has ended"):
        env.step(oracle.respond(obs, info))


def test_progress_reward_adds_goal_progress(small, eval_task, suite):
    env = OctoGibsonEnv(params=small, reward="progress", views=False, privileged=True)
    obs, info = env.reset(options={"task": eval_task})
    start, oracle, total, done = info["progress"], make_agent("oracle"), 0.0, False
    assert start == env.backend.progress
    while not done:
        obs, reward, terminated, truncated, info = env.step(oracle.respond(obs, info))
        total, done = total + reward, terminated or truncated
        assert info["progress"] == info["result"]["progress"]
    assert terminated and total == pytest.approx(1.0 + (1.0 - start))
    env.close()


def test_unparseable_text_is_a_failed_step_and_changes_nothing(privileged, eval_task):
    env = privileged
    obs0, info0 = env.reset(options={"task": eval_task})
    key = info0["state"].world.state_key()
    obs, reward, terminated, truncated, info = env.step("let me think about the bacon \u2014 caf\u00e9 \x00")
    assert reward == 0.0 and not terminated and not truncated and info["steps"] == 1
    result = info["result"]
    assert not result["parsed"] and not result["executed"] and result["error"].startswith("Response format error")
    assert set(result) == {"parsed", "executed", "error", "target_states_met", "task_success", "code", "unmet",
                           "calls", "progress"}
    assert result["code"] is None and info["state"].error == result["error"] and info["state"].steps == 1
    assert info["state"].world.state_key() == key and np.array_equal(obs["views"], obs0["views"])
    assert "Execution Error:\nResponse format error" in obs["text"] and obs in env.observation_space


def test_truncates_at_max_steps(env, eval_task, small):
    env.reset(options={"task": eval_task})
    for n in range(1, small.sim.max_steps + 1):
        _, reward, terminated, truncated, info = env.step("nonsense")
        assert reward == 0.0 and not terminated and truncated == (n == small.sim.max_steps)
    assert info["steps"] == small.sim.max_steps and not info["task_success"]
    with pytest.raises(gym.error.ResetNeeded):
        env.step("nonsense")


def test_depth_segmentation_and_render(small, eval_task, suite):
    env = OctoGibsonEnv(params=small, depth=True, segmentation=True, render_mode="rgb_array")
    obs, _ = env.reset(options={"task": eval_task})
    assert obs in env.observation_space
    assert obs["depth"].shape == (len(VIEWS), SIZE, SIZE) and (obs["depth"] > 0).all()
    assert obs["segmentation"].min() >= -1 and (obs["segmentation"] >= 0).any()
    sheet = env.render()
    assert sheet.ndim == 3 and sheet.shape[2] == 3 and sheet.dtype == np.uint8 and sheet.shape[1] > 5 * SIZE
    env.close()
    env.close()  # closing twice is allowed


def test_sanitize_keeps_text_in_the_space():
    space = gym.spaces.Text(max_length=TEXT_MAX, min_length=0, charset=CHARSET)
    text = sanitize("caf\u00e9 \u201cquoted\u201d\r\n\ttab \u2603 \x07")
    assert text == 'cafe "quoted"\n\ttab ? ?' and text in space
    long = sanitize("x" * (TEXT_MAX + 10))
    assert len(long) == TEXT_MAX and long.endswith("[...truncated]") and long in space


def test_clear_errors(small, suite):
    env = OctoGibsonEnv(params=small)
    with pytest.raises(gym.error.ResetNeeded, match="reset"):
        env.step("anything")
    with pytest.raises(ValueError, match="unknown task 'put_a_backpack_on_the_bedd'.*did you mean"):
        env.reset(options={"task": "put_a_backpack_on_the_bedd"})
    with pytest.raises(ValueError, match="unknown reset option"):
        env.reset(options={"tsk": "x"})
    with pytest.raises(ValueError, match="known backends: .*embedded.*omnigibson"):
        OctoGibsonEnv(params=small, backend="isaac")
    with pytest.raises(ValueError, match="split must be one of"):
        OctoGibsonEnv(params=small, split="test")
    with pytest.raises(ValueError, match="reward must be one of"):
        OctoGibsonEnv(params=small, reward="dense")
    with pytest.raises(FileNotFoundError, match="params_path"):
        OctoGibsonEnv(params_path="/nonexistent/params.yaml")


@pytest.mark.skipif(importlib.util.find_spec("omnigibson") is not None, reason="omnigibson is installed here")
def test_omnigibson_missing_says_how_to_install(small):
    with pytest.raises(BackendUnavailableError, match=r"pip install -e \.\[omnigibson\]"):
        make_backend("omnigibson", small)
    with pytest.raises(BackendUnavailableError, match="omnigibson is not installed"):
        OctoGibsonEnv(params=small, backend="omnigibson")


def test_backend_registry(small, suite, eval_task, monkeypatch):
    assert {"embedded", "omnigibson"} <= set(backend_names())
    backend = make_backend(None, small)  # params.sim.backend
    assert isinstance(backend, Backend) and backend.name == "embedded" and backend.task is None
    assert {t.split for t in backend.tasks("eval_unseen")} == {"eval_unseen"}
    with pytest.raises(ValueError, match="unknown split"):
        backend.tasks("nope")
    with pytest.raises(RuntimeError, match="reset"):
        backend.observe()
    backend.reset(eval_task)
    assert backend.observe().rgb.shape == (len(VIEWS), SIZE, SIZE, 3) and backend.max_steps == small.sim.max_steps
    backend.close()
    import octopus.sim.backends as backends
    monkeypatch.setattr(backends, "_REGISTRY", dict(backends._REGISTRY))  # keep the registration local
    register_backend("test-custom", lambda p, s: backend)
    assert "test-custom" in backend_names() and make_backend("test-custom", small) is backend


# ---------------------------------------------------------------------- snapshot / restore (trees)
def _response(code: str, target: str) -> str:
    body = "\n".join("    " + line for line in code.strip().splitlines())
    return (f"Explain:\ntest\n\nSubtasks:\n(1) do it\n\nCode:\n```python\ndef act(robot, env, camera):\n{body}\n```\n\n"
            f"Target States:\n(1) Inventory: None\n(2) Object Information:\n(a) {target}\n")


# executes, yet misses its target state: the world is put back, the step and its error count
UNMET = _response('t = registry(env, "breakfast_table_1")\nMoveBot(env, robot, t, camera)',
                  "robot, nextto, electric_refrigerator_1, 1")


def _without(info: dict, *keys: str) -> dict:
    return {k: v for k, v in info.items() if k not in keys}


def test_snapshot_restore_tries_a_failing_and_a_succeeding_response_from_one_state():
    env, obs0, info0 = kitchen_env(views=True)
    oracle = make_agent("oracle")
    try:
        # one good step in, so the saved state has history (previous code) to come back to
        obs1, _, _, _, info1 = env.step(oracle.respond(obs0, info0))
        assert info1["result"]["target_states_met"] and "Previous Action Code:\nNo code" not in obs1["text"]
        token, key1, good = env.snapshot(), info1["state"].world.state_key(), oracle.respond(obs1, info1)
        assert isinstance(token, EnvSnapshot)

        def back(obs: dict, info: dict) -> None:
            assert info["state"].world.state_key() == key1 and info["steps"] == info["state"].steps == 1
            assert info["state"].error is None and "Execution Error: No error" in info["message"]
            assert obs["text"] == obs1["text"] and np.array_equal(obs["views"], obs1["views"])
            assert _without(info, "state") == _without(info1, "state", "result")  # message, objects, progress, ...

        obs, _, terminated, truncated, info = env.step(UNMET)
        assert info["result"]["executed"] and not info["result"]["target_states_met"] and info["steps"] == 2
        assert "Target states not reached" in obs["text"] and info["state"].world.state_key() == key1
        back(*env.restore(token))

        obs, _, _, _, info = env.step(good)
        first = info["result"]
        assert first["target_states_met"] and info["state"].world.state_key() != key1
        assert not np.array_equal(obs["views"], obs1["views"]), "the world moved on, and so did the views"
        restored = env.restore(token)
        back(*restored)
        assert np.array_equal(restored[0]["views"], env.restore(token)[0]["views"]), "restoring twice is the same"

        _, _, _, _, info = env.step(good)
        assert info["result"] == first, "the same response from the restored state does the same again"
    finally:
        env.close()


def test_restore_reopens_an_ended_episode():
    env, obs, info = kitchen_env()
    oracle = make_agent("oracle")
    try:
        terminated = False
        while not terminated:
            before, text = env.snapshot(), oracle.respond(obs, info)
            obs, reward, terminated, truncated, info = env.step(text)
            assert not truncated
        assert reward == 1.0 and info["task_success"]
        with pytest.raises(gym.error.ResetNeeded):
            env.step(text)
        obs, info = env.restore(before)
        assert not info["task_success"] and info["progress"] < 1.0
        _, reward, terminated, _, info = env.step(text)
        assert terminated and reward == 1.0 and info["task_success"]
    finally:
        env.close()


def test_restore_refuses_a_stale_token_and_what_is_not_a_token(small, suite):
    env, _, info = kitchen_env()
    try:
        token = env.snapshot()
        env.step("nonsense")
        with pytest.raises(TypeError, match="what snapshot\\(\\) returned"):
            env.restore("token")
        with pytest.raises(TypeError):
            env.restore(env.backend.snapshot())  # the backend's own checkpoint is not the env's token
        env.reset(options={"task": "test_kitchen"})
        with pytest.raises(ValueError, match="another episode"):
            env.restore(token)
        fresh = env.snapshot()
        _, _, _, _, info = env.step("nonsense")
        assert env.restore(fresh)[1]["steps"] == 0, "a token of the current episode still works"
        other, _, _ = kitchen_env()  # another env's token is refused, whatever its reset count
        try:
            with pytest.raises(ValueError, match="another episode"):
                env.restore(other.snapshot())
        finally:
            other.close()
    finally:
        env.close()
    never = OctoGibsonEnv(params=small)
    with pytest.raises(gym.error.ResetNeeded, match="reset"):
        never.snapshot()
    never.close()


# ---------------------------------------------------------------------- views, privileged state, objects
def test_views_false_leaves_the_views_out_and_renders_nothing(small, suite, eval_task, monkeypatch):
    import octopus.sim.render as render

    def no_renderer(*args, **kwargs):
        raise AssertionError("views=False must not build a renderer")
    monkeypatch.setattr(render, "SceneRenderer", no_renderer)
    env = OctoGibsonEnv(params=small, views=False)
    assert set(env.observation_space.spaces) == {"text"}
    obs, info = env.reset(options={"task": eval_task})
    assert set(obs) == {"text"} and obs in env.observation_space
    assert "Task Goal: " + suite.get(eval_task).instruction in obs["text"] and "Observed Objects" in info["message"]
    obs, _, _, _, info = env.step("nonsense")
    assert set(obs) == {"text"} and obs in env.observation_space and "Response format error" in obs["text"]
    check_env(env, skip_render_check=True)
    env.close()
    with pytest.raises(ValueError, match="need views=True"):
        OctoGibsonEnv(params=small, views=False, depth=True)


def test_the_text_is_the_same_with_or_without_views(small, suite, eval_task):
    seeing, blind = OctoGibsonEnv(params=small), OctoGibsonEnv(params=small, views=False)
    a, info_a = seeing.reset(options={"task": eval_task})
    b, info_b = blind.reset(options={"task": eval_task})
    assert a["text"] == b["text"] and info_a == info_b
    seeing.close()
    blind.close()


def test_privileged_adds_the_true_state_to_info(small, suite, eval_task):
    env = OctoGibsonEnv(params=small, views=False, privileged=True)
    assert set(env.observation_space.spaces) == {"text"}, "the state is info, never part of the observation"
    obs, info = env.reset(options={"task": eval_task})
    state = info["state"]
    assert isinstance(state, SimState) and state.task == suite.get(eval_task) and "state" not in obs
    assert (state.steps, state.max_steps, state.error) == (0, small.sim.max_steps, None)
    assert state.goal.progress() == info["progress"] and not state.goal.satisfied()
    _, _, _, _, info = env.step("nonsense")
    assert info["state"].steps == 1 and info["state"].error == info["result"]["error"]
    assert info["state"].world is state.world, "the live world (agents must leave it as found)"
    env.close()


def test_info_objects_name_the_scene_with_distances(small, suite, eval_task):
    import re
    env = OctoGibsonEnv(params=small, views=False, privileged=True)
    _, info = env.reset(options={"task": eval_task})
    objects, world = info["objects"], info["state"].world
    assert objects == env.backend.objects() and objects
    assert set(objects) == {o.name for o in world.objects if o.kind in ("item", "furniture")}
    assert "robot" not in objects and all(isinstance(d, float) and d >= 0 for d in objects.values())
    observed = re.findall(r"\((\w+), \(", info["message"].split("Observed Relations:")[0])
    assert observed and set(observed) <= set(objects), "every name the message shows can be grounded"
    env.close()

    env, obs, info = kitchen_env()  # bacon hidden in the closed fridge: nameable, not observed
    try:
        assert "bacon_1" in info["objects"] and "bacon_1" not in info["message"]
        far = info["objects"]["electric_refrigerator_1"]
        _, _, _, _, info = env.step(_response('f = registry(env, "electric_refrigerator_1")\n'
                                              'MoveBot(env, robot, f, camera)', "robot, nextto, electric_refrigerator_1, 1"))
        assert info["result"]["target_states_met"] and info["objects"]["electric_refrigerator_1"] < far
        assert info["result"]["code"].startswith("def act(robot, env, camera):") and "MoveBot" in info["result"]["code"]
    finally:
        env.close()
