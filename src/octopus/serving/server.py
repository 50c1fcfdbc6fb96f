"""The OpenAI-compatible HTTP server for a trained policy: FastAPI app + one batching worker thread.

    app = create_app(policy, "octopus", ServeConfig(max_batch=8, window_ms=10))
    run_server(app, port=8000)        # uvicorn on 127.0.0.1 until Ctrl-C

Concurrent requests are queued and drained by one worker thread: it takes the first waiting request,
waits up to `window_ms` for more (up to `max_batch` choices), and answers them with one
`Policy.respond_batch` (one `generate` per group of requests sharing temperature and max_tokens). A sampling
request with a `seed` is generated on its own from that seed, so the same request and seed give the same choices.
Bad requests get a 4xx in OpenAI's error shape; a failure while generating is a 500 for that batch only;
a full queue is a 429 with Retry-After. Nothing a client sends stops the server.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass, field
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from octopus.serving.requests import ChatRequest, RequestError, ServeLimits, parse_chat_request

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeConfig:
    """How the server batches and what a request may ask for."""

    max_batch: int = 8          # choices answered by one respond_batch call
    window_ms: float = 10.0     # how long the worker waits for more requests after the first
    max_wait_ms: float = 200.0  # ... and at most this long while requests are still being read and parsed
    max_queue: int = 256        # waiting choices before new requests get 429
    limits: ServeLimits = field(default_factory=ServeLimits)


@dataclass
class _Job:
    request: ChatRequest
    future: Future = field(default_factory=Future)


class Batcher:
    """One worker thread answering queued requests in batches with `policy.respond_batch`."""

    def __init__(self, policy: Any, config: ServeConfig) -> None:
        self.policy, self.config = policy, config
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._waiting = 0  # choices queued, not yet taken by the worker
        self.in_flight = 0  # choices being generated now
        self._arriving = 0  # requests being read and parsed
        self._lock = threading.Lock()
        self.batches: list[int] = []  # choices per respond_batch call (for /stats and the benchmark)
        self._thread = threading.Thread(target=self._loop, name="octopus-serve-batcher", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Choices queued and not yet taken by the worker."""
        return self._waiting

    def submit(self, request: ChatRequest, arrived: bool = False) -> Future:
        """Queue a request (429 RequestError when the queue is full); `arrived`: it was announced by `arrive`."""
        with self._lock:
            if self._waiting + request.n > self.config.max_queue:
                raise RequestError(429, f"the server is busy ({self._waiting} responses queued); retry later",
                                   code="rate_limit_exceeded")
            self._waiting += request.n
            self._arriving -= arrived
        job = _Job(request)
        self._queue.put(job)
        return job.future

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)

    def arrive(self) -> None:
        """A request is being read and parsed: a batch being collected waits for it (up to max_wait_ms)."""
        with self._lock:
            self._arriving += 1

    def depart(self) -> None:
        """A request that `arrive`d will not be submitted (it was refused)."""
        with self._lock:
            self._arriving -= 1

    def _collect(self, first: _Job) -> list[_Job]:
        """The first job and whatever arrives within the window, up to max_batch choices. While requests are
        still being read the window stretches to max_wait_ms: clients answered together come back together."""
        jobs, size = [first], first.request.n
        t0 = time.monotonic()
        window, longest = t0 + self.config.window_ms / 1000, t0 + max(self.config.max_wait_ms, self.config.window_ms) / 1000
        while size < self.config.max_batch:
            now = time.monotonic()
            until = longest if self._arriving > 0 else window
            try:
                job = self._queue.get(timeout=min(until - now, 0.005)) if now < until else self._queue.get_nowait()
            except queue.Empty:
                if now < until:
                    continue
                break
            if job is None:  # closing: answer what we have, then stop
                self._queue.put(None)
                break
            jobs.append(job)
            size += job.request.n
        with self._lock:
            self._waiting -= size
        return jobs

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs = self._collect(first)
            groups: dict[tuple, list[_Job]] = {}
            for job in jobs:
                r = job.request
                sampled = (self.policy.temperature if r.temperature is None else r.temperature) > 0
                # a seeded sampling request is generated on its own, from its seed: what it gets back cannot
                # depend on which other requests arrived with it (greedy answers never do)
                alone = (r.seed, id(job)) if sampled and r.seed is not None else None
                groups.setdefault((r.temperature, r.max_tokens, alone), []).append(job)
            for (temperature, max_tokens, alone), group in groups.items():
                self._answer(group, temperature, max_tokens, alone[0] if alone else None)

    def _answer(self, jobs: list[_Job], temperature: float | None, max_tokens: int | None,
                seed: int | None = None) -> None:
        policy = self.policy
        saved = policy.temperature, policy.max_new_tokens, policy.batch_size
        observations = [job.request.observation for job in jobs for _ in range(job.request.n)]
        self.in_flight = len(observations)
        try:
            policy.temperature = saved[0] if temperature is None else temperature
            policy.max_new_tokens = saved[1] if max_tokens is None else max_tokens
            policy.batch_size = max(len(observations), 1)
            if seed is None:
                texts = policy.respond_batch(observations)
            else:  # the policy seeds each sampling generate from its counter: this one from the request's seed
                counter, policy.generator_seed = policy.generator_seed, seed
                try:
                    texts = policy.respond_batch(observations)
                finally:
                    policy.generator_seed = counter  # unseeded requests go on with the policy's own sequence
            limit = policy.max_new_tokens
        except Exception as err:  # noqa: BLE001 - one batch fails, the server lives on
            log.exception("generation failed for a batch of %d", len(observations))
            for job in jobs:
                job.future.set_exception(RequestError(500, f"generation failed: {type(err).__name__}: {err}",
                                                      code="generation_failed"))
            return
        finally:
            policy.temperature, policy.max_new_tokens, policy.batch_size = saved
            self.in_flight = 0
        self.batches.append(len(observations))
        k = 0
        for job in jobs:
            job.future.set_result((texts[k:k + job.request.n], limit))
            k += job.request.n


def _completion(policy: Any, model: str, request: ChatRequest, texts: list[str], limit: int) -> dict[str, Any]:
    tok = policy.pm.tokenizer
    prompt_text = request.observation.get("text", request.observation.get("message", ""))
    prompt_tokens = len(tok(prompt_text, add_special_tokens=False)["input_ids"])
    choices, completion_tokens = [], 0
    for i, text in enumerate(texts):
        n = len(tok(text, add_special_tokens=False)["input_ids"])  # re-tokenised: close to, not always, the count
        completion_tokens += n
        choices.append({"index": i, "message": {"role": "assistant", "content": text},
                        "finish_reason": "length" if n >= limit else "stop", "logprobs": None})
    return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
            "model": model, "choices": choices,
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}}


def create_app(policy: Any, model_name: str, config: ServeConfig = ServeConfig()):
    """The FastAPI app: POST /v1/chat/completions, GET /v1/models, GET /health."""
    reads_views = policy.pm.family.reads_views
    batcher: Batcher | None = None

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        nonlocal batcher
        batcher = Batcher(policy, config)
        app.state.batcher = batcher
        yield
        batcher.close()

    app = FastAPI(title="octopus serve", lifespan=lifespan, docs_url=None, redoc_url=None)

    def error(err: RequestError) -> JSONResponse:
        headers = {"Retry-After": "1"} if err.status == 429 else None
        return JSONResponse(err.body(), status_code=err.status, headers=headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
        return error(RequestError(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}", code=code))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error(RequestError(400, f"invalid request: {exc.errors()}"))

    @app.exception_handler(Exception)
    async def server_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s", request.url.path)
        return error(RequestError(500, f"internal error: {type(exc).__name__}", code="internal_error"))

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": model_name, "batches": len(batcher.batches) if batcher else 0}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": model_name, "object": "model", "created": 0, "owned_by": "octopus",
                                            "octopus": {"reads": sorted(policy.reads)}}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> JSONResponse:
        size = request.headers.get("content-length")
        if size is not None and size.isdigit() and int(size) > config.limits.max_body_bytes:
            return error(RequestError(413, f"the request body is {size} bytes; the limit is "
                                      f"{config.limits.max_body_bytes}", code="request_too_large"))
        batcher.arrive()
        submitted = False
        try:
            body = bytearray()
            async for chunk in request.stream():  # stop reading past the limit even without a Content-Length
                body += chunk
                if len(body) > config.limits.max_body_bytes:
                    raise RequestError(413, f"the request body exceeds {config.limits.max_body_bytes} bytes",
                                       code="request_too_large")
            req = await run_in_threadpool(parse_chat_request, bytes(body), reads_views, config.limits)
            if req.model is not None and req.model != model_name:
                raise RequestError(404, f"the model {req.model!r} does not exist; this server serves "
                                   f"{model_name!r}", "model", "model_not_found")
            future = batcher.submit(req, arrived=True)
            submitted = True
            texts, limit = await asyncio.wrap_future(future)
            reply = await run_in_threadpool(_completion, policy, model_name, req, texts, limit)
        except RequestError as err:
            return error(err)
        finally:
            if not submitted:
                batcher.depart()
        return JSONResponse(reply)

    return app


def run_server(app: Any, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> None:
    """Serve `app` with uvicorn until interrupted."""
    import uvicorn
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False)


class ServerThread:
    """uvicorn serving `app` on 127.0.0.1 in a background thread (tests, the benchmark); `url` ends in /v1.

        with ServerThread(create_app(policy, "tiny")) as server:
            httpx.post(server.url + "/chat/completions", json=...)
    """

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0, start_timeout_s: float = 60.0) -> None:
        import uvicorn
        self.app = app
        self._server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                                     access_log=False, lifespan="on"))
        self._server.install_signal_handlers = lambda: None  # signals stay with the main thread's owner
        self._thread = threading.Thread(target=self._server.run, name="octopus-serve", daemon=True)
        self._timeout = start_timeout_s
        self.url = ""

    def __enter__(self) -> "ServerThread":
        self._thread.start()
        deadline = time.monotonic() + self._timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.close()
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        host, port = self._server.servers[0].sockets[0].getsockname()[:2]
        self.url = f"http://{host}:{port}/v1"
        return self

    @property
    def batcher(self) -> Batcher:
        return self.app.state.batcher

    def close(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)

    def __exit__(self, *exc: object) -> None:
        self.close()
