"""Resolving a model's weights: a local dir as is, the hub cache without network, missing weights in seconds."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from octopus.model import hub
from octopus.model.factory import ModelError

LOCAL_COPY = "set model.name_or_path to the local directory"


@pytest.fixture
def online(monkeypatch, tmp_path):
    """No offline mode forced, an empty hub cache: what a fresh machine with (or without) a network sees."""
    from huggingface_hub import constants
    for var in hub.OFFLINE_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    return tmp_path / "hub-cache"


@pytest.fixture
def no_network(monkeypatch):
    """Fail the test on any attempt to reach the hub."""
    def refuse(url, timeout=hub.REACH_TIMEOUT):
        raise AssertionError(f"tried to reach {url}")
    monkeypatch.setattr(hub, "reachable", refuse)


def snapshot(cache, repo: str, files: dict[str, str]):
    """A hub-cache snapshot of `repo` (refs/main -> snapshots/<commit>/files), as a download leaves it."""
    commit = "0" * 40
    root = cache / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)
    folder = root / "snapshots" / commit
    folder.mkdir(parents=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def test_a_local_directory_passes_through_without_network(tmp_path, no_network):
    assert hub.resolve(str(tmp_path)) == str(tmp_path)


def test_a_missing_path_is_named_as_such(tmp_path, no_network):
    with pytest.raises(ModelError, match=r"model.name_or_path '.*nope': no such directory, and not a hub id"):
        hub.resolve(str(tmp_path / "nope"))


def test_an_unreachable_endpoint_fails_fast_with_the_local_copy_hint(online, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    start = time.monotonic()
    with pytest.raises(ModelError) as info:
        hub.resolve("nobody/no-such-model")
    assert time.monotonic() - start < hub.REACH_TIMEOUT + 1
    msg = str(info.value)
    assert msg.startswith("cannot load 'nobody/no-such-model': ConnectionError: http://127.0.0.1:9 did not answer")
    assert "not in the local hub cache" in msg and LOCAL_COPY in msg and "OFFLINE" not in msg


def test_an_endpoint_that_never_answers_fails_within_the_timeout(online, monkeypatch):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()  # accepts connections (the kernel does), never answers
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{silent.getsockname()[1]}")
    monkeypatch.setattr(hub, "REACH_TIMEOUT", 0.5)
    start = time.monotonic()
    with pytest.raises(ModelError, match=f"did not answer within 0.5 s.*{LOCAL_COPY}"):
        hub.resolve("nobody/no-such-model")
    assert time.monotonic() - start < 2
    silent.close()


@pytest.mark.parametrize("var, value", [("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1"),
                                        ("HF_HUB_OFFLINE", "true")])
def test_offline_mode_fails_without_any_network_attempt(online, no_network, monkeypatch, var, value):
    monkeypatch.setenv(var, value)
    with pytest.raises(ModelError) as info:
        hub.resolve("nobody/no-such-model")
    msg = str(info.value)
    assert msg.startswith("cannot load 'nobody/no-such-model': OSError: not in the local hub cache")
    assert f"{var}={value} is set; download the weights" in msg and LOCAL_COPY in msg


def test_a_cached_snapshot_loads_from_disk_without_network(online, no_network, monkeypatch):
    folder = snapshot(online, "org/cached", {"config.json": "{}", "model.safetensors": ""})
    assert hub.resolve("org/cached") == str(folder)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub.resolve("org/cached") == str(folder)


def test_an_interrupted_download_is_not_taken_for_a_cached_copy(online, no_network, monkeypatch):
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    snapshot(online, "org/partial", {"config.json": "{}", "model-00001-of-00002.safetensors": "",
                                     "model.safetensors.index.json": json.dumps(index)})
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError,
                       match=f"cannot load 'org/partial': OSError: not in the local hub cache.*{LOCAL_COPY}"):
        hub.resolve("org/partial")


def test_a_reachable_hub_keeps_the_download_path(online, monkeypatch):
    class Ok(BaseHTTPRequestHandler):
        def do_HEAD(self):  # noqa: N802 - the http.server hook
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{server.server_port}")
        assert hub.resolve("org/downloadable") == "org/downloadable"  # from_pretrained downloads it as before
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("over, name", [
    ({"preset": "paper"}, "HuggingFaceM4/idefics-9b"),
    ({"family": "text", "preset": "paper"}, "codellama/CodeLlama-7b-hf"),
    ({"family": "auto", "name_or_path": "nobody/no-such-vlm"}, "nobody/no-such-vlm")])
def test_every_family_fails_fast_on_missing_weights_without_a_network(online, monkeypatch, over, name):
    from octopus.config import ModelParams
    from octopus.model.factory import build_model
    from transformers import AutoModelForImageTextToText, IdeficsForVisionText2Text  # noqa: F401 - imports untimed
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    start = time.monotonic()
    with pytest.raises(ModelError, match=f"cannot load '{name}': ConnectionError: .*{LOCAL_COPY}"):
        build_model(ModelParams(**over), [])
    assert time.monotonic() - start < hub.REACH_TIMEOUT + 1
