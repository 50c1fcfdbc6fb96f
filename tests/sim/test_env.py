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
from octopus.sim.env import CHARSET, ENV_ID, TEXT_MAX, OctoGibsonEnv, sanitize
from octopus.sim.render import VIEWS

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


def test_reset_is_deterministic_per_seed(env, suite):
    train = {t.id for t in suite.select("train")}
    drawn = []
    for seed in (3, 4, 5, 6, 3):
        obs, info = env.reset(seed=seed)
        drawn.append((info["task"], obs))
    assert all(task in train for task, _ in drawn)
    assert drawn[0][0] == drawn[-1][0] and np.array_equal(drawn[0][1]["views"], drawn[-1][1]["views"])
    assert len({task for task, _ in drawn}) > 1, "different seeds draw different tasks"


def test_oracle_reaches_the_goal_with_reward_one(env, eval_task):
    oracle = make_agent("oracle")
    obs, info = env.reset(options={"task": eval_task})
    rewards, terminated, truncated = [], False, False
    while not (terminated or truncated):
        obs, reward, terminated, truncated, info = env.step(oracle.respond(env.backend.episode))
        rewards.append(reward)
        assert obs in env.observation_space and info["result"]["target_states_met"], info["result"]["error"]
        assert info["result"]["calls"] and all(isinstance(c, list) for c in info["result"]["calls"])
    assert terminated and not truncated and info["task_success"] and info["result"]["progress"] == 1.0
    assert rewards[-1] == 1.0 and sum(rewards) == 1.0 and info["steps"] == len(rewards)
    with pytest.raises(gym.error.ResetNeeded, match="episode has ended"):
        env.step(oracle.respond(env.backend.episode))


def test_progress_reward_adds_goal_progress(small, eval_task, suite):
    env = OctoGibsonEnv(params=small, reward="progress")
    env.reset(options={"task": eval_task})
    start, oracle, total, done = env.backend.progress, make_agent("oracle"), 0.0, False
    while not done:
        _, reward, terminated, truncated, _ = env.step(oracle.respond(env.backend.episode))
        total, done = total + reward, terminated or truncated
    assert terminated and total == pytest.approx(1.0 + (1.0 - start))
    env.close()


def test_unparseable_text_is_a_failed_step_and_changes_nothing(env, eval_task):
    obs0, _ = env.reset(options={"task": eval_task})
    key = env.backend.episode.world.state_key()
    obs, reward, terminated, truncated, info = env.step("let me think about the bacon \u2014 caf\u00e9 \x00")
    assert reward == 0.0 and not terminated and not truncated and info["steps"] == 1
    result = info["result"]
    assert not result["parsed"] and not result["executed"] and result["error"].startswith("Response format error")
    assert set(result) == {"parsed", "executed", "error", "target_states_met", "task_success", "unmet", "calls",
                           "progress"}
    assert env.backend.episode.world.state_key() == key and np.array_equal(obs["views"], obs0["views"])
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
    register_backend("test-custom", lambda p: backend)
    assert "test-custom" in backend_names() and make_backend("test-custom", small) is backend
