"""`octopus ui start|status|deploy|stop`: the local Prefect server, worker and deployments (`make ui`, `make ui-stop`).

The stack itself is `octopus.ui`; this module only reads options and the environment and prints.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import typer

from octopus.cli.common import console, fail

app = typer.Typer(help="The Prefect UI: a local server with a worker and the project's deployments (docs/ui.md).",
                  no_args_is_help=True)

PORT = typer.Option(None, "--port", help="port on 127.0.0.1 (default: $OCTOPUS_UI_PORT, else 4200 or the next free)")
HOME = typer.Option(None, "--home", help="PREFECT_HOME of the stack (default: .prefect/ in the project)")


def _stack(port: int | None, home: Path | None):
    from octopus.ui import Stack
    env_port = os.environ.get("OCTOPUS_UI_PORT")
    if port is None and env_port:
        if not env_port.isdigit():
            fail(f"OCTOPUS_UI_PORT={env_port!r}: expected a port number")
        port = int(env_port)
    return Stack(port=port, home=home)


@app.command("start")
def start_cmd(port: int = PORT, home: Path = HOME,
              no_deploy: bool = typer.Option(False, "--no-deploy", help="skip `prefect deploy --all`")) -> None:
    """Start the server (SQLite), the process pool and worker, register prefect.yaml's deployments; print the URL."""
    from octopus.ui import UIError, start
    stack = _stack(port, home)
    t0 = time.perf_counter()
    try:
        state, started = start(stack, deploy_flows=not no_deploy)
    except UIError as err:
        fail(str(err))
    pids = ", ".join(f"{k} {v['pid']}" for k, v in state.processes.items())
    if not started:
        console.print(f"the Prefect UI is already running: {state.url} ({pids}); `make ui-stop` ends it")
    else:
        console.print(f"Prefect UI: {state.url}  (started in {time.perf_counter() - t0:.1f} s: {pids}; "
                      f"logs in {stack.logs})")
        console.print(f"deployments: {state.url}/deployments  (octopus-pipeline/nightly is paused: resume it to "
                      f"run nightly)\nfrom a shell: export PREFECT_API_URL={state.api_url}")
    print(state.url)


@app.command("status")
def status_cmd(port: int = PORT, home: Path = HOME,
               as_json: bool = typer.Option(False, "--json", help="print JSON")) -> None:
    """Whether the stack runs, its URL, pids and deployments (exit 1 when it does not run)."""
    from octopus.ui import status_dict
    status = status_dict(_stack(port, home))
    if as_json:
        print(json.dumps(status, indent=2))
    elif not status["running"]:
        console.print(f"not running (PREFECT_HOME {status['home']}); start it: make ui")
    else:
        console.print(f"running: {status['url']}  " + ", ".join(f"{k} pid {v['pid']}"
                                                             for k, v in status["processes"].items()))
        if isinstance(status["deployments"], str):
            console.print(f"  {status['deployments']}")
        for d in status["deployments"] if isinstance(status["deployments"], list) else []:
            console.print(f"  {d['name']:32s} {'paused' if d['paused'] else 'active':7s} "
                          f"{', '.join(map(str, d['schedules'])) or 'no schedule'}")
    raise typer.Exit(0 if status["running"] else 1)


@app.command("deploy")
def deploy_cmd(port: int = PORT, home: Path = HOME) -> None:
    """Register prefect.yaml's deployments again on the running stack (after editing prefect.yaml)."""
    from octopus.ui import UIError, deploy
    try:
        console.print(deploy(_stack(port, home))[-2000:])
    except UIError as err:
        fail(str(err))


@app.command("stop")
def stop_cmd(home: Path = HOME) -> None:
    """End the server and worker that `start` began (their process groups), nothing else."""
    from octopus.ui import stop
    stopped = stop(_stack(None, home))
    console.print(f"stopped {', '.join(stopped)}" if stopped else "nothing to stop (the local Prefect UI is not running)")
