"""The policy interface: one-line loading, batched generation equal to one at a time, grounded names; the policy
agent reads what the env shows it (views + text, or the full message for a blind policy)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from octopus.model.policy import Policy
from tests.helpers import prompt, views


def test_batched_generation_matches_one_at_a_time(tiny):
    obs = [{"text": prompt(g), "views": views(k)} for k, g in enumerate(("Cook the bacon", "Open the cabinet and "
                                                                         "put the apple in the fridge", "x"))]
    policy = Policy(tiny, max_new_tokens=12, batch_size=8, memo=False)
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


def _small(params):
    return replace(params, render=replace(params.render, size=32))


class Spy:
    """Wraps a Policy's respond to keep what the agent passed it."""

    def __init__(self, policy) -> None:
        self.policy, self.calls = policy, []

    def __call__(self, seen, objects=None):
        self.calls.append((seen, objects))
        return type(self.policy).respond(self.policy, seen, objects)


def test_policy_agent_acts_in_a_real_episode(tiny, suite, params, tmp_path):
    from octopus.agents import env_for, make_agent
    from octopus.agents.learned import PolicyAgent
    from octopus.sim.tasks import Suite
    tiny.save(tmp_path / "p")
    task, p = suite.evaluation()[0], _small(params)
    agent = make_agent("policy", model=tmp_path / "p", params=p)
    assert isinstance(agent, PolicyAgent) and agent.reads == {"views", "text", "objects"}
    spy = Spy(agent.policy)
    agent.policy.respond = spy
    env = env_for(agent, p, Suite([task]))
    try:
        assert env.views and not env.privileged  # the agent reads views; it gets no true state
        obs, info = env.reset(options={"task": task.id})
        assert obs["views"].shape == (10, 32, 32, 3) and "state" not in info
        text = agent.respond(obs, info)
        (seen, objects), = spy.calls
        assert set(seen) == {"views", "text"} and seen["views"] is obs["views"] and seen["text"] == obs["text"]
        assert "Task Goal:" in seen["text"] and "Observed Objects" not in seen["text"]
        assert objects == info["objects"] and agent.last_grounding is agent.policy.last_groundings[0]
        assert agent.last_grounding is not None and agent.last_grounding.text == text
        assert set(agent.last_grounding.mapping.values()) <= set(info["objects"])  # names grounded to the scene
        _, _, terminated, _, info = env.step(text)  # whatever an untrained model writes is a failed step, never a crash
        assert info["steps"] == 1 and not terminated and not info["task_success"]
    finally:
        env.close()


def test_an_ungrounded_policy_agent_does_not_read_the_objects(tiny, params, tmp_path):
    from octopus.agents import make_agent
    tiny.save(tmp_path / "p")
    agent = make_agent("policy", model=tmp_path / "p", params=params, ground=False)
    assert agent.reads == {"views", "text"}
    spy = Spy(agent.policy)
    agent.policy.respond = spy
    agent.respond({"views": views(0), "text": prompt()}, {"objects": {"apple_1": 1.0}})
    assert spy.calls[0][1] is None and agent.last_grounding is None


def test_a_blind_policy_agent_reads_the_ground_truth_observations_and_renders_nothing(suite, params, tmp_path,
                                                                                       monkeypatch):
    from octopus.agents import env_for, make_agent
    from octopus.config import ModelParams
    from octopus.model.factory import build_model
    from octopus.sim import render
    from octopus.sim.tasks import Suite
    from tests.helpers import TEXTS

    def no_renderer(*args, **kwargs):
        raise AssertionError("a blind policy's episode built a renderer")
    monkeypatch.setattr(render, "SceneRenderer", no_renderer)
    build_model(ModelParams(family="text", max_length=256, vocab_size=400), TEXTS * 4, seed=0).save(tmp_path / "b")
    agent = make_agent("policy", model=tmp_path / "b", params=params)
    assert agent.reads == {"message", "objects"}
    spy = Spy(agent.policy)
    agent.policy.respond = spy
    task = suite.evaluation()[0]
    env = env_for(agent, params, Suite([task]))
    try:
        assert not env.views and not env.privileged
        obs, info = env.reset(options={"task": task.id})
        assert set(obs) == {"text"}
        text = agent.respond(obs, info)
        (seen, objects), = spy.calls
        assert seen == {"message": info["message"]} and objects == info["objects"]
        assert "Observed Objects:" in seen["message"] and "Task Goal:" in seen["message"]
        _, _, _, _, info = env.step(text)
        assert info["steps"] == 1 and not info["task_success"]
    finally:
        env.close()


def test_a_greedy_policy_answers_an_input_it_has_seen_from_memory(tiny):
    """A stuck episode repeats its input (the same failed program, error and state): a greedy policy answers it
    without generating again, with the same text; sampling policies always generate."""
    from octopus.model.policy import Policy
    from tests.helpers import prompt, views
    pol = Policy(tiny, max_new_tokens=8, batch_size=4)
    a, b = {"text": prompt(), "views": views(0)}, {"text": prompt("Cook the bacon"), "views": views(1)}
    first = pol.respond_batch([a, b, a])
    assert pol.stats["responses"] == 2 and first[0] == first[2]  # the duplicate in one batch: generated once
    again = pol.respond_batch([b, a])
    assert again == [first[1], first[0]] and pol.stats["responses"] == 2 and pol.stats["memo_hits"] == 3
    changed = {"text": prompt(), "views": views(0).copy()}
    changed["views"][3, 0, 0, 0] ^= 1  # one pixel of one view: another input
    pol.respond_batch([changed])
    assert pol.stats["responses"] == 3
    sampler = Policy(tiny, max_new_tokens=8, temperature=1.0)
    sampler.respond_batch([a, a])
    assert sampler.stats["responses"] == 2 and not sampler._memo
