"""`octopus storage start|stop|status`: a local S3-compatible object store (SeaweedFS) as the DVC remote `s3`."""

from __future__ import annotations

from pathlib import Path

import typer

from octopus.cli.common import console, fail

app = typer.Typer(help="A local S3 object store (SeaweedFS from PyPI) as an extra DVC remote; docs/experiments.md.",
                  no_args_is_help=True)
STATE = typer.Option(Path(".storage"), "--dir", help="the store's data, log, pid and generated credentials")


@app.command("start")
def start_cmd(port: int = typer.Option(8333, help="S3 port on 127.0.0.1 (the store also takes port+1..+3 and "
                                       "their +10000 gRPC ports)"),
              bucket: str = typer.Option("octopus-dvc", help="the bucket DVC pushes to"),
              remote: str = typer.Option("s3", help="the DVC remote's name (in .dvc/config.local)"),
              state: Path = STATE) -> None:
    """Start the store in the background (credentials from OCTOPUS_S3_ACCESS_KEY / OCTOPUS_S3_SECRET_KEY, or a
    generated pair in DIR/credentials.env), create the bucket, add the DVC remote; the default remote stays."""
    from octopus.storage import Store, StorageError, configure_remote
    store = Store.at(state)
    try:
        info = store.start(port)
        store.ensure_bucket(bucket)
        url = configure_remote(".", store, bucket, remote)
    except StorageError as err:
        fail(str(err))
    console.print(f"S3 on {info['endpoint']} (pid {info['pid']}, data in {store.state_dir / 'data'}); DVC remote "
                  f"{remote!r} -> {url}: dvc push -r {remote} / dvc pull -r {remote}; stop: make storage-stop")


@app.command("stop")
def stop_cmd(state: Path = STATE,
             grace: float = typer.Option(10.0, help="seconds to wait after SIGTERM before SIGKILL (SeaweedFS "
                                         "takes ~20 s to exit on its own; acknowledged writes are on disk)")) -> None:
    """Stop the store that `start` started from DIR (its pid file); the data stays."""
    from octopus.storage import Store
    console.print("stopped" if Store.at(state).stop(grace) else f"no store was running from {state}")


@app.command("status")
def status_cmd(state: Path = STATE) -> None:
    """Whether the store runs, and where."""
    from octopus.storage import Store, StorageError
    try:
        info = Store.at(state).info()
    except StorageError as err:
        fail(str(err), code=1, head="not running")
    print(f"running: {info['endpoint']} (pid {info['pid']})")
