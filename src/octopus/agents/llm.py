"""The LLM teacher: any OpenAI-compatible chat endpoint writes responses in the paper's format.

    teacher = LLMTeacher(params.collect.llm, params.sim, seed=episode_seed)
    proposals = teacher.propose(obs, info, n=3)   # POST {base_url}/chat/completions
    teacher.usage()                               # requests, cache hits, retries, tokens, cost_usd

Each proposal is one chat completion for the paper's system message and the episode's full text
environment message; with `images: true` the user message is instead what a vision-language policy reads:
the text part of the message (`obs["text"]`) and the 10 views as PNG data URLs (e.g. for `octopus serve`). Answers are cached on disk, keyed by the request (not the endpoint or key), so a
rerun of the collect stage with the same seeds reproduces the same data without a single request.
The request `seed` derives from the teacher's seed and a call counter: different episodes (seeds) and
different calls of one episode never share a cache entry, while a rerun repeats the same sequence.

Failure policy: timeouts, connection errors, HTTP 429 and 5xx are retried `retries` times with
exponential backoff (doubling from `backoff_s`, up to 10% jitter, at least a capped `Retry-After`).
Other HTTP errors fail at once. A 2xx reply that is not JSON or lacks `choices[i].message.content` is
retried once (a proxy may truncate a body), then fails. Every failure is a `TeacherError` naming the URL.
The response text is returned as written: a reply that ignores the paper's format is the episode's
failed step (parsed=False), not an error here.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import io
import json
import logging
import math
import os
import random
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from octopus.agents import Proposal, TeacherError, register, register_teacher
from octopus.config import CollectParams, LLMTeacherParams, SimParams
from octopus.protocol import system_message
from octopus.files import write_atomic

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 60.0        # longest wait between two attempts from the doubling alone
RETRY_AFTER_CAP_S = 60.0    # a server's Retry-After is honoured up to this many seconds
MALFORMED_RETRIES = 1       # a malformed 2xx reply is retried at most this many times
_SNIPPET = 300              # characters of a reply body quoted in an error


class _Retryable(Exception):
    """An attempt that failed in a way worth repeating (`wait`: the server's Retry-After, capped)."""

    def __init__(self, message: str, wait: float | None = None) -> None:
        super().__init__(message)
        self.wait = wait


class _Malformed(Exception):
    """A 2xx reply that is not a chat completion."""


def request_seed(seed: int, call: int, round_: int) -> int:
    """The `seed` sent with a request: a 31-bit hash of (teacher seed, call number, round within the call)."""
    digest = hashlib.sha256(f"octopus-llm:{seed}:{call}:{round_}".encode()).digest()
    return int.from_bytes(digest[:4], "big") >> 1


def cache_key(request: dict) -> str:
    """sha256 of the canonical JSON of a request body (model, messages, sampling, n, seed)."""
    blob = json.dumps(request, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delay in seconds or an HTTP date); None if absent/invalid."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - (now or datetime.now(timezone.utc))).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None


def reply_texts(reply: object) -> list[str]:
    """The `choices[i].message.content` strings of a chat completion, in `index` order."""
    if not isinstance(reply, dict):
        raise _Malformed(f"the reply is a JSON {type(reply).__name__}, not an object")
    choices = reply.get("choices")
    if not isinstance(choices, list) or not choices:
        extra = f" (server error: {str(reply['error'])[:_SNIPPET]})" if "error" in reply else ""
        raise _Malformed(f"the reply has no non-empty 'choices' list{extra}")
    texts = []
    for i, choice in sorted(enumerate(choices), key=_choice_index):
        message = choice.get("message") if isinstance(choice, dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, str):
            raise _Malformed(f"choices[{i}].message.content is missing or not a string")
        texts.append(content)
    return texts


def _choice_index(pair: tuple[int, object]) -> int:
    position, choice = pair
    index = choice.get("index") if isinstance(choice, dict) else None
    return index if isinstance(index, int) else position


def image_data_url(view: np.ndarray) -> str:
    """One (H, W, 3) uint8 view as a PNG data URL (what clients send; lossless, so the policy sees the env's pixels)."""
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(np.asarray(view, dtype=np.uint8)).save(buf, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def observation_content(text: str, views: np.ndarray | None) -> str | list[dict[str, Any]]:
    """A user message's content for an observation: the text, then the 10 views as data URLs (or the text alone)."""
    if views is None:
        return text
    return [{"type": "text", "text": text}] + [{"type": "image_url", "image_url": {"url": image_data_url(v)}}
                                               for v in views]


def _text_of(content: str | list) -> str:
    """A message's text: the string, or its text parts (images are not counted)."""
    if isinstance(content, str):
        return content
    return "\n".join(p.get("text", "") for p in content if isinstance(p, dict))


def _estimate_tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4))


class LLMTeacher:
    """Proposes responses from an OpenAI-compatible chat endpoint, cached on disk and accounted for."""

    name = "llm"

    def __init__(self, params: LLMTeacherParams, sim: SimParams, seed: int = 0) -> None:
        self.params, self.sim, self.seed = params, sim, seed
        self.reads = frozenset({"views", "text"} if params.images else {"message"})
        self.url = params.base_url.rstrip("/") + "/chat/completions"
        self.cache_dir = Path(params.cache_dir) if params.cache_dir else None
        self.system = system_message(sim.reach_m)
        self._calls = 0
        self._rng = random.Random(seed)  # backoff jitter only; never changes what is collected
        self._lock = threading.Lock()
        self._client: httpx.Client | None = None
        self._usage: dict[str, float] = dict.fromkeys(
            ("proposals", "requests", "cache_hits", "retries", "errors", "failures", "estimated_usage",
             "prompt_tokens", "completion_tokens", "cost_usd", "cached_prompt_tokens",
             "cached_completion_tokens", "cached_cost_usd", "cache_write_errors"), 0)

    # ------------------------------------------------------------------ public
    def messages(self, message: str) -> list[dict[str, str]]:
        """The chat messages for one state: system prompt + the full environment message (`info["message"]`)."""
        return [{"role": "system", "content": self.system}, {"role": "user", "content": message}]

    def observation_messages(self, obs: dict, info: dict) -> list[dict]:
        """The chat messages for an env step: `messages(info["message"])`, or (`images`) the text + 10 views."""
        if not self.params.images:
            return self.messages(info["message"])
        return [{"role": "system", "content": self.system},
                {"role": "user", "content": observation_content(obs["text"], obs["views"])}]

    def propose(self, obs: dict, info: dict, n: int = 1) -> list[Proposal]:
        """`n` responses for the state; asks again (new seed) while the server returns fewer."""
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        messages = self.observation_messages(obs, info)
        with self._lock:
            call, self._calls = self._calls, self._calls + 1
        proposals: list[Proposal] = []
        round_ = 0
        while len(proposals) < n:
            want = n - len(proposals)
            request = {"model": self.params.model, "messages": messages, "temperature": self.params.temperature,
                       "max_tokens": self.params.max_tokens, "n": want,
                       "seed": request_seed(self.seed, call, round_)}
            texts, cached = self._complete(request)
            proposals += [Proposal(text, cached=cached) for text in texts[:want]]
            round_ += 1
        self._count(proposals=n)
        return proposals

    def usage(self) -> dict[str, float]:
        """Accounting since construction; `cached_*` is what the cache hits would have cost cold."""
        with self._lock:
            out = dict(self._usage)
        out["cost_usd"] = round(out["cost_usd"], 8)
        out["cached_cost_usd"] = round(out["cached_cost_usd"], 8)
        return out

    def close(self) -> None:
        """Close the HTTP connection pool (a later request opens a new one)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> LLMTeacher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ one request, cached
    def _complete(self, request: dict) -> tuple[list[str], bool]:
        key = cache_key(request)
        hit = self._cache_read(key, request)
        if hit is not None:
            texts, prompt, completion, estimated = self._read_reply(request, hit)
            self._count(cache_hits=1, cached_prompt_tokens=prompt, cached_completion_tokens=completion,
                        cached_cost_usd=self._cost(prompt, completion), estimated_usage=int(estimated))
            return texts, True
        reply = self._post(request)
        texts, prompt, completion, estimated = self._read_reply(request, reply)
        self._count(prompt_tokens=prompt, completion_tokens=completion, cost_usd=self._cost(prompt, completion),
                    estimated_usage=int(estimated))
        self._cache_write(key, request, reply)
        return texts, False

    def _read_reply(self, request: dict, reply: dict) -> tuple[list[str], int, int, bool]:
        """Texts and (prompt, completion) tokens of a reply; estimated from lengths when `usage` is absent."""
        texts = reply_texts(reply)
        usage = reply.get("usage")
        try:
            return texts, int(usage["prompt_tokens"]), int(usage["completion_tokens"]), False
        except (TypeError, KeyError, ValueError):
            prompt = sum(_estimate_tokens(_text_of(m["content"])) for m in request["messages"])
            return texts, prompt, sum(_estimate_tokens(t) for t in texts), True

    def _cost(self, prompt: int, completion: int) -> float:
        return (prompt * self.params.price_prompt_per_1k + completion * self.params.price_completion_per_1k) / 1000

    def _count(self, **amounts: float) -> None:
        with self._lock:
            for k, v in amounts.items():
                self._usage[k] += v

    # ------------------------------------------------------------------ HTTP with retries
    def _headers(self) -> dict[str, str]:
        key = os.environ.get(self.params.api_key_env, "") if self.params.api_key_env else ""
        return {"Authorization": f"Bearer {key}"} if key else {}

    def _post(self, request: dict) -> dict:
        """POST one request; retry as the module docstring says; the validated reply JSON."""
        if self._client is None:
            self._client = httpx.Client(timeout=httpx.Timeout(self.params.timeout_s))
        attempts, malformed = 0, 0
        while True:
            attempts += 1
            self._count(requests=1)
            try:
                return self._attempt(request)
            except _Retryable as err:
                error, wait = str(err), err.wait
            except _Malformed as err:
                error, wait = f"malformed reply: {err}", None
                malformed += 1
                if malformed > MALFORMED_RETRIES:
                    self._count(errors=1, failures=1)
                    raise TeacherError(f"LLM teacher {self.url}: {error} (after {attempts} attempt(s))") from None
            except TeacherError:
                self._count(errors=1, failures=1)
                raise
            self._count(errors=1)
            if attempts > self.params.retries:
                self._count(failures=1)
                raise TeacherError(f"LLM teacher {self.url}: gave up after {attempts} attempt(s); "
                                   f"last error: {error}")
            self._count(retries=1)
            time.sleep(self._delay(attempts - 1, wait))

    def _attempt(self, request: dict) -> dict:
        try:
            response = self._client.post(self.url, json=request, headers=self._headers())
        except httpx.TimeoutException as err:
            raise _Retryable(f"timed out after {self.params.timeout_s:g}s ({type(err).__name__})") from None
        except httpx.TransportError as err:
            raise _Retryable(f"connection error ({type(err).__name__}: {err})") from None
        status = response.status_code
        if status == 429 or status >= 500:
            raise _Retryable(f"HTTP {status}: {response.text[:_SNIPPET]!r}",
                             parse_retry_after(response.headers.get("retry-after")))
        if not 200 <= status < 300:
            raise TeacherError(f"LLM teacher {self.url}: HTTP {status} (not retried): {response.text[:_SNIPPET]!r}")
        try:
            reply = response.json()
        except ValueError:
            raise _Malformed(f"the body is not JSON: {response.text[:_SNIPPET]!r}") from None
        reply_texts(reply)  # raises _Malformed
        return reply

    def _delay(self, retry: int, retry_after: float | None) -> float:
        delay = min(self.params.backoff_s * 2 ** retry, MAX_BACKOFF_S) * (1 + 0.1 * self._rng.random())
        if retry_after is not None:
            delay = max(delay, min(retry_after, RETRY_AFTER_CAP_S))
        return delay

    # ------------------------------------------------------------------ disk cache
    def _cache_path(self, key: str) -> Path:
        return self.cache_dir / key[:2] / f"{key}.json"

    def _cache_read(self, key: str, request: dict) -> dict | None:
        """The cached reply for a request, or None (no cache, missing, corrupt, or for another request)."""
        if self.cache_dir is None:
            return None
        path = self._cache_path(key)
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
            if entry["request"] != request:
                raise ValueError("the entry belongs to another request")
            reply_texts(entry["reply"])
            return entry["reply"]
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, _Malformed) as err:
            log.warning("ignoring unreadable LLM cache entry %s (%s); it will be rewritten", path, err)
            return None

    def _cache_write(self, key: str, request: dict, reply: dict) -> None:
        """Write tmp + rename, so concurrent writers and interrupted runs never leave half a file."""
        if self.cache_dir is None:
            return
        path = self._cache_path(key)
        entry = {"key": key, "url": self.url, "request": request, "reply": reply}
        try:
            write_atomic(path, json.dumps(entry, ensure_ascii=False))
        except OSError as err:  # a read-only or full disk costs reproducibility, not the run
            self._count(cache_write_errors=1)
            log.warning("could not write LLM cache entry %s: %s", path, err)


@register_teacher("llm")
def make_llm_teacher(collect: CollectParams, sim: SimParams, seed: int) -> LLMTeacher:
    """The collect stage's `llm` teacher: `collect.llm` settings, seeded per episode."""
    return LLMTeacher(collect.llm, sim, seed)


@register("llm")
class LLMAgent:
    """The teacher as a plain agent (evaluation baseline, `octopus sim run --agent llm`): its first proposal."""

    def __init__(self, params: LLMTeacherParams | None = None, sim: SimParams | None = None, seed: int = 0) -> None:
        self.teacher = LLMTeacher(params or LLMTeacherParams(), sim or SimParams(), seed)
        self.reads = self.teacher.reads

    def respond(self, obs: dict, info: dict) -> str:
        return self.teacher.propose(obs, info, 1)[0].text

    def usage(self) -> dict[str, float]:
        return self.teacher.usage()
