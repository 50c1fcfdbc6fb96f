"""`octopus params`: every params.yaml section and field with its type, default, allowed values and help."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import asdict
from pathlib import Path
from typing import Any

import typer
import yaml

from octopus.cli.common import PARAMS, console, params_of


def params_cmd(check: bool = typer.Option(False, "--check", help="validate the params file and print it resolved "
                                          "(every default filled in); exit 2 naming the bad field"),
               params: Path = PARAMS) -> None:
    """The params.yaml reference as Markdown (docs/params.md is this output), or, with --check, the params file
    validated and resolved."""
    if check:
        p = params_of(params)
        typer.echo(yaml.safe_dump(asdict(p), sort_keys=False))
        console.print(f"{params}: valid")
        return
    typer.echo(reference())


def reference() -> str:
    """Every section and field of params.yaml as Markdown: type, default, allowed values, help (docs/params.md)."""
    from octopus.config import DEFAULT_POLICIES, Params
    out = ["# params.yaml reference", "", "Generated from `octopus/config.py` by `octopus params`; "
           "every field below is checked when params are loaded (unknown sections and fields are errors).", ""]
    hints = typing.get_type_hints(Params)
    for f in dataclasses.fields(Params):
        if f.name == "policies":
            out += ["## policies", "", "Policies the sft stage trains (one DVC stage `sft@NAME`, one checkpoint "
                    "`models/sft/NAME`, one evaluation row `NAME_sft` each): a mapping of lower_snake_case names "
                    "to overrides of the `model` and `sft` sections.", "", "```yaml",
                    yaml.safe_dump({"policies": DEFAULT_POLICIES}, sort_keys=False).rstrip(), "```", ""]
            continue
        _describe(hints[f.name], f.name, out)
    return "\n".join(out)


def _describe(cls: type, section: str, out: list[str], default: Any = None) -> None:
    out += [f"## {section}", "", (cls.__doc__ or "").strip(), "", "| field | type | default | allowed | help |",
            "|---|---|---|---|---|"]
    nested = []
    hints = typing.get_type_hints(cls)
    default = cls() if default is None else default  # a nested block shows its section's defaults
    for f in dataclasses.fields(cls):
        typ = hints[f.name]
        if dataclasses.is_dataclass(typ):
            nested.append((typ, f"{section}.{f.name}", getattr(default, f.name)))
            out.append(f"| `{f.name}` | block | see `{section}.{f.name}` | | {f.metadata.get('help', '').replace('|', chr(92) + '|')} |")
            continue
        m = f.metadata
        allowed = ", ".join(map(str, m["choices"])) if m.get("choices") else \
            " ".join(x for x in (f">= {m['lo']}" if m.get("lo") is not None else "",
                                 f"<= {m['hi']}" if m.get("hi") is not None else "") if x)
        name = getattr(typ, "__name__", str(typ)).replace("Optional", "")
        if typing.get_origin(typ) in (typing.Union, types.UnionType):
            name = next(t for t in typing.get_args(typ) if t is not type(None)).__name__ + " or null"
        cells = (f"`{f.name}`", name, f"`{getattr(default, f.name)!r}`", allowed, m.get("help", ""))
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    out.append("")
    for typ, where, value in nested:
        _describe(typ, where, out, value)
