"""The S3 remote end to end against a real SeaweedFS (`octopus storage start`, `dvc push`/`dvc pull` through
DVC's CLI): bytes come back identical after the cache is gone and the store restarted; the default remote stays."""

from __future__ import annotations

import os
import random
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from octopus.storage import ENV_ACCESS, ENV_SECRET, Store, StorageError, credentials

BIN = Path(sys.executable).parent


def _run(*cmd: str, cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    r = subprocess.run([str(BIN / cmd[0]), *cmd[1:]], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"{' '.join(cmd)}: {r.stdout}\n{r.stderr}"
    return r.stdout + r.stderr


def _free_port() -> int:
    """A port whose store listeners (port..port+3 and +10000) are all free."""
    for _ in range(50):
        port = random.randrange(20000, 29000)
        ok = True
        for p in (*range(port, port + 4), *range(port + 10000, port + 10004)):
            with socket.socket() as s:
                ok = ok and s.connect_ex(("127.0.0.1", p)) != 0
        if ok:
            return port
    raise RuntimeError("no free port range")


def test_credentials_come_from_the_environment_or_a_private_generated_file(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_ACCESS, raising=False)
    monkeypatch.delenv(ENV_SECRET, raising=False)
    first = credentials(tmp_path)
    assert credentials(tmp_path) == first  # generated once, then reused
    assert stat.S_IMODE((tmp_path / "credentials.env").stat().st_mode) == 0o600
    monkeypatch.setenv(ENV_ACCESS, "AKIAFROMENV")
    with pytest.raises(StorageError, match="set both"):
        credentials(tmp_path)
    monkeypatch.setenv(ENV_SECRET, "secret-from-env")
    assert credentials(tmp_path) == ("AKIAFROMENV", "secret-from-env")


@pytest.mark.slow
def test_dvc_push_and_pull_through_a_real_local_s3_store(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_ACCESS, "OCTOTESTKEY")
    monkeypatch.setenv(ENV_SECRET, "octo-test-secret-0123456789")
    repo, state, port = tmp_path / "repo", tmp_path / "store", _free_port()
    repo.mkdir()
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    _run("dvc", "init", "-q", cwd=repo)
    _run("dvc", "remote", "add", "-d", "local", str(tmp_path / "folder-remote"), cwd=repo)
    committed = (repo / ".dvc" / "config").read_text()
    payload = random.Random(0).randbytes(300_000)
    (repo / "blob.bin").write_bytes(payload)
    _run("dvc", "add", "-q", "blob.bin", cwd=repo)
    store = Store.at(state)
    try:
        out = _run("octopus", "storage", "start", "--port", str(port), "--dir", str(state), cwd=repo)
        assert f"http://127.0.0.1:{port}" in out
        assert (repo / ".dvc" / "config").read_text() == committed  # the committed config is untouched
        local = (repo / ".dvc" / "config.local").read_text()
        assert 'remote "s3"' in local and f"endpointurl = http://127.0.0.1:{port}" in local
        assert "octo-test-secret" in local and "octo-test-secret" not in committed
        assert "remote = local" in committed and "[core]" not in local  # `local` stays the default remote

        _run("dvc", "push", "-r", "s3", cwd=repo)
        client = store.client()
        keys = [o["Key"] for o in client.list_objects_v2(Bucket="octopus-dvc").get("Contents", [])]
        assert len(keys) == 1 and keys[0].startswith("files/md5/")  # the blob, content-addressed
        import botocore.session  # the store checks signatures: a wrong secret is refused
        bad = botocore.session.get_session().create_client(
            "s3", endpoint_url=f"http://127.0.0.1:{port}", aws_access_key_id="OCTOTESTKEY",
            aws_secret_access_key="wrong", region_name="us-east-1")
        with pytest.raises(Exception, match="SignatureDoesNotMatch|AccessDenied"):
            bad.list_objects_v2(Bucket="octopus-dvc")

        # everything local is gone, and the store restarted: the bytes come back from its disk
        subprocess.run(["rm", "-rf", str(repo / ".dvc" / "cache"), str(repo / "blob.bin")], check=True)
        assert store.stop(grace_s=1.0) and store.pid() is None
        store.start(port)
        _run("dvc", "pull", "-r", "s3", cwd=repo)
        assert (repo / "blob.bin").read_bytes() == payload
        assert "stopped" in _run("octopus", "storage", "stop", "--dir", str(state), "--grace", "1", cwd=repo)
        assert store.pid() is None
    finally:
        store.stop(grace_s=1.0)
