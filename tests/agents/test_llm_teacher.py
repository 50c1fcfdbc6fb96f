"""The LLM teacher against a real local OpenAI-compatible HTTP server: requests, samples, cache, retries, usage."""

from __future__ import annotations

import json
import socket
import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

import pytest

from octopus.agents import TeacherError, make_agent, make_teacher
from octopus.agents.llm import LLMAgent, LLMTeacher, parse_retry_after, request_seed
from octopus.config import CollectParams, LLMTeacherParams
from octopus.protocol import system_message

from tests.agents.conftest import SIM
from tests.agents.openai_server import VALID_RESPONSE, malformed, no_choices, ok, sleep, status


@pytest.fixture
def params(openai_server, tmp_path) -> LLMTeacherParams:
    return LLMTeacherParams(base_url=openai_server.url, model="test-model", api_key_env="OCTOPUS_TEST_LLM_KEY",
                            temperature=0.5, max_tokens=256, timeout_s=2.0, retries=2, backoff_s=0.0,
                            cache_dir=str(tmp_path / "llm-cache"))


def teacher_for(params: LLMTeacherParams, seed: int = 0, **changes) -> LLMTeacher:
    from dataclasses import replace
    return LLMTeacher(replace(params, **changes), SIM, seed)


def cache_files(params: LLMTeacherParams) -> list[Path]:
    return sorted(Path(params.cache_dir).rglob("*.json"))


def test_round_trip_sends_the_paper_prompt(openai_server, params, shown):
    obs, info = shown
    with teacher_for(params, seed=3) as teacher:
        [proposal] = teacher.propose(obs, info, 1)
        assert teacher.messages(info["message"]) == [{"role": "system", "content": system_message(SIM.reach_m)},
                                                     {"role": "user", "content": info["message"]}]
    [req] = openai_server.requests
    assert req.path == "/v1/chat/completions"
    body = req.body
    assert (body["model"], body["temperature"], body["max_tokens"], body["n"]) == ("test-model", 0.5, 256, 1)
    assert body["seed"] == request_seed(3, 0, 0)
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert body["messages"][0]["content"] == system_message(SIM.reach_m)
    user = body["messages"][1]["content"]
    # the FULL message (info["message"]), with the ground-truth objects and relations a text-only LLM needs
    assert user == info["message"] and user != obs["text"]
    assert "Observed Objects" in user and "Observed Relations" in user and "cook the bacon" in user
    assert obs["text"] in user, "the full message is the text observation plus the observed objects/relations"
    assert proposal.text == VALID_RESPONSE.format(index=0, seed=body["seed"])
    assert not proposal.cached and proposal.explore is None


def test_n_samples_when_the_server_ignores_n(openai_server, params, shown):
    openai_server.default = ok(choices=1)
    with teacher_for(params) as teacher:
        proposals = teacher.propose(*shown, 3)
    assert len(proposals) == 3 and len({p.text for p in proposals}) == 3
    bodies = [r.body for r in openai_server.requests]
    assert [b["n"] for b in bodies] == [3, 2, 1], "each further request asks only for what is missing"
    assert len({b["seed"] for b in bodies}) == 3
    assert teacher.usage()["requests"] == 3 and teacher.usage()["proposals"] == 3


def test_n_samples_in_one_request_when_the_server_honours_n(openai_server, params, shown):
    with teacher_for(params) as teacher:
        proposals = teacher.propose(*shown, 4)
    assert len(openai_server.requests) == 1 and len({p.text for p in proposals}) == 4
    openai_server.default = ok(choices=6)  # too many: only n are used
    with teacher_for(params, seed=1) as teacher:
        assert len(teacher.propose(*shown, 2)) == 2


def test_cache_reproduces_without_requests(openai_server, params, make_kitchen):
    with teacher_for(params, seed=5) as first:
        cold = [first.propose(*make_kitchen()[1:], 2) for _ in range(2)]
    seeds = [r.body["seed"] for r in openai_server.requests]
    assert len(seeds) == 2 and seeds[0] != seeds[1], "the call counter changes the seed for the same state"
    assert len(cache_files(params)) == 2

    with teacher_for(params, seed=5) as second:
        warm = [second.propose(*make_kitchen()[1:], 2) for _ in range(2)]
    assert len(openai_server.requests) == 2, "a rerun with the same seed makes no request"
    assert [[p.text for p in ps] for ps in warm] == [[p.text for p in ps] for ps in cold]
    assert all(p.cached for ps in warm for p in ps) and not any(p.cached for ps in cold for p in ps)
    u_cold, u_warm = first.usage(), second.usage()
    assert u_warm["requests"] == 0 and u_warm["cache_hits"] == 2 and u_warm["cost_usd"] == 0
    assert u_warm["cached_prompt_tokens"] == u_cold["prompt_tokens"] > 0
    assert u_warm["cached_completion_tokens"] == u_cold["completion_tokens"] > 0
    assert u_warm["cached_cost_usd"] == pytest.approx(u_cold["cost_usd"])

    with teacher_for(params, seed=6) as other:
        other.propose(*make_kitchen()[1:], 2)
    assert len(openai_server.requests) == 3, "another episode seed is another request"
    assert openai_server.requests[-1].body["seed"] not in seeds


def test_cache_key_ignores_endpoint_and_key(openai_server, params, shown, monkeypatch):
    with teacher_for(params) as teacher:
        text = teacher.propose(*shown, 1)[0].text
    monkeypatch.setenv("OCTOPUS_TEST_LLM_KEY", "sk-other")
    with teacher_for(params, base_url="http://127.0.0.1:9/v1") as moved:  # nothing listens there
        [hit] = moved.propose(*shown, 1)
    assert hit.cached and hit.text == text


def test_corrupt_cache_entries_are_ignored_and_rewritten(openai_server, params, shown):
    with teacher_for(params) as teacher:
        text = teacher.propose(*shown, 1)[0].text
    [path] = cache_files(params)
    for junk in ("{not json", json.dumps({"request": {"model": "someone else"}, "reply": {}}), ""):
        path.write_text(junk)
        with teacher_for(params) as again:
            [p] = again.propose(*shown, 1)
        assert not p.cached and p.text == text
        assert json.loads(path.read_text())["reply"]["choices"][0]["message"]["content"] == text
    assert len(openai_server.requests) == 4
    assert not [f for f in path.parent.iterdir() if f.suffix == ".tmp"], "no temporary files are left behind"


def test_no_cache_when_cache_dir_is_empty(openai_server, params, shown):
    for _ in range(2):
        with teacher_for(params, cache_dir="") as teacher:
            assert not teacher.propose(*shown, 1)[0].cached
    assert len(openai_server.requests) == 2


def test_retries_server_errors_then_succeeds(openai_server, params, shown):
    openai_server.push(status(500), status(503))
    with teacher_for(params) as teacher:
        [p] = teacher.propose(*shown, 1)
    u = teacher.usage()
    assert p.text.startswith("Explain:")
    assert (u["requests"], u["retries"], u["errors"], u["failures"]) == (3, 2, 2, 0)
    assert len({r.body["seed"] for r in openai_server.requests}) == 1, "a retry repeats the same request"


def test_429_honours_retry_after(openai_server, params, shown):
    openai_server.push(status(429, retry_after="0.3"))
    t0 = time.perf_counter()
    with teacher_for(params) as teacher:
        teacher.propose(*shown, 1)
    assert time.perf_counter() - t0 >= 0.3
    assert teacher.usage()["retries"] == 1 and len(openai_server.requests) == 2


def test_parse_retry_after():
    now = datetime(2025, 1, 1, tzinfo=timezone.utc)
    assert parse_retry_after("2") == 2.0 and parse_retry_after("0.5") == 0.5
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now) == 30.0
    assert parse_retry_after(format_datetime(now - timedelta(seconds=30), usegmt=True), now) == 0.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None and parse_retry_after("nan") is None


def test_timeouts_are_retried_then_fail_clearly(openai_server, params, shown):
    openai_server.default = sleep(2.0)
    with teacher_for(params, timeout_s=0.2) as teacher:
        with pytest.raises(TeacherError) as err:
            teacher.propose(*shown, 1)
    msg = str(err.value)
    assert openai_server.url in msg and "3 attempt" in msg and "timed out after 0.2s" in msg
    u = teacher.usage()
    assert (u["requests"], u["retries"], u["errors"], u["failures"]) == (3, 2, 3, 1)
    assert cache_files(params) == [], "failures are never cached"


def test_connection_refused_is_retried_then_fails(params, shown):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with teacher_for(params, base_url=f"http://127.0.0.1:{port}/v1", retries=1) as teacher:
        with pytest.raises(TeacherError, match="gave up after 2 attempt.*connection error"):
            teacher.propose(*shown, 1)


def test_client_errors_fail_at_once(openai_server, params, shown):
    openai_server.push(status(400, body='{"error": {"message": "unknown model test-model"}}'))
    with teacher_for(params) as teacher:
        with pytest.raises(TeacherError) as err:
            teacher.propose(*shown, 1)
    msg = str(err.value)
    assert "HTTP 400" in msg and "unknown model test-model" in msg and openai_server.url in msg
    assert len(openai_server.requests) == 1 and teacher.usage()["retries"] == 0


@pytest.mark.parametrize("bad,what", [(malformed, "not JSON"), (no_choices, "'choices'"),
                                      (lambda: ok(content=lambda body, i: None), "message.content")])
def test_malformed_replies_are_retried_once_then_fail(openai_server, params, shown, bad, what):
    openai_server.push(bad(), bad())
    with teacher_for(params) as teacher:
        with pytest.raises(TeacherError, match="malformed reply") as err:
            teacher.propose(*shown, 1)
    assert what in str(err.value) and "2 attempt" in str(err.value)
    assert len(openai_server.requests) == 2
    openai_server.push(bad())
    with teacher_for(params, seed=1) as teacher:
        assert teacher.propose(*shown, 1)[0].text.startswith("Explain:"), "one malformed reply is retried"


def test_usage_tokens_and_cost(openai_server, params, shown):
    openai_server.default = ok(choices=1, usage={"prompt_tokens": 1000, "completion_tokens": 500})
    with teacher_for(params, price_prompt_per_1k=0.01, price_completion_per_1k=0.02) as teacher:
        teacher.propose(*shown, 2)
    u = teacher.usage()
    assert (u["prompt_tokens"], u["completion_tokens"], u["estimated_usage"]) == (2000, 1000, 0)
    assert u["cost_usd"] == pytest.approx(2 * (0.01 + 0.01))
    assert all(isinstance(v, (int, float)) for v in u.values()), "the collect stage sums usage numerically"


def test_usage_is_estimated_when_the_server_omits_it(openai_server, params, shown):
    openai_server.default = ok(usage=False, content="x" * 400)
    with teacher_for(params) as teacher:
        teacher.propose(*shown, 1)
    u = teacher.usage()
    assert u["estimated_usage"] == 1 and u["completion_tokens"] == 100
    assert u["prompt_tokens"] >= len(shown[1]["message"]) // 4 and u["cost_usd"] > 0


def test_authorization_only_when_the_key_is_set(openai_server, params, shown, monkeypatch):
    monkeypatch.delenv("OCTOPUS_TEST_LLM_KEY", raising=False)
    with teacher_for(params) as teacher:
        teacher.propose(*shown, 1)
    monkeypatch.setenv("OCTOPUS_TEST_LLM_KEY", "sk-test")
    with teacher_for(params, seed=1) as teacher:
        teacher.propose(*shown, 1)
    first, second = ({k.lower(): v for k, v in r.headers.items()} for r in openai_server.requests)
    assert "authorization" not in first
    assert second["authorization"] == "Bearer sk-test"


def test_registered_as_teacher_and_agent(openai_server, params, shown):
    teacher = make_teacher("llm", CollectParams(teacher="llm", llm=params), SIM, seed=7)
    assert isinstance(teacher, LLMTeacher) and teacher.seed == 7 and teacher.params == params
    agent = make_agent("llm", params=params, sim=SIM)
    assert isinstance(agent, LLMAgent) and agent.respond(*shown).startswith("Explain:")
    default = make_agent("llm")
    assert default.teacher.params == LLMTeacherParams()


def test_the_env_steps_the_teachers_proposal(openai_server, params, kitchen):
    env, obs, info = kitchen
    with teacher_for(params) as teacher:
        [p] = teacher.propose(obs, info, 1)
    obs, reward, terminated, truncated, info = env.step(p.text)
    result = info["result"]
    assert result["parsed"] and result["executed"] and result["target_states_met"], result["error"]
    assert result["code"] is not None and "donothing(env)" in result["code"]
    assert info["steps"] == 1 and not (terminated or truncated) and reward == 0.0
    assert "Previous Action Code:" in info["message"] and "donothing" in info["message"]


def test_a_response_off_format_is_returned_not_raised(openai_server, params, kitchen):
    env, obs, info = kitchen
    openai_server.default = ok(content="I would cook the bacon.")
    with teacher_for(params) as teacher:
        [p] = teacher.propose(obs, info, 1)
    assert p.text == "I would cook the bacon."
    result = env.step(p.text)[4]["result"]
    assert not result["parsed"] and result["code"] is None and result["error"].startswith("Response format error")


def test_the_teacher_reads_the_message_and_env_for_shows_it_no_more(params):
    """A text-only teacher gets an env without views (nothing rendered) and without the privileged state."""
    from octopus.agents import env_for, reads_of
    from octopus.config import Params, RenderParams
    from octopus.sim.tasks import Suite
    from tests.helpers import COOK_BACON, kitchen_task
    teacher = teacher_for(params)
    assert reads_of(teacher) == {"message"} and reads_of(LLMAgent(params, SIM)) == {"message"}
    env = env_for(teacher, Params(sim=SIM, render=RenderParams(size=32)), Suite([kitchen_task(COOK_BACON, "t")]))
    try:
        assert "views" not in env.observation_space.spaces and not env.privileged
        obs, info = env.reset(options={"task": "t"})
        assert set(obs) == {"text"} and "state" not in info and "Observed Objects" in info["message"]
    finally:
        env.close()
