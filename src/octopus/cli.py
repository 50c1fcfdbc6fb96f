"""The `octopus` command: one sub-command per stage and tools around the simulator.

    octopus tasks list [--split S] [--category C] [--json]
    octopus tasks check                      prove the evaluation suite solvable, with counts
    octopus tasks export DIR                 write the suite snapshot (what data.dvc pins)
    octopus sim run TASK --agent oracle|random|llm|policy [--model DIR] [--save-views DIR]
    octopus sim step TASK --response-file FILE [--json]
    octopus sim bench [--json]
    octopus collect                          the collect stage (Prefect fan-out; dvc.yaml calls it)
    octopus validate                         the validate stage (great_expectations, Data Docs)
    octopus data bench [--json]              collection throughput with 1 and 2 workers, no-op dvc repro
    octopus sft [--policy NAME]              the sft stage of one policy (TRL SFTTrainer; models/sft/NAME)
    octopus model bench [--json]             SFT samples/s vs a plain Trainer; policy responses/s
    octopus evaluate                         the evaluate stage (Table 3 on the suite; reports/evaluate.*)

Only this module reads argv, params files and the environment; everything else takes typed params.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from octopus import paths
from octopus.config import ConfigError, Params, load_params

app = typer.Typer(help="Octopus: an embodied vision-language programmer trained from environment feedback.",
                  no_args_is_help=True, add_completion=False)
tasks_app = typer.Typer(help="The task suite: list, check solvability, export.", no_args_is_help=True)
sim_app = typer.Typer(help="The embedded OctoGibson simulator: run episodes, execute responses, benchmark.",
                      no_args_is_help=True)
data_app = typer.Typer(help="The collected dataset: benchmark collection.", no_args_is_help=True)
model_app = typer.Typer(help="The policy model: benchmark training and inference.", no_args_is_help=True)
app.add_typer(tasks_app, name="tasks")
app.add_typer(sim_app, name="sim")
app.add_typer(data_app, name="data")
app.add_typer(model_app, name="model")
console = Console(stderr=True)
PARAMS = typer.Option(Path("params.yaml"), "--params", help="params file (defaults apply when it is missing)")


def _params(path: Path, policy: str | None = None) -> Params:
    """The params file (exit 2 on a bad value), with `policies.<policy>` applied when one is named."""
    try:
        p = load_params(path)
        return p if policy is None else p.for_policy(policy)
    except ConfigError as err:
        console.print(f"[red]error in {path}:[/] {err}")
        raise typer.Exit(2) from None


def _suite(p: Params, task_list: Path | None = None):
    from octopus.sim.suite import load_suite
    try:
        with Progress(console=console, transient=True) as bar:
            job = bar.add_task("building and proving the task suite (cached afterwards)", total=None)
            return load_suite(p.sim, p.tasks, lambda n, total: bar.update(job, completed=n, total=total),
                              str(task_list) if task_list else None)
    except (OSError, ValueError) as err:
        console.print(f"[red]error:[/] {err}")
        raise typer.Exit(2) from None


def _task(p: Params, task_id: str):
    suite = _suite(p)
    try:
        return suite.get(task_id)
    except KeyError as err:
        console.print(f"[red]error:[/] {err.args[0]}")
        raise typer.Exit(2) from None


# ---------------------------------------------------------------------- tasks
@tasks_app.command("list")
def tasks_list(split: Optional[str] = typer.Option(None, help="train | eval_seen | eval_unseen"),
               category: Optional[str] = typer.Option(None, help="follow | reason"),
               as_json: bool = typer.Option(False, "--json", help="print JSON lines instead of a table"),
               params: Path = PARAMS) -> None:
    """List the tasks of the suite (id, split, category, scene, instruction)."""
    from octopus.sim.tasks import CATEGORIES, SPLITS
    if split is not None and split not in SPLITS:
        console.print(f"[red]error:[/] --split must be one of {', '.join(SPLITS)}")
        raise typer.Exit(2)
    if category is not None and category not in CATEGORIES:
        console.print(f"[red]error:[/] --category must be one of {', '.join(CATEGORIES)}")
        raise typer.Exit(2)
    tasks = _suite(_params(params)).select(split, category)
    if as_json:
        for t in tasks:
            print(json.dumps({k: getattr(t, k) for k in ("id", "split", "category", "scene", "activity",
                                                          "instruction", "source", "plan_steps")}))
        return
    table = Table("id", "split", "category", "scene", "instruction")
    for t in tasks:
        table.add_row(t.id, t.split, t.category, t.scene, t.instruction)
    Console().print(table)
    console.print(f"{len(tasks)} tasks")


@tasks_app.command("check")
def tasks_check(split: Optional[str] = typer.Option(None, help="only this split (default: the evaluation suite)"),
                all_tasks: bool = typer.Option(False, "--all", help="prove every task, not only the evaluation suite"),
                as_json: bool = typer.Option(False, "--json", help="print the counts as JSON"),
                params: Path = PARAMS) -> None:
    """Prove the suite solvable with the privileged planner and print counts (exits 1 if any task fails)."""
    from octopus.sim.suite import prove
    p = _params(params)
    suite = _suite(p)
    tasks = suite.tasks if all_tasks else suite.select(split) if split else suite.evaluation()
    t0 = time.perf_counter()
    failed, lengths = [], []
    for t in tasks:
        why = prove(t, p.sim)
        (failed.append((t.id, why)) if why else lengths.append(t.plan_steps))
    took = time.perf_counter() - t0
    report = {
        "checked": len(tasks), "solvable": len(lengths), "failed": len(failed), "seconds": round(took, 2),
        "max_plan_steps": max(lengths, default=0), "mean_plan_steps": round(sum(lengths) / max(len(lengths), 1), 2),
        "suite_tasks": len(suite.tasks), "excluded_at_build": len(suite.excluded),
        "splits": {s: len(suite.select(s)) for s in ("train", "eval_seen", "eval_unseen")},
        "evaluation_categories": {c: sum(t.category == c for t in suite.evaluation()) for c in ("follow", "reason")},
        "excluded_reasons": _reason_counts(suite.excluded), "failures": failed,
    }
    if as_json:
        print(json.dumps(report, indent=1))
    else:
        console.print(f"{report['solvable']}/{report['checked']} tasks solvable within {p.sim.max_steps} steps "
                      f"(longest plan {report['max_plan_steps']}, mean {report['mean_plan_steps']}) in {took:.1f} s")
        console.print(f"suite: {report['suite_tasks']} tasks {report['splits']}; evaluation {report['evaluation_categories']}; "
                      f"{report['excluded_at_build']} excluded at build: {report['excluded_reasons']}")
        for tid, why in failed:
            console.print(f"[red]unsolvable[/] {tid}: {why}")
    raise typer.Exit(1 if failed else 0)


def _reason_counts(excluded: list) -> dict[str, int]:
    out: dict[str, int] = {}
    for _, why in excluded:
        key = why.split(":")[0]
        out[key] = out.get(key, 0) + 1
    return out


@tasks_app.command("export")
def tasks_export(out: Path = typer.Argument(Path("data/suite"), help="directory to write the snapshot to"),
                 task_list: Optional[Path] = typer.Option(None, help="published task list (default: the vendored copy)"),
                 metrics: Path = typer.Option(Path("reports/tasks.json"), help="where to write the counts (DVC metrics)"),
                 params: Path = PARAMS) -> None:
    """Write the suite snapshot: tasks.json (tasks with BDDL problems, excluded tasks) and counts."""
    from octopus.sim.suite import write_suite
    suite = _suite(_params(params), task_list)
    counts = {"tasks": len(suite.tasks), "excluded": len(suite.excluded),
              **{s: len(suite.select(s)) for s in ("train", "eval_seen", "eval_unseen")},
              **{c: len(suite.select(None, c)) for c in ("follow", "reason")}}
    write_suite(suite, out / "tasks.json", counts)
    problems = out / "problems"
    problems.mkdir(parents=True, exist_ok=True)
    for t in suite.tasks:
        (problems / f"{t.id}.bddl").write_text(t.problem() + "\n")
    metrics.parent.mkdir(parents=True, exist_ok=True)
    metrics.write_text(json.dumps(counts, indent=1) + "\n")
    console.print(f"wrote {len(suite.tasks)} tasks to {out} ({counts})")


# ---------------------------------------------------------------------- sim
@sim_app.command("run")
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
    p = _params(params)
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
    _suite(p)  # builds (with progress) and caches the suite the backend loads
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


@sim_app.command("step")
def sim_step(task: str = typer.Argument(..., help="task id"),
             response_file: Path = typer.Option(..., "--response-file", help="a response in the paper's format"),
             as_json: bool = typer.Option(False, "--json", help="print {parsed, executed, error, target_states_met, task_success}"),
             params: Path = PARAMS) -> None:
    """Execute one response as the first step of TASK and print the feedback."""
    from octopus.sim.episode import Episode
    p = _params(params)
    try:
        text = response_file.read_text()
    except (OSError, UnicodeDecodeError) as err:
        console.print(f"[red]error:[/] cannot read {response_file}: {err}")
        raise typer.Exit(2) from None
    ep = Episode(_task(p, task), p.sim)
    result = ep.step(text)
    if as_json:
        print(json.dumps(result.feedback()))
    else:
        print(f"parsed: {result.parsed}\nexecuted: {result.executed}\nerror: {result.error or 'No error'}\n"
              f"target states met: {result.target_states_met}\ntask success: {result.task_success}")
        print("\nNext environment message:\n" + ep.message().render())


@sim_app.command("bench")
def sim_bench(as_json: bool = typer.Option(False, "--json", help="print the numbers as JSON"),
              repeats: int = typer.Option(5, help="timed passes over the suite (the median is reported)"),
              distractors: Optional[int] = typer.Option(None, help="override sim.distractors (more objects per scene)"),
              render: bool = typer.Option(True, help="also time 10-view observations (needs OpenGL; see README)"),
              params: Path = PARAMS) -> None:
    """Throughput on the evaluation suite on one core: symbolic steps/s, goal checks/s, observations/s."""
    from dataclasses import replace

    from octopus.sim.bench import prepare, run_bench, run_render_bench, target_visibility
    from octopus.sim.render import RenderError
    p = _params(params)
    sim = p.sim if distractors is None else replace(p.sim, distractors=distractors)
    replays = prepare(_suite(p).evaluation(), sim)
    report = run_bench(replays, repeats)
    if render:
        try:
            report.update(run_render_bench(replays, p.render, sim.seed, max(1, min(repeats, 3))))
            vis = target_visibility(replays, p.render, sim.seed)
            report.update(targets_visible=vis["targets_visible"], targets=vis["targets"],
                          targets_missed=len(vis["targets_missed"]))
        except RenderError as err:
            console.print(f"[red]error:[/] {err}")
            raise typer.Exit(2) from None
    if as_json:
        print(json.dumps(report, indent=1))
    else:
        for k, v in report.items():
            print(f"{k}: {v}")


# ---------------------------------------------------------------------- stages
@app.command("collect")
def collect_cmd(progress: bool = typer.Option(True, help="show a progress bar"), params: Path = PARAMS) -> None:
    """The collect stage: a teacher explores trial-and-error trees on the train tasks (data/dataset, reports/collect.json).

    Runs the Prefect flow `collect` (a task run per task-episode over `collect.workers` workers).
    Interrupted runs resume: finished episodes are kept and never collected twice."""
    from octopus.data.collect import CollectError
    from octopus.sim.render import RenderError
    p = _params(params)
    from octopus.data.flow import collect, ensure_prefect_api
    try:
        ensure_prefect_api()  # one temporary server for this run and its workers when none is configured
        m = collect(str(params), show_progress=progress)
    except (CollectError, RenderError, OSError) as err:
        console.print(f"[red]collect failed:[/] {err}")
        raise typer.Exit(1) from None
    console.print(f"collected {m['rows']} rows ({m['images']} images) from {m['episodes']} episodes of "
                  f"{m['tasks']} tasks with the {p.collect.teacher} teacher: {m['positive']} positive, "
                  f"{m['negative']} negative; {100 * m['episode_success_rate']:.0f}% of episodes solved; "
                  f"{m['steps_per_min']:.0f} steps/min on {m['workers']} {m['runner']} worker(s)")


@app.command("validate")
def validate_cmd(params: Path = PARAMS) -> None:
    """The validate stage: great_expectations checks over data/dataset; Data Docs in data/data-docs (exit 1 on failure)."""
    from octopus.validation import run_validate
    p = _params(params)
    raise typer.Exit(run_validate(p, paths.DATASET, paths.SUITE_TASKS, paths.DATA_DOCS, paths.report("validate")))


@app.command("sft")
def sft_cmd(policy: str = typer.Option("octopus", help="which entry of `policies` in params.yaml to train (DVC "
                                       "runs one stage per policy: sft@NAME)"),
            params: Path = PARAMS) -> None:
    """The sft stage: finetune one policy on data/dataset with TRL's SFTTrainer.

    Writes models/sft/POLICY (the checkpoint), reports/sft/POLICY.json (metrics) and
    reports/sft/POLICY_curve.json (loss curve, DVC plots). The `policies` section of params.yaml says
    what each policy changes in `model` and `sft` (e.g. the blind text-only baseline). wandb logs
    offline unless WANDB_API_KEY is set (sync later with `wandb sync wandb/`); it never blocks or
    fails the run."""
    import os

    from octopus.data.schema import DatasetError
    from octopus.model.factory import ModelError
    from octopus.training.sft import SFTError, train_sft
    p = _params(params, policy)
    if p.sft.report_to == "wandb":
        os.environ.setdefault("WANDB_MODE", "online" if os.environ.get("WANDB_API_KEY") else "offline")
        os.environ.setdefault("WANDB_PROJECT", p.sft.wandb_project)
        os.environ.setdefault("WANDB_SILENT", "true")
    out_dir = paths.sft_model(policy)
    try:
        out = train_sft(p, paths.DATASET, out_dir, log=console.print, run_name=f"sft-{policy}")
    except (DatasetError, ModelError, SFTError, ValueError) as err:
        console.print(f"[red]sft failed:[/] {err}")
        raise typer.Exit(1) from None
    if not out["main"]:
        return
    m = out["metrics"]
    _write_json(paths.sft_report(policy), m)
    _write_json(paths.sft_curve(policy), out["curve"])
    q = m["quality"]
    console.print(f"sft {policy}: {m['train_steps']} steps x {m['epochs']} epochs in {m['train_s']:.0f} s "
                  f"({m['samples_per_s']:.1f} samples/s, {m['tokens_per_s']:.0f} tokens/s); val loss "
                  f"{m['val_loss_start']} -> {m['val_loss']}; held-out responses parse {q.get('parse_rate')} / "
                  f"compile {q.get('compile_rate')}; saved {out_dir}")


@app.command("evaluate")
def evaluate_cmd(params: Path = PARAMS) -> None:
    """The evaluate stage: every agent of `evaluate.agents` on the evaluation suite; prints the Table-3 table.

    Writes reports/evaluate.json (metrics), reports/evaluate.md (the table), reports/evaluate_plots.json
    and the HTML rollout report reports/rollouts/index.html (views, code, errors of every episode)."""
    import shutil

    from octopus.data.collect import read_suite
    from octopus.evaluation.report import render_table
    from octopus.evaluation.stage import EvaluateError, run_evaluate
    from octopus.sim.render import RenderError
    p = _params(params)
    try:
        tasks = read_suite(paths.SUITE_TASKS).evaluation()[:p.evaluate.max_tasks]
        out = run_evaluate(p, tasks)  # its flow shares one Prefect API with the workers
    except (EvaluateError, RenderError, OSError, ValueError) as err:
        console.print(f"[red]evaluate failed:[/] {err}")
        raise typer.Exit(1) from None
    finally:
        shutil.rmtree(paths.EVAL_VIEWS, ignore_errors=True)  # copied into the HTML report
    typer.echo(render_table(out["results"]))
    m = out["meta"]
    console.print(f"evaluate: {m['episodes']} episodes in {m['wall_s']:.0f} s ({m['episodes_per_min']} per min on "
                  f"{p.evaluate.workers} worker(s)); table {paths.EVAL_TABLE}, rollouts {paths.EVAL_HTML}/index.html")


def _write_json(path: Path, obj) -> None:
    """Atomic JSON write (metrics and plots files)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=1) + "\n")
    tmp.replace(path)


@data_app.command("bench")
def data_bench(as_json: bool = typer.Option(False, "--json", help="print the numbers as JSON"),
               episodes: int = typer.Option(24, help="task-episodes per timed run"),
               repeats: int = typer.Option(3, help="timed runs per worker count (the median is reported)"),
               workers: str = typer.Option("1,2", help="worker counts to time, comma-separated"),
               dvc_noop: bool = typer.Option(True, help="also time a no-op `dvc repro` (needs the pipeline run once)"),
               params: Path = PARAMS) -> None:
    """Collection throughput (steps/min) with the oracle teacher, rendering on, per worker count; no-op dvc repro time."""
    from octopus.data.bench import run_collect_bench, time_noop_repro
    p = _params(params)
    counts = [int(w) for w in workers.split(",") if w.strip()]
    report = run_collect_bench(p, counts, episodes, repeats)
    if dvc_noop:
        report["dvc_repro_noop_s"] = time_noop_repro(repeats)
    if as_json:
        print(json.dumps(report, indent=1))
    else:
        for k, v in report.items():
            print(f"{k}: {v}")


@model_app.command("bench")
def model_bench(as_json: bool = typer.Option(False, "--json", help="print the numbers as JSON"),
                steps: int = typer.Option(30, help="optimizer steps per timed training run"),
                repeats: int = typer.Option(3, help="timed runs per trainer (the median is reported)"),
                inference: bool = typer.Option(True, help="also time generation with the trained policy"),
                policy: str = typer.Option("octopus", help="which entry of `policies` to benchmark"),
                params: Path = PARAMS) -> None:
    """SFT throughput (ours vs a plain transformers.Trainer vs TRL's default loss) and policy responses/s
    (with the policy's checkpoint models/sft/POLICY, when it exists)."""
    from octopus.training.bench import run_inference_bench, run_train_bench
    p = _params(params, policy)
    report = run_train_bench(p, paths.DATASET, steps, repeats)
    if inference:
        report["inference"] = run_inference_bench(p, paths.sft_model(policy), paths.DATASET)
    print(json.dumps(report, indent=1) if as_json else "\n".join(f"{k}: {v}" for k, v in report.items()))


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
