"""evaluate.views (the paper's vision ablation, Fig. 6c): a policy row is shown its views as they are, in a
random order, or replaced by noise; text-only observations are left alone."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from octopus.agents.learned import perturb_views
from octopus.config import ConfigError, parse_params
from tests.helpers import SIZE, TEXTS, prompt, views


def test_shuffle_reorders_the_same_views_and_noise_replaces_them():
    obs = {"views": views(3), "text": prompt()}
    assert perturb_views(obs, "normal") is obs
    shuffled = perturb_views(obs, "shuffle", seed=0)["views"]
    order = [next(j for j in range(10) if np.array_equal(v, obs["views"][j])) for v in shuffled]
    assert sorted(order) == list(range(10)) and order != list(range(10))  # a permutation, not the identity
    again = perturb_views(obs, "shuffle", seed=0)["views"]
    assert np.array_equal(shuffled, again)  # same step and seed: same order
    noise = perturb_views(obs, "noise", seed=0)["views"]
    assert noise.shape == obs["views"].shape and noise.dtype == np.uint8
    assert not any(np.array_equal(n, v) for n, v in zip(noise, obs["views"]))
    assert np.array_equal(obs["views"], views(3))  # the env's observation is not modified
    assert perturb_views({"message": "x"}, "noise") == {"message": "x"}  # a blind observation: nothing to perturb
    with pytest.raises(ValueError, match="unknown mode 'blur'"):
        perturb_views(obs, "blur")


def test_params_accept_only_known_view_modes():
    assert parse_params({"evaluate": {"views": "shuffle"}}).evaluate.views == "shuffle"
    with pytest.raises(ConfigError, match="evaluate.views: must be one of normal, shuffle, noise"):
        parse_params({"evaluate": {"views": "blur"}})


def test_an_evaluation_row_shows_its_policy_the_perturbed_views(tmp_path, params):
    from octopus.config import ModelParams
    from octopus.evaluation.rows import _policy_row
    from octopus.model.factory import build_model
    build_model(ModelParams(image_size=SIZE, max_length=256, vocab_size=400, max_new_tokens=8), TEXTS * 4,
                seed=0).save(tmp_path / "p")
    p = replace(params, evaluate=replace(params.evaluate, views="shuffle"),
                model=replace(params.model, max_new_tokens=8))  # what the model writes does not matter here
    agent = _policy_row("octopus", "sft", tmp_path / "p", "").make(p, 0)
    seen = []
    respond = agent.policy.respond
    agent.policy.respond = lambda o, objects=None: seen.append(o) or respond(o, objects)
    obs = {"views": views(5), "text": prompt()}
    agent.respond(obs, {"objects": {"apple_1": 1.0}})
    assert np.array_equal(seen[0]["views"], perturb_views(obs, "shuffle", p.evaluate.seed)["views"])
    assert not np.array_equal(seen[0]["views"], obs["views"]) and seen[0]["text"] == obs["text"]
