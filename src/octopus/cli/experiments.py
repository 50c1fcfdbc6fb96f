"""`octopus compare` and `octopus ablations`: DVC experiments side by side, and the paper's ablations queued."""

from __future__ import annotations

from pathlib import Path

import typer

from octopus.cli.common import console, fail


def compare_cmd(out: Path = typer.Option(Path("reports/compare"), help="where compare.md and the PNG plots go"),
                all_commits: bool = typer.Option(False, "--all-commits", "-A",
                                                 help="experiments of every commit, not only of HEAD"),
                num: int = typer.Option(1, "--num", "-n", help="this many commits back from HEAD, with their "
                                        "experiments"),
                plots: bool = typer.Option(True, help="render the PNG plots (matplotlib, offline)"),
                repo: Path = typer.Option(Path("."), help="the DVC repository")) -> None:
    """The workspace and every DVC experiment side by side: task completion overall and per split, executable
    code, the sft, reward and rlef figures, and the params that differ. Prints the tables, writes
    OUT/compare.md and OUT/completion.png, OUT/training.png. Missing metrics show as –."""
    from octopus.experiments.compare import CompareError, collect, comparison, markdown, print_tables
    from octopus.files import write_atomic
    try:
        cmp = comparison(collect(repo, all_commits=all_commits, num=num))
    except CompareError as err:
        fail(str(err))
    made = []
    if plots:
        from octopus.experiments.plots import write_plots
        made = write_plots(cmp, out)
    write_atomic(out / "compare.md", markdown(cmp, [p.name for p in made]))
    import sys

    from rich.console import Console
    print_tables(cmp, Console(width=None if sys.stdout.isatty() else 240))  # a pipe gets whole rows, not 80 columns
    console.print(f"{len(cmp.experiments)} experiments: {out / 'compare.md'}"
                  + "".join(f", {p}" for p in made))


def ablations_cmd(only: str = typer.Option("", help="comma-separated ablation names (default: all)"),
                  dry_run: bool = typer.Option(False, "--dry-run", help="print the dvc commands, queue nothing"),
                  start: bool = typer.Option(False, "--start", help="then `dvc queue start` (runs them in the "
                                             "background; watch with `dvc queue status`)"),
                  jobs: int = typer.Option(1, help="queue workers for --start (each runs a whole pipeline)")) -> None:
    """Queue the paper's ablations (Fig. 6) as DVC experiments: finetune modes, the policy's size, its views
    shuffled or noise at evaluation, the RLEF algorithm and reward. docs/experiments.md lists them."""
    import shlex
    import subprocess

    from octopus.config import ConfigError
    from octopus.experiments.ablations import ABLATIONS, commands, queue
    names = [n.strip() for n in only.split(",") if n.strip()] or list(ABLATIONS)
    try:
        cmds = commands(names)
    except KeyError as err:
        fail(str(err.args[0]))
    except ConfigError as err:
        fail(f"params.yaml: {err}")
    if dry_run:
        for name, cmd in zip(names, cmds):
            fig = ABLATIONS[name].figure
            print(f"# {name}: {ABLATIONS[name].what} ({f'paper Fig. {fig}' if fig else 'not in the paper'})\n"
                  f"{shlex.join(cmd)}")
        return
    try:
        queue(names, start=start, jobs=jobs)
    except subprocess.CalledProcessError as err:
        fail(f"{shlex.join(err.cmd)} failed: {(err.stderr or err.stdout or '').strip()[-800:]}")
    console.print(f"queued {len(names)} experiments: {', '.join(names)}"
                  + ("; running (dvc queue status)" if start else "; run them: dvc queue start"
                     " (or take them back: dvc queue remove --queued)"))


def results_cmd(write: bool = typer.Option(False, "--write", help="replace the README's results block in place"),
                reports: Path = typer.Option(Path("reports"), help="the reports of the run"),
                readme: Path = typer.Option(Path("README.md"), help="the README whose block --write replaces")) -> None:
    """The README's results block (the evaluation table, the training stages) from the reports of the last run."""
    from octopus.experiments.results import ResultsError, render, replace_block
    from octopus.files import write_atomic
    try:
        block = render(reports)
        if write:
            write_atomic(readme, replace_block(readme.read_text(), block))
    except ResultsError as err:
        fail(str(err))
    typer.echo(f"{readme}: results block written from {reports}" if write else block)  # unwrapped: it is markdown
