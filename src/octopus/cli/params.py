"""`octopus params`: every params.yaml section and field with its type, default, allowed values and help."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import typer
import yaml

from octopus.cli.common import PARAMS, console, params_of


def params_cmd(check: bool = typer.Option(False, "--check", help="validate the params file and print it resolved "
                                          "(every default filled in); exit 2 naming the bad field"),
               params: Path = PARAMS) -> None:
    """The params.yaml reference as Markdown (docs/params.md is this output), or, with --check, the params file
    validated and resolved."""
    from octopus.config import reference
    if check:
        p = params_of(params)
        typer.echo(yaml.safe_dump(asdict(p), sort_keys=False))
        console.print(f"{params}: valid")
        return
    typer.echo(reference())
