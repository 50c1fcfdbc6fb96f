"""A trained policy as an OpenAI-compatible chat-completions service (`octopus serve MODEL`).

    requests.py   OpenAI chat requests -> policy observations (10 views as data URLs + text); RequestError (4xx)
    server.py     the FastAPI app, the batching worker (one respond_batch per batch), uvicorn
    bench.py      the loopback load test: concurrent clients vs direct Policy.respond_batch (`octopus bench serve`)

Any OpenAI client can then ask the policy, the `llm` teacher and evaluation row included
(`collect.llm.base_url: http://127.0.0.1:8000/v1`, `images: true` for a vision-language policy).
"""

from octopus.serving.requests import RequestError, ServeLimits, observation_content, parse_chat_request
from octopus.serving.server import Batcher, ServeConfig, ServerThread, create_app, run_server

__all__ = ["Batcher", "RequestError", "ServeConfig", "ServeLimits", "ServerThread", "create_app", "observation_content",
           "parse_chat_request", "run_server"]
