"""The served policy over HTTP: same answers as the policy itself, batched, and never brought down by a request."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from fastapi.testclient import TestClient

from octopus.serving import ServeConfig, ServeLimits, ServerThread, create_app, observation_content
from tests.helpers import prompt, views


def chat(content, **extra) -> dict:
    return {"model": "tiny", "messages": [{"role": "system", "content": "system prompt"},
                                          {"role": "user", "content": content}], **extra}


def test_a_served_response_is_the_policys_own(vision_policy):
    with TestClient(create_app(vision_policy, "tiny")) as client:
        r = client.post("/v1/chat/completions", json=chat(observation_content(prompt(), views(5))))
        assert r.status_code == 200, r.text
        reply = r.json()
        assert reply["object"] == "chat.completion" and reply["model"] == "tiny"
        assert reply["choices"][0]["message"] == {"role": "assistant", "content": vision_policy.respond(
            {"text": prompt(), "views": views(5)})}
        assert reply["choices"][0]["finish_reason"] in ("stop", "length")
        assert reply["usage"]["total_tokens"] == reply["usage"]["prompt_tokens"] + reply["usage"]["completion_tokens"]
        assert client.get("/v1/models").json()["data"][0]["id"] == "tiny"


def test_n_choices_and_max_tokens(vision_policy):
    with TestClient(create_app(vision_policy, "tiny")) as client:
        r = client.post("/v1/chat/completions", json=chat(observation_content(prompt(), views(5)), n=3, max_tokens=4))
        choices = r.json()["choices"]
        assert [c["index"] for c in choices] == [0, 1, 2]
        assert len({c["message"]["content"] for c in choices}) == 1  # greedy: the same answer three times
        assert all(c["finish_reason"] == "length" for c in choices)  # random weights never stop within 4 tokens
        assert len(vision_policy.pm.tokenizer(choices[0]["message"]["content"])["input_ids"]) <= 4
        assert vision_policy.max_new_tokens == 16  # the request's cap did not stick


def test_a_blind_policy_reads_the_text_message(blind_policy):
    message = "Observed Objects: fridge_1 (closed, 1.2 m)\n" + prompt()
    with TestClient(create_app(blind_policy, "blind")) as client:
        r = client.post("/v1/chat/completions", json=chat(message, model="blind"))
        assert r.json()["choices"][0]["message"]["content"] == blind_policy.respond({"message": message})
        r = client.post("/v1/chat/completions", json=chat(observation_content(prompt(), views(0)), model="blind"))
        assert r.status_code == 400 and "blind" in r.json()["error"]["message"]


def test_malformed_requests_get_4xx_and_the_server_keeps_answering(vision_policy):
    good = chat(observation_content(prompt(), views(1)))
    bad = [("post", "/v1/chat/completions", {"content": b"{oops"}, 400, "invalid_json"),
           ("post", "/v1/chat/completions", {"json": {"messages": None}}, 400, "missing_required_parameter"),
           ("post", "/v1/chat/completions", {"json": chat("no images")}, 400, "wrong_image_count"),
           ("post", "/v1/chat/completions", {"json": {**good, "model": "gpt-4"}}, 404, "model_not_found"),
           ("post", "/v1/chat/completions", {"content": b"x" * 200_001}, 413, "request_too_large"),
           ("get", "/v1/chat/completions", {}, 405, "method_not_allowed"),
           ("get", "/v1/completions", {}, 404, "not_found")]
    config = ServeConfig(limits=ServeLimits(max_body_bytes=200_000))  # 10 views of 32 px take ~55 kB
    with TestClient(create_app(vision_policy, "tiny", config)) as client:
        for method, path, kwargs, status, code in bad:
            r = getattr(client, method)(path, **kwargs)
            assert r.status_code == status, (path, r.text)
            error = r.json()["error"]
            assert error["code"] == code and error["message"] and error["type"] == "invalid_request_error"
            assert client.post("/v1/chat/completions", json=good).status_code == 200


def test_a_failed_batch_is_a_500_for_that_batch_only(vision_policy, monkeypatch):
    real = vision_policy.respond_batch
    calls = []

    def flaky(observations, *args):
        calls.append(len(observations))
        if len(calls) == 1:
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(observations, *args)
    monkeypatch.setattr(vision_policy, "respond_batch", flaky)
    with TestClient(create_app(vision_policy, "tiny")) as client:
        good = chat(observation_content(prompt(), views(1)))
        r = client.post("/v1/chat/completions", json=good)
        assert r.status_code == 500 and "CUDA out of memory" in r.json()["error"]["message"]
        assert client.post("/v1/chat/completions", json=good).status_code == 200


def _wait_for(condition, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the server"
        time.sleep(0.005)


@pytest.mark.slow
def test_concurrent_requests_are_batched_into_one_generate(vision_policy, monkeypatch):
    """8 clients at once over real HTTP: 2 generate calls for 8 requests, each answer the policy's own."""
    observations = [{"text": prompt(error=f"error {i}"), "views": views(i)} for i in range(8)]
    expected = vision_policy.respond_batch(observations)
    gate, real = threading.Event(), vision_policy.respond_batch

    def gated(obs, *args):  # hold the first batch until every other request is queued, so batching is certain
        gate.wait(30)
        return real(obs, *args)
    monkeypatch.setattr(vision_policy, "respond_batch", gated)
    with ServerThread(create_app(vision_policy, "tiny", ServeConfig(max_batch=8, window_ms=20))) as server:
        def ask(i: int) -> str:
            r = httpx.post(server.url + "/chat/completions", timeout=60,
                           json=chat(observation_content(observations[i]["text"], observations[i]["views"])))
            return r.json()["choices"][0]["message"]["content"]
        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(ask, i) for i in range(8)]
            batcher = server.batcher
            _wait_for(lambda: batcher.in_flight and batcher.in_flight + batcher.pending == 8)
            gate.set()
            answers = [f.result() for f in futures]
        assert answers == expected  # greedy, left-padded: batching does not change an answer
        assert sum(batcher.batches) == 8 and len(batcher.batches) <= 2, batcher.batches


@pytest.mark.slow
def test_a_full_queue_is_429_with_retry_after(vision_policy, monkeypatch):
    gate, real = threading.Event(), vision_policy.respond_batch
    monkeypatch.setattr(vision_policy, "respond_batch", lambda obs, *a: (gate.wait(30), real(obs, *a))[1])
    body = chat(observation_content(prompt(), views(2)))
    with ServerThread(create_app(vision_policy, "tiny", ServeConfig(max_batch=1, window_ms=0, max_queue=1))) as server:
        url, batcher = server.url + "/chat/completions", server.batcher
        with ThreadPoolExecutor(2) as pool:
            first = pool.submit(httpx.post, url, json=body, timeout=60)
            _wait_for(lambda: batcher.in_flight == 1)   # the worker is generating the first
            second = pool.submit(httpx.post, url, json=body, timeout=60)
            _wait_for(lambda: batcher.pending == 1)     # the second waits in the queue: it is full
            third = httpx.post(url, json=body, timeout=60)
            assert third.status_code == 429 and third.headers["retry-after"] == "1"
            assert third.json()["error"]["code"] == "rate_limit_exceeded"
            gate.set()
            assert first.result().status_code == second.result().status_code == 200


@pytest.mark.slow
def test_the_load_test_reports_both_sides(vision_policy):
    from octopus.serving.bench import run_serve_bench, synthetic_observations
    observations = synthetic_observations(4, 32, reads_views=True)
    assert len({o["text"] for o in observations}) == 4 and observations[0]["views"].shape == (10, 32, 32, 3)
    report = run_serve_bench(vision_policy, observations, clients=2, repeats=1)
    assert report["served"]["failed"] == 0 and 1 <= report["served"]["mean_batch"] <= 2
    for side in ("direct", "served"):
        assert report[side]["responses_per_s"] > 0 and 0 < report[side]["p50_s"] <= report[side]["p99_s"]
    assert report["throughput_ratio"] == pytest.approx(
        report["served"]["responses_per_s"] / report["direct"]["responses_per_s"], rel=0.01)
    vision_policy.batch_size = 8


def test_a_seeded_sampling_request_gives_the_same_choices_whatever_arrives_with_it(vision_policy):
    content = observation_content(prompt(), views(2))
    with ServerThread(create_app(vision_policy, "tiny", ServeConfig(max_batch=8, window_ms=50))) as server:
        def ask(seed=None, n=2, **extra) -> list[str]:
            r = httpx.post(server.url + "/chat/completions", timeout=60,
                           json=chat(content, temperature=1.0, n=n, max_tokens=8, **({"seed": seed} if seed is not None
                                                                                      else {}), **extra))
            assert r.status_code == 200, r.text
            return [c["message"]["content"] for c in r.json()["choices"]]
        alone = ask(seed=7)
        with ThreadPoolExecutor(6) as pool:  # the same request among others sampling at the same time
            crowd = [pool.submit(ask, seed=s) for s in (7, 8, None, 7, None, 8)]
            answers = [f.result() for f in crowd]
        assert answers[0] == answers[3] == alone
        assert answers[1] == answers[5] != alone  # another seed, other samples (random weights: near certain)
        assert len(set(alone)) == 2  # the n choices of one request are still two samples
        bad = httpx.post(server.url + "/chat/completions", timeout=60, json=chat(content, seed="seven"))
        assert bad.status_code == 400 and bad.json()["error"]["param"] == "seed"
