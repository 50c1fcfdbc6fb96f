"""`octopus serve MODEL`: a trained policy as an OpenAI-compatible chat-completions endpoint on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from octopus.cli.common import console, fail


def serve_cmd(model: Path = typer.Argument(..., help="policy checkpoint directory (e.g. models/sft/octopus)"),
              port: int = typer.Option(8000, min=0, max=65535, help="TCP port on 127.0.0.1"),
              host: str = typer.Option("127.0.0.1", help="address to bind (keep 127.0.0.1 unless a proxy guards it)"),
              name: Optional[str] = typer.Option(None, help="model name clients send (default: the directory's name)"),
              max_batch: int = typer.Option(8, min=1, max=256, help="responses per batched generate call"),
              window_ms: float = typer.Option(10.0, min=0.0, max=1000.0,
                                              help="how long to wait for more requests after the first"),
              max_wait_ms: float = typer.Option(200.0, min=0.0, max=10000.0,
                                                help="longest a batch waits for requests still being read"),
              max_queue: int = typer.Option(256, min=1, help="waiting responses before new requests get HTTP 429"),
              max_tokens: int = typer.Option(1024, min=1, help="cap on a request's max_tokens"),
              log_level: str = typer.Option("info", help="uvicorn log level")) -> None:
    """Serve a trained policy as an OpenAI-compatible chat endpoint on 127.0.0.1, batching concurrent requests.

    POST /v1/chat/completions takes the 10 views as image_url parts (base64 PNG/JPEG) and the environment
    message as text (a blind policy: the full text message); GET /v1/models names the policy.
    """
    from octopus.model.factory import ModelError
    from octopus.model.policy import Policy
    from octopus.serving import ServeConfig, ServeLimits, create_app, run_server
    if not model.is_dir():
        fail(f"{model} is not a policy checkpoint directory")
    try:
        policy = Policy.from_pretrained(model, batch_size=max_batch)
    except (ModelError, OSError, ValueError) as err:
        fail(f"cannot load the policy {model}: {err}")
    served = name or model.resolve().name
    config = ServeConfig(max_batch=max_batch, window_ms=window_ms, max_wait_ms=max_wait_ms, max_queue=max_queue,
                         limits=ServeLimits(max_tokens=max_tokens))
    console.print(f"serving {served} ({policy.pm.family.name}, reads {', '.join(sorted(policy.reads))}) on "
                  f"http://{host}:{port}/v1")
    run_server(create_app(policy, served, config), host, port, log_level)
