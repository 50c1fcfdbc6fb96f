"""Chat-completions requests -> observations: what is accepted, and a clear 4xx for everything else."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from octopus.serving import RequestError, ServeLimits, observation_content, parse_chat_request
from tests.helpers import prompt, views


def body(content, **extra) -> bytes:
    return json.dumps({"model": "m", "messages": [{"role": "system", "content": "the paper's system prompt"},
                                                  {"role": "user", "content": content}], **extra}).encode()


def png(array: np.ndarray, fmt: str = "PNG") -> str:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt)
    return f"data:image/{fmt.lower()};base64," + base64.b64encode(buf.getvalue()).decode()


def test_a_vision_request_gives_the_exact_pixels_and_text():
    v = views(3)
    req = parse_chat_request(body(observation_content(prompt(), v), n=2, max_tokens=5000, temperature=0.5),
                             reads_views=True)
    assert req.observation["text"] == prompt()
    assert req.observation["views"].dtype == np.uint8 and np.array_equal(req.observation["views"], v)  # PNG: lossless
    assert (req.n, req.max_tokens, req.temperature, req.model) == (2, ServeLimits().max_tokens, 0.5, "m")


def test_a_blind_request_is_the_full_message():
    req = parse_chat_request(body("Observed Objects: fridge_1\nTask Goal: x"), reads_views=False)
    assert req.observation == {"message": "Observed Objects: fridge_1\nTask Goal: x"}
    assert (req.n, req.max_tokens, req.temperature) == (1, None, None)


def test_jpeg_and_other_sizes_are_read():
    parts = [{"type": "text", "text": "t"}] + [{"type": "image_url", "image_url": {"url": png(v, "JPEG")}}
                                               for v in views(1, size=48)]
    assert parse_chat_request(body(parts), reads_views=True).observation["views"].shape == (10, 48, 48, 3)


def _parts(n: int = 10, url: str | None = None, size: int = 32) -> list:
    return [{"type": "text", "text": prompt()}] + [
        {"type": "image_url", "image_url": {"url": url or png(v)}} for v in views(0, size=size)[:n]]


def _mixed_sizes() -> list:
    parts = _parts()
    parts[-1]["image_url"]["url"] = png(views(0, size=16)[0])
    return parts


BAD = [  # (body, reads_views, status, code, words in the message)
    (b"{not json", True, 400, "invalid_json", "not valid JSON"),
    (b"\xff\xfe", True, 400, "invalid_json", "not valid JSON"),
    (b"[1, 2]", True, 400, "invalid_value", "JSON object"),
    (b'{"model": "m"}', True, 400, "missing_required_parameter", "'messages'"),
    (b'{"messages": []}', True, 400, "invalid_value", "'messages'"),
    (b'{"messages": [{"role": "assistant", "content": "x"}]}', True, 400, "invalid_value", "last message"),
    (b'{"messages": ["hello"]}', True, 400, "invalid_value", "last message"),
    (body(17), True, 400, "invalid_value", "string or a list"),
    (body([{"type": "audio"}]), True, 400, "invalid_value", "'type': 'text'"),
    (body(""), False, 400, "invalid_value", "no text"),
    (body("x" * 200_001), False, 400, "context_length_exceeded", "limit is 100000"),
    (body(prompt()), True, 400, "wrong_image_count", "expected 10 images"),
    (body(_parts(9)), True, 400, "wrong_image_count", "got 9"),
    (body(_parts(10) + _parts(1)[1:]), True, 400, "wrong_image_count", "got 11"),
    (body(_parts()), False, 400, "invalid_value", "blind"),
    (body(_parts(url="https://example.com/a.png")), True, 400, "invalid_image_url", "only base64 data URLs"),
    (body(_parts(url="data:image/png;base64,@@@@")), True, 400, "invalid_image_url", "not valid base64"),
    (body(_parts(url="data:image/png;base64," + base64.b64encode(b"not an image").decode())), True, 400,
     "invalid_image", "not a readable"),
    (body(_parts(1) + [{"type": "image_url", "image_url": {"url": png(np.zeros((1100, 8, 3), np.uint8))}}] * 9),
     True, 400, "invalid_image_size", "at most 1024"),
    (body(_mixed_sizes()), True, 400, "invalid_image_size", "one size"),
    (body("hi", stream=True), False, 400, "unsupported_value", "streaming"),
    (body("hi", n=0), False, 400, "invalid_value", "n must be an integer from 1 to 8"),
    (body("hi", n=True), False, 400, "invalid_value", "n must be"),
    (body("hi", max_tokens=-3), False, 400, "invalid_value", "max_tokens must be"),
    (body("hi", temperature="hot"), False, 400, "invalid_value", "temperature must be"),
    (body("hi", temperature=9), False, 400, "invalid_value", "temperature must be"),
    (body("hi", model=3), False, 400, "invalid_value", "model must be a string"),
    (b"[" * 100_000, True, 400, "invalid_json", "not valid JSON"),
]


@pytest.mark.parametrize("raw,reads_views,status,code,words", BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_bad_requests_are_clear_4xx(raw, reads_views, status, code, words):
    with pytest.raises(RequestError) as info:
        parse_chat_request(raw, reads_views=reads_views)
    err = info.value
    assert (err.status, err.code) == (status, code) and words in err.message, err.message
    assert err.body() == {"error": {"message": err.message, "type": "invalid_request_error", "param": err.param,
                                    "code": code}}


def test_body_size_limit_is_413():
    with pytest.raises(RequestError) as info:
        parse_chat_request(body("x" * 2000), reads_views=False, limits=ServeLimits(max_body_bytes=1000))
    assert info.value.status == 413 and "limit is 1000" in info.value.message
