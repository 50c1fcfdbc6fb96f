"""`octopus sim run | step | bench`: the embedded OctoGibson simulator by hand."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from octopus import paths
from octopus.cli.common import PARAMS, console, params_of, print_report, suite_of, task_of

app = typer.Typer(help="The embedded OctoGibson simulator: run episodes, execute responses, benchmark.",
                  no_args_is_help=True)


@app.command("run")
def sim_run(task: str = typer.Argument(..., help="task id (see `octopus tasks list`)"),
            agent: str = typer.Option("oracle", help="who writes the responses: oracle | random | llm (collect.llm "
                                      "endpoint) | policy (a trained checkpoint, --model)"),
            seed: int = typer.Option(0, help="agent seed"),
            model: Path = typer.Option(paths.sft_model("octopus"), help="policy checkpoint for --agent policy"),
            save_views: Optional[Path] = typer.Option(
                None, "--save-views", help="write the 10 views and a contact sheet as PNGs into this directory "
                "after reset and after every step (stepNN_<VIEW>.png, stepNN_sheet.png)"),
            params: Path = PARAMS) -> None:
    """Run one episode and print each step's environment message, response and feedback."""
    from octopus.agents import TeacherError, agent_names, make_agent
    from octopus.sim.backends import BackendUnavailableError, make_backend
    from octopus.sim.render import RenderError
    p = params_of(params)
    if agent not in agent_names():
        console.print(f"[red]error:[/] unknown agent {agent!r}; known: {', '.join(agent_names())}")
        raise typer.Exit(2)
    from octopus.model.factory import ModelError
    kwargs = {"random": {"seed": seed}, "llm": {"params": p.collect.llm, "sim": p.sim, "seed": seed},
              "policy": {"model": model, "params": p}}
    try:
        bot = make_agent(agent, **kwargs.get(agent, {}))
    except ModelError as err:
        console.print(f"[red]error:[/] {err}")
        raise typer.Exit(2) from None
    suite_of(p)  # builds (with progress) and caches the suite the backend loads
    try:
        backend = make_backend(None, p)
        backend.reset(task)
    except (ValueError, BackendUnavailableError, NotImplementedError) as err:
        console.print(f"[red]error:[/] {err}")
        raise typer.Exit(2) from None
    try:
        episode = getattr(backend, "episode", None)
        if episode is None:  # agents plan on the embedded Episode today
            console.print(f"[red]error:[/] the {agent} agent needs the embedded backend (sim.backend: embedded)")
            raise typer.Exit(2)
        out = Console()
        try:
            saved = _save_views(backend, save_views, 0) if save_views else 0
            while not backend.success and backend.steps < backend.max_steps:
                out.rule(f"step {backend.steps + 1}")
                out.print("[bold]Environment message[/]")
                typer.echo(backend.message().render())  # plain: the exact text the agent reads, never re-wrapped
                text = bot.respond(episode)
                out.print("[bold]Response[/]")
                typer.echo(text)
                result = backend.step(text)
                out.print("[bold]Feedback[/]")
                typer.echo(json.dumps(result.feedback()))
                saved += _save_views(backend, save_views, backend.steps) if save_views else 0
        except RenderError as err:
            console.print(f"[red]error:[/] cannot render the views: {err}")
            raise typer.Exit(2) from None
        except TeacherError as err:
            console.print(f"[red]error:[/] the {agent} agent cannot answer: {err}")
            raise typer.Exit(2) from None
        out.rule()
        out.print(f"task {'succeeded' if backend.success else 'failed'} after {backend.steps} step(s); "
                  f"goal progress {backend.progress:.2f}")
        if save_views:
            out.print(f"views: {saved} PNGs ({backend.steps + 1} observations x 10 views + contact sheet) "
                      f"in {save_views}")
    finally:
        backend.close()
    raise typer.Exit(0 if backend.success else 1)


def _save_views(backend, out_dir: Path, step: int) -> int:
    """Write the current 10 views and their contact sheet as stepNN_<VIEW>.png; returns how many files."""
    from octopus.sim.render import VIEWS, contact_sheet, save_png
    rgb = backend.observe().rgb
    for name, image in zip(VIEWS, rgb):
        save_png(image, out_dir / f"step{step:02d}_{name}.png")
    save_png(contact_sheet(rgb), out_dir / f"step{step:02d}_sheet.png")
    return len(VIEWS) + 1


@app.command("step")
def sim_step(task: str = typer.Argument(..., help="task id"),
             response_file: Path = typer.Option(..., "--response-file", help="a response in the paper's format"),
             as_json: bool = typer.Option(False, "--json", help="print {parsed, executed, error, target_states_met, task_success}"),
             params: Path = PARAMS) -> None:
    """Execute one response as the first step of TASK and print the feedback."""
    from octopus.sim.episode import Episode
    p = params_of(params)
    try:
        text = response_file.read_text()
    except (OSError, UnicodeDecodeError) as err:
        console.print(f"[red]error:[/] cannot read {response_file}: {err}")
        raise typer.Exit(2) from None
    ep = Episode(task_of(p, task), p.sim)
    result = ep.step(text)
    if as_json:
        print(json.dumps(result.feedback()))
    else:
        print(f"parsed: {result.parsed}\nexecuted: {result.executed}\nerror: {result.error or 'No error'}\n"
              f"target states met: {result.target_states_met}\ntask success: {result.task_success}")
        print("\nNext environment message:\n" + ep.message().render())


@app.command("bench")
def sim_bench(as_json: bool = typer.Option(False, "--json", help="print the numbers as JSON"),
              repeats: int = typer.Option(5, help="timed passes over the suite (the median is reported)"),
              distractors: Optional[int] = typer.Option(None, help="override sim.distractors (more objects per scene)"),
              render: bool = typer.Option(True, help="also time 10-view observations (needs OpenGL; see README)"),
              params: Path = PARAMS) -> None:
    """Throughput on the evaluation suite on one core: symbolic steps/s, goal checks/s, observations/s."""
    from dataclasses import replace

    from octopus.sim.bench import prepare, run_bench, run_render_bench, sandbox_bench, target_visibility
    from octopus.sim.render import RenderError
    p = params_of(params)
    sim = p.sim if distractors is None else replace(p.sim, distractors=distractors)
    replays = prepare(suite_of(p).evaluation(), sim)
    report = run_bench(replays, repeats)
    report.update(sandbox_bench(replays, sim))
    if render:
        try:
            report.update(run_render_bench(replays, p.render, sim.seed, max(1, min(repeats, 3))))
            vis = target_visibility(replays, p.render, sim.seed)
            report.update(targets_visible=vis["targets_visible"], targets=vis["targets"],
                          targets_missed=len(vis["targets_missed"]))
        except RenderError as err:
            console.print(f"[red]error:[/] {err}")
            raise typer.Exit(2) from None
    print_report(report, as_json)
