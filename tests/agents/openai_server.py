"""A scriptable OpenAI-compatible chat server on 127.0.0.1 for testing the LLM teacher over real HTTP.

    with FakeOpenAI() as server:                  # ephemeral port, one thread per request
        server.push(status(500), status(429, retry_after="0.2"))   # the next two requests
        teacher = LLMTeacher(LLMTeacherParams(base_url=server.url), ...)
        server.requests[0].body["seed"]           # every request is recorded

Requests are answered from the queued behaviours in order, then with `server.default` (a valid
paper-format response that names the request's seed and the choice index, so samples differ).
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Union

CHAT_PATH = "/v1/chat/completions"

VALID_RESPONSE = """Explain:
Sample {index} for seed {seed}: nothing needs to move yet, so the robot waits.

Subtasks:
(1) Wait

Code:
```python
def act(robot, env, camera):
    donothing(env)
```

Target States:
(1) Inventory: None
(2) Object Information:
"""

Content = Union[str, Callable[[dict, int], str]]


def default_content(body: dict, index: int) -> str:
    """A valid response in the paper's format, distinct per (seed, choice index)."""
    return VALID_RESPONSE.format(index=index, seed=body.get("seed"))


@dataclass
class Behaviour:
    """How to answer one request. kind: ok | status | malformed | no_choices."""

    kind: str = "ok"
    content: Content = default_content
    choices: int | None = None           # None: as many as the request's n
    usage: Union[bool, dict] = True      # True: computed from lengths; False: omitted; dict: sent as given
    status: int = 200
    body: str = ""
    headers: dict = field(default_factory=dict)
    delay_s: float = 0.0                 # sleep before answering (longer than the client timeout: a timeout)


def ok(content: Content = default_content, choices: int | None = None, usage: Union[bool, dict] = True,
       delay_s: float = 0.0) -> Behaviour:
    return Behaviour("ok", content, choices, usage, delay_s=delay_s)


def status(code: int, body: str = '{"error": {"message": "scripted failure"}}',
           retry_after: str | None = None) -> Behaviour:
    return Behaviour("status", status=code, body=body,
                     headers={"Retry-After": retry_after} if retry_after is not None else {})


def malformed() -> Behaviour:
    return Behaviour("malformed", body="<html>502 Bad Gateway (truncated")


def no_choices() -> Behaviour:
    return Behaviour("no_choices")


def sleep(seconds: float, then: Behaviour | None = None) -> Behaviour:
    b = then or ok()
    return Behaviour(b.kind, b.content, b.choices, b.usage, b.status, b.body, dict(b.headers), seconds)


@dataclass
class Request:
    path: str
    headers: dict
    body: dict | None


def completion(body: dict, b: Behaviour) -> dict:
    n = b.choices if b.choices is not None else int(body.get("n") or 1)
    texts = [b.content(body, i) if callable(b.content) else b.content for i in range(n)]
    reply = {"id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion", "model": body.get("model"),
             "choices": [{"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
                         for i, t in enumerate(texts)]}
    if b.usage is True:
        prompt = sum(len(m.get("content", "")) for m in body.get("messages", [])) // 4
        completion_tokens = sum(len(t or "") for t in texts) // 4
        reply["usage"] = {"prompt_tokens": prompt, "completion_tokens": completion_tokens,
                          "total_tokens": prompt + completion_tokens}
    elif isinstance(b.usage, dict):
        reply["usage"] = dict(b.usage)
    return reply


class FakeOpenAI:
    """The server: `push` behaviours, read `requests`, `url` is the base_url (…/v1)."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.script: deque[Behaviour] = deque()
        self.default = ok()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02},
                                        daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def push(self, *behaviours: Behaviour) -> None:
        with self._lock:
            self.script.extend(behaviours)

    def next_behaviour(self, request: Request) -> Behaviour:
        with self._lock:
            self.requests.append(request)
            return self.script.popleft() if self.script else self.default

    def start(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes handlers sleeping in a scripted delay
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _handler(server: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are separate writes: avoid 40 ms delayed-ACK stalls

        def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
            pass

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
            b = server.next_behaviour(Request(self.path, dict(self.headers), body))
            if b.delay_s and server._stopping.wait(b.delay_s):
                return
            try:
                self._answer(b, body)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout): expected
                pass

        def _answer(self, b: Behaviour, body: dict | None) -> None:
            if self.path != CHAT_PATH:
                return self._send(404, json.dumps({"error": {"message": f"no route {self.path}"}}))
            if body is None:
                return self._send(400, json.dumps({"error": {"message": "request body is not JSON"}}))
            if b.kind == "ok":
                return self._send(200, json.dumps(completion(body, b)))
            if b.kind == "no_choices":
                return self._send(200, json.dumps({"id": "x", "object": "chat.completion", "model": body.get("model")}))
            if b.kind == "malformed":
                return self._send(200, b.body, "text/html")
            return self._send(b.status, b.body, headers=b.headers)

        def _send(self, code: int, text: str, content_type: str = "application/json",
                  headers: dict | None = None) -> None:
            data = text.encode("utf-8")
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

    return Handler
