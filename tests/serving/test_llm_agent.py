"""The `llm` agent pointed at `octopus serve`: a trained policy evaluated (or teaching) like any LLM."""

from __future__ import annotations

import pytest

from octopus.agents import make_agent, make_teacher
from octopus.config import CollectParams, LLMTeacherParams, SimParams
from octopus.serving import ServerThread, create_app
from tests.helpers import COOK_BACON, kitchen_env

SIM = SimParams(sandbox_timeout_s=1.0, max_steps=3)


def llm_params(url: str, model: str, tmp_path, images: bool) -> LLMTeacherParams:
    return LLMTeacherParams(base_url=url, model=model, temperature=0.0, max_tokens=16, retries=0,
                            cache_dir=str(tmp_path / "llm-cache"), images=images)


@pytest.mark.slow
def test_an_episode_with_the_llm_agent_against_a_served_vision_policy(vision_policy, tmp_path):
    with ServerThread(create_app(vision_policy, "octopus")) as server:
        agent = make_agent("llm", params=llm_params(server.url, "octopus", tmp_path, images=True), sim=SIM, seed=0)
        assert agent.reads == {"views", "text"}
        env, obs, info = kitchen_env(COOK_BACON, "served_kitchen", "cook the bacon", sim=SIM, views=True,
                                     privileged=False)
        done, steps = False, 0
        while not done:
            text = agent.respond(obs, info)
            assert text == vision_policy.respond(vision_policy.observe(obs, info))  # what the policy says itself
            obs, _, terminated, truncated, info = env.step(text)
            done, steps = terminated or truncated, steps + 1
        env.close()
        assert steps == info["steps"] == SIM.max_steps and not info["task_success"]  # random weights: never solved
        assert info["message"] and sum(server.batcher.batches) == SIM.max_steps  # every step asked the server
        usage = agent.usage()
        assert usage["requests"] == SIM.max_steps and usage["completion_tokens"] > 0 and not usage["failures"]


@pytest.mark.slow
def test_the_llm_teacher_proposes_from_a_served_blind_policy(blind_policy, tmp_path):
    with ServerThread(create_app(blind_policy, "blind")) as server:
        collect = CollectParams(teacher="llm", llm=llm_params(server.url, "blind", tmp_path, images=False))
        teacher = make_teacher("llm", collect, SIM, seed=1)
        assert teacher.reads == {"message"}
        env, obs, info = kitchen_env(COOK_BACON, "served_kitchen", "cook the bacon", sim=SIM, privileged=False)
        proposals = teacher.propose(obs, info, n=2)
        env.close()
        expected = blind_policy.respond({"message": info["message"]})
        assert [p.text for p in proposals] == [expected, expected]  # greedy: n=2 asks for the same answer twice
        assert server.batcher.batches == [2]  # one request with n=2, one generate
