"""`octopus serve MODEL` as a user runs it: a subprocess on 127.0.0.1 answering chat completions."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from octopus.serving import observation_content
from tests.helpers import prompt, views

ROOT = Path(__file__).resolve().parents[2]


def _octopus(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    return subprocess.Popen([sys.executable, "-m", "octopus", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kwargs)


def test_a_missing_checkpoint_is_a_clear_error(tmp_path):
    from typer.testing import CliRunner

    from octopus.cli import app
    result = CliRunner().invoke(app, ["serve", str(tmp_path / "nope")])
    assert result.exit_code == 2 and "is not a policy checkpoint directory" in " ".join(result.output.split())


@pytest.mark.slow
def test_serve_answers_over_http_and_stops_on_sigint(vision_policy, tmp_path):
    vision_policy.pm.save(tmp_path / "octopus")
    proc = _octopus("serve", str(tmp_path / "octopus"), "--port", "0", "--max-batch", "4")
    try:
        lines, deadline, url = [], time.monotonic() + 120, None
        while url is None and time.monotonic() < deadline and proc.poll() is None:
            lines.append(proc.stdout.readline())
            if m := re.search(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", lines[-1]):
                url = m.group(1) + "/v1"
        assert url, "".join(lines)
        assert any("serving octopus (idefics, reads text, views)" in line for line in lines)
        assert httpx.get(url + "/models").json()["data"][0]["id"] == "octopus"
        r = httpx.post(url + "/chat/completions", timeout=60, json={
            "model": "octopus", "max_tokens": 16,  # the fixture's max_new_tokens (the saved checkpoint has none)
            "messages": [{"role": "user", "content": observation_content(prompt(), views(4))}]})
        assert r.json()["choices"][0]["message"]["content"] == vision_policy.respond(
            {"text": prompt(), "views": views(4)})
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    assert proc.returncode == 0
