"""OpenAI chat-completions requests in, policy observations out; every bad request a clear `RequestError`.

    req = parse_chat_request(body_bytes, reads_views=True, limits=ServeLimits())
    req.observation        # {"text", "views"} (vision policy) or {"message"} (blind policy)
    req.n, req.max_tokens, req.temperature, req.seed

What a request must look like: the last message is the user's observation. For a vision-language
policy its content is a list of parts: text parts (joined: the environment message without Observed
Objects/Relations, `obs["text"]`) and exactly 10 `image_url` parts whose URLs are `data:image/...;base64,`
PNG/JPEG images of one size (the views EGO-0 ... EGO-315, BEV-I, BEV-II, in that order). For a blind
policy the content is the full text message (`info["message"]`) and images are refused. Earlier
messages (the system prompt an LLM client sends, older turns) are ignored: the policy reads one
observation, as it was trained.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from octopus.agents.llm import image_data_url, observation_content  # noqa: F401 - what clients send, re-exported
from octopus.protocol.api import N_VIEWS

_DATA_URL = re.compile(r"^data:(image/[a-z0-9.+-]+)?(;[a-z0-9=.+-]+)*;base64,", re.I)
_IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF")


@dataclass(frozen=True)
class ServeLimits:
    """What one request may ask for (bigger ones get a 4xx, never a crash)."""

    max_body_bytes: int = 32 * 2**20      # the whole JSON body
    max_text_chars: int = 100_000         # the observation's text
    max_image_side: int = 1024            # pixels per side of one view
    max_n: int = 8                        # choices per request
    max_tokens: int = 1024                # completion tokens per choice (larger asks are clipped to it)


class RequestError(Exception):
    """A request the server refuses: HTTP `status` and an OpenAI-style error body."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code

    def body(self) -> dict[str, Any]:
        kind = "invalid_request_error" if self.status < 500 else "server_error"
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": self.code}}


@dataclass(frozen=True)
class ChatRequest:
    observation: dict[str, Any]
    n: int
    max_tokens: int | None      # None: the policy's own max_new_tokens
    temperature: float | None   # None: the policy's own temperature
    model: str | None
    seed: int | None = None     # sampling with a seed: the same request and seed, the same choices


def _bad(message: str, param: str | None = None, code: str | None = "invalid_value") -> RequestError:
    return RequestError(400, message, param, code)


def parse_chat_request(body: bytes, reads_views: bool, limits: ServeLimits = ServeLimits()) -> ChatRequest:
    """Validate a chat-completions body and build the observation the policy reads (RequestError if bad)."""
    if len(body) > limits.max_body_bytes:
        raise RequestError(413, f"the request body is {len(body)} bytes; the limit is {limits.max_body_bytes}",
                           code="request_too_large")
    try:
        req = json.loads(body)
    except (ValueError, RecursionError) as err:  # UnicodeDecodeError is a ValueError
        raise _bad(f"the body is not valid JSON ({type(err).__name__}: {str(err)[:200]})", code="invalid_json")
    if not isinstance(req, dict):
        raise _bad(f"the body must be a JSON object, got a JSON {type(req).__name__}")
    if req.get("stream"):
        raise _bad("streaming is not supported: send stream=false", "stream", "unsupported_value")
    n = _int(req, "n", 1, 1, limits.max_n)
    max_tokens = _int(req, "max_tokens", None, 1, None)
    if max_tokens is None:
        max_tokens = _int(req, "max_completion_tokens", None, 1, None)
    if max_tokens is not None:
        max_tokens = min(max_tokens, limits.max_tokens)
    temperature = req.get("temperature")
    if temperature is not None and (isinstance(temperature, bool) or not isinstance(temperature, (int, float))
                                    or not 0 <= temperature <= 2):
        raise _bad(f"temperature must be a number in [0, 2], got {temperature!r:.40}", "temperature")
    seed = _int(req, "seed", None, -2 ** 63, 2 ** 64 - 1)  # torch.manual_seed's range
    model = req.get("model")
    if model is not None and not isinstance(model, str):
        raise _bad(f"model must be a string, got {type(model).__name__}", "model")
    messages = req.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("'messages' must be a non-empty list of chat messages", "messages",
                   "missing_required_parameter" if messages is None else "invalid_value")
    last = messages[-1]
    if not isinstance(last, dict) or last.get("role") != "user":
        raise _bad("the last message must be the user's observation ({'role': 'user', 'content': ...})",
                   f"messages[{len(messages) - 1}]")
    text, images = _content(last.get("content"), f"messages[{len(messages) - 1}].content")
    if len(text) > limits.max_text_chars:
        raise _bad(f"the observation text is {len(text)} characters; the limit is {limits.max_text_chars}",
                   f"messages[{len(messages) - 1}].content", "context_length_exceeded")
    if not text.strip():
        raise _bad("the observation has no text (the environment message)", f"messages[{len(messages) - 1}].content")
    if not reads_views:
        if images:
            raise _bad("this policy is blind (text family): send the full text message without images",
                       f"messages[{len(messages) - 1}].content")
        return ChatRequest({"message": text}, n, max_tokens, float(temperature) if temperature is not None else None,
                           model, seed)
    if len(images) != N_VIEWS:
        raise _bad(f"expected {N_VIEWS} images (EGO-0 ... EGO-315, BEV-I, BEV-II as image_url data URLs), "
                   f"got {len(images)}", f"messages[{len(messages) - 1}].content", "wrong_image_count")
    views = _decode_views(images, limits, f"messages[{len(messages) - 1}].content")
    return ChatRequest({"text": text, "views": views}, n, max_tokens,
                       float(temperature) if temperature is not None else None, model, seed)


def _int(req: dict, key: str, default: int | None, lo: int, hi: int | None) -> int | None:
    value = req.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
        bounds = f"from {lo} to {hi}" if hi is not None else f"of at least {lo}"
        raise _bad(f"{key} must be an integer {bounds}, got {value!r:.40}", key)
    return value


def _content(content: Any, where: str) -> tuple[str, list[tuple[str, str]]]:
    """(joined text, [(image url, where)]) of a message's content: a string or a list of typed parts."""
    if isinstance(content, str):
        return content, []
    if not isinstance(content, list):
        raise _bad(f"{where} must be a string or a list of content parts, got {type(content).__name__}", where)
    texts, images = [], []
    for i, part in enumerate(content):
        at = f"{where}[{i}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if not isinstance(url, str):
                raise _bad(f"{at}.image_url.url must be a string (a data:image/...;base64,... URL)", at)
            images.append((url, at))
        else:
            raise _bad(f"{at} must be {{'type': 'text', 'text': str}} or {{'type': 'image_url', "
                       f"'image_url': {{'url': 'data:image/png;base64,...'}}}}, got {str(part)[:80]!r}", at)
    return "\n".join(texts), images


def _decode_views(images: list[tuple[str, str]], limits: ServeLimits, where: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError
    views = []
    for url, at in images:
        m = _DATA_URL.match(url[:200])
        if not m:
            raise _bad(f"{at}: only base64 data URLs are accepted (data:image/png;base64,...), got "
                       f"{url[:40]!r}", at, "invalid_image_url")
        try:
            raw = base64.b64decode(url[m.end():], validate=True)
        except (binascii.Error, ValueError) as err:
            raise _bad(f"{at}: the data URL is not valid base64 ({err})", at, "invalid_image_url")
        try:
            with Image.open(io.BytesIO(raw), formats=_IMAGE_FORMATS) as im:
                w, h = im.size
                if max(w, h) > limits.max_image_side or min(w, h) < 1:
                    raise _bad(f"{at}: image is {w}x{h} px; each side must be at most {limits.max_image_side}",
                               at, "invalid_image_size")
                views.append(np.asarray(im.convert("RGB"), dtype=np.uint8))
        except RequestError:
            raise
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError, SyntaxError) as err:
            raise _bad(f"{at}: not a readable PNG/JPEG image ({type(err).__name__}: {str(err)[:120]})", at,
                       "invalid_image")
    shapes = {v.shape for v in views}
    if len(shapes) != 1:
        sizes = ", ".join(f"{s[1]}x{s[0]}" for s in sorted(shapes))
        raise _bad(f"all {N_VIEWS} views must have one size, got {sizes}", where, "invalid_image_size")
    return np.stack(views)
