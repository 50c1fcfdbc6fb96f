"""The policy interface: one-line loading, batched generation equal to one at a time, grounded names."""

from __future__ import annotations

import pytest

from octopus.model.policy import Policy
from tests.helpers import prompt, views


def test_batched_generation_matches_one_at_a_time(tiny):
    obs = [{"text": prompt(g), "views": views(k)} for k, g in enumerate(("Cook the bacon", "Open the cabinet and "
                                                                         "put the apple in the fridge", "x"))]
    policy = Policy(tiny, max_new_tokens=12, batch_size=8)
    batched = policy.respond_batch(obs)
    policy.batch_size = 1
    assert policy.respond_batch(obs) == batched  # left padding changes nothing
    assert policy.stats["responses"] == 6 and policy.stats["generated_tokens"] > 0


def test_loaded_in_one_line_and_names_grounded(tiny, tmp_path):
    tiny.save(tmp_path / "p")
    policy = Policy.from_pretrained(tmp_path / "p", max_new_tokens=8)
    scene = {"apple_1": 2.0, "apple_2": 0.5}
    text = policy.respond({"text": prompt(), "views": views(0)}, objects=scene)
    assert isinstance(text, str) and policy.last_groundings[0] is not None
    # the post-processing itself, on a response naming an object the scene lacks
    from octopus.model.postprocess import ground_names
    from tests.helpers import response
    g = ground_names(response("apple_7"), scene)
    assert g.mapping == {"apple_7": "apple_2"} and "apple_7" not in g.text


def test_object_maps_must_match_observations(tiny):
    with pytest.raises(ValueError, match="2 object maps for 1 observations"):
        Policy(tiny, max_new_tokens=4).respond_batch([{"text": prompt(), "views": views(0)}], [{}, {}])


def test_policy_agent_acts_in_a_real_episode(tiny, suite, params, tmp_path):
    from octopus.agents import make_agent
    from octopus.sim.episode import Episode
    tiny.save(tmp_path / "p")
    task = suite.evaluation()[0]
    agent = make_agent("policy", model=tmp_path / "p", params=params)
    episode = Episode(task, params.sim)
    try:
        text = agent.respond(episode)
        result = episode.step(text)  # whatever an untrained model writes is a failed step, never a crash
        assert result.step == 1 and not result.task_success
        obs = agent.observation(episode)
        assert obs["views"].shape == (10, params.render.size, params.render.size, 3)
        assert "Task Goal:" in obs["text"] and "Observed Objects" not in obs["text"]
    finally:
        agent.close()


def test_a_blind_policy_agent_reads_the_ground_truth_observations_and_renders_nothing(suite, params, tmp_path):
    from octopus.agents import make_agent
    from octopus.config import ModelParams
    from octopus.model.factory import build_model
    from octopus.sim.episode import Episode
    from tests.helpers import TEXTS
    build_model(ModelParams(family="text", max_length=256, vocab_size=400), TEXTS * 4, seed=0).save(tmp_path / "b")
    agent = make_agent("policy", model=tmp_path / "b", params=params)
    episode = Episode(suite.evaluation()[0], params.sim)
    obs = agent.observation(episode)
    assert set(obs) == {"message"} and obs["message"] == episode.message(with_observations=True).render()
    assert "Observed Objects:" in obs["message"] and "Task Goal:" in obs["message"]
    result = episode.step(agent.respond(episode))
    assert result.step == 1 and agent._renderer is None
