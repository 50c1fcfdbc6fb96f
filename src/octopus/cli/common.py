"""What every command shares: the stderr console, the --params option, params/suite/task loading
that exits 2 with a readable message on bad input, and printing a benchmark report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress

from octopus.config import ConfigError, Params, load_params

console = Console(stderr=True)
PARAMS = typer.Option(Path("params.yaml"), "--params", help="params file (defaults apply when it is missing)")


def fail(message: str, code: int = 2, head: str = "error") -> NoReturn:
    """Print `head: message` on stderr (the message verbatim, never read as markup) and exit with `code`."""
    console.print(f"[red]{escape(head)}:[/] {escape(message)}")
    raise typer.Exit(code)


def params_of(path: Path, policy: str | None = None) -> Params:
    """The params file (exit 2 on a bad value), with `policies.<policy>` applied when one is named."""
    try:
        p = load_params(path)
        return p if policy is None else p.for_policy(policy)
    except ConfigError as err:
        fail(str(err), head=f"error in {path}")


def require(*inputs: Path) -> None:
    """Exit 2 naming the first missing input of a stage and the command that makes it (no traceback)."""
    from octopus import paths
    for path in inputs:
        if not Path(path).exists():
            how = paths.MADE_BY.get(Path(path))
            fail(f"{path} is missing" + (f": run `{how}` first" if how else ""))


def require_backend(p: Params) -> None:
    """Exit 2 when `sim.backend` cannot run here (an optional extra missing, not implemented), before any fan-out."""
    from octopus.sim.backends import BackendUnavailableError, make_backend
    from octopus.sim.tasks import Suite
    try:
        make_backend(None, p, Suite([])).close()
    except (BackendUnavailableError, NotImplementedError, ValueError) as err:
        fail(f"sim.backend: {err}")


def suite_of(p: Params, task_list: Path | None = None):
    """The task suite (built with a progress bar the first time, cached afterwards); exit 2 if it cannot be."""
    from octopus.sim.tasks_stage import load_suite
    try:
        with Progress(console=console, transient=True) as bar:
            job = bar.add_task("building and proving the task suite (cached afterwards)", total=None)
            return load_suite(p.sim, p.tasks, lambda n, total: bar.update(job, completed=n, total=total),
                              str(task_list) if task_list else None)
    except (OSError, ValueError) as err:
        fail(str(err))


def task_of(p: Params, task_id: str):
    """One task of the suite by id (exit 2 naming the unknown id)."""
    try:
        return suite_of(p).get(task_id)
    except KeyError as err:
        fail(str(err.args[0]))


def print_report(report: dict, as_json: bool) -> None:
    """A benchmark's numbers on stdout: JSON, or one `key: value` line each."""
    print(json.dumps(report, indent=1) if as_json else "\n".join(f"{k}: {v}" for k, v in report.items()))
