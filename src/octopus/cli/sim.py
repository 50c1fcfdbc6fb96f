"""`octopus sim run | step` (and `octopus bench sim`): the OctoGibson simulator by hand, through the env."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from octopus import paths
from octopus.cli.common import PARAMS, fail, params_of, print_report, suite_of, task_of

app = typer.Typer(help="The OctoGibson simulator by hand: run episodes, execute one response.",
                  no_args_is_help=True)
#: the feedback printed per step (`octopus sim step --json`'s contract)
FEEDBACK = ("parsed", "executed", "error", "target_states_met", "task_success")


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
    from octopus.sim.backends import BackendUnavailableError
    from octopus.sim.render import RenderError
    p = params_of(params)
    if agent not in agent_names():
        fail(f"unknown agent {agent!r}; known: {', '.join(agent_names())}")
    from octopus.model.factory import ModelError
    kwargs = {"random": {"seed": seed}, "llm": {"params": p.collect.llm, "sim": p.sim, "seed": seed},
              "policy": {"model": model, "params": p}}
    try:
        bot = make_agent(agent, **kwargs.get(agent, {}))
    except ModelError as err:
        fail(str(err))
    from octopus.agents import env_for
    suite = suite_of(p)  # builds (with progress) and caches the suite the backend loads
    try:
        env = env_for(bot, p, suite, views=save_views is not None)
        obs, info = env.reset(seed=seed, options={"task": task})
    except (ValueError, BackendUnavailableError, NotImplementedError) as err:
        fail(str(err))
    out = Console()
    try:
        saved = _save_views(obs["views"], save_views, 0) if save_views else 0
        done = bool(info["task_success"])
        while not done:
            out.rule(f"step {info['steps'] + 1}")
            out.print("[bold]Environment message[/]")
            typer.echo(info["message"])  # plain: the exact text the agent reads, never re-wrapped
            text = bot.respond(obs, info)
            out.print("[bold]Response[/]")
            typer.echo(text)
            obs, _, terminated, truncated, info = env.step(text)
            out.print("[bold]Feedback[/]")
            typer.echo(json.dumps({k: info["result"][k] for k in FEEDBACK}))
            saved += _save_views(obs["views"], save_views, info["steps"]) if save_views else 0
            done = terminated or truncated
    except RenderError as err:
        fail(f"cannot render the views: {err}")
    except TeacherError as err:
        fail(f"the {agent} agent cannot answer: {err}")
    finally:
        env.close()
    out.rule()
    out.print(f"task {'succeeded' if info['task_success'] else 'failed'} after {info['steps']} step(s); "
              f"goal progress {info['progress']:.2f}")
    if save_views:
        out.print(f"views: {saved} PNGs ({info['steps'] + 1} observations x 10 views + contact sheet) in {save_views}")
    raise typer.Exit(0 if info["task_success"] else 1)


def _save_views(views, out_dir: Path, step: int) -> int:
    """Write the 10 views and their contact sheet as stepNN_<VIEW>.png; returns how many files."""
    from octopus.sim.render import VIEWS, contact_sheet, save_png
    for name, image in zip(VIEWS, views):
        save_png(image, out_dir / f"step{step:02d}_{name}.png")
    save_png(contact_sheet(views), out_dir / f"step{step:02d}_sheet.png")
    return len(VIEWS) + 1


@app.command("step")
def sim_step(task: str = typer.Argument(..., help="task id"),
             response_file: Path = typer.Option(..., "--response-file", help="a response in the paper's format"),
             as_json: bool = typer.Option(False, "--json", help="print {parsed, executed, error, target_states_met, task_success}"),
             params: Path = PARAMS) -> None:
    """Execute one response as the first step of TASK and print the feedback."""
    from octopus.sim.env import OctoGibsonEnv
    p = params_of(params)
    try:
        text = response_file.read_text()
    except (OSError, UnicodeDecodeError) as err:
        fail(f"cannot read {response_file}: {err}")
    env = OctoGibsonEnv(params=p, suite=suite_of(p), views=False)
    try:
        task_of(p, task)  # exit 2 naming close matches
        env.reset(options={"task": task})
        _, _, _, _, info = env.step(text)
    finally:
        env.close()
    result = info["result"]
    if as_json:
        print(json.dumps({k: result[k] for k in FEEDBACK}))
    else:
        print(f"parsed: {result['parsed']}\nexecuted: {result['executed']}\nerror: {result['error'] or 'No error'}\n"
              f"target states met: {result['target_states_met']}\ntask success: {result['task_success']}")
        print("\nNext environment message:\n" + info["message"])


def sim_bench(as_json: bool = typer.Option(False, "--json", help="print the numbers as JSON"),
              repeats: int = typer.Option(5, help="timed passes over the suite (the median is reported)"),
              distractors: Optional[int] = typer.Option(None, help="override sim.distractors (more objects per scene)"),
              render: bool = typer.Option(True, help="also time 10-view observations (needs OpenGL; see README)"),
              params: Path = PARAMS) -> None:
    """Throughput on the evaluation suite on one core: symbolic steps/s, goal checks/s, observations/s."""
    from dataclasses import replace

    from octopus.sim.bench import (import_bench, prepare, run_bench, run_render_bench, sandbox_bench,
                                   target_visibility)
    from octopus.sim.render import RenderError
    p = params_of(params)
    sim = p.sim if distractors is None else replace(p.sim, distractors=distractors)
    replays = prepare(suite_of(p).evaluation(), sim)
    report = run_bench(replays, repeats)
    report.update(sandbox_bench(replays, sim))
    report.update(import_bench())
    if render:
        try:
            report.update(run_render_bench(replays, p.render, sim.seed, max(1, min(repeats, 3))))
            vis = target_visibility(replays, p.render, sim.seed)
            report.update(targets_visible=vis["targets_visible"], targets=vis["targets"],
                          targets_missed=len(vis["targets_missed"]))
        except RenderError as err:
            fail(str(err))
    print_report(report, as_json)
