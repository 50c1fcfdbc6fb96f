"""`octopus tasks list | check | export | procedural`: the task suite (what data.dvc pins and the tasks stage writes)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from octopus.cli.common import PARAMS, console, fail, params_of, suite_of
from octopus.files import write_json
from octopus import paths

app = typer.Typer(help="The task suite: list, check solvability, export.", no_args_is_help=True)

@app.command("list")
def tasks_list(split: Optional[str] = typer.Option(None, help="train | eval_seen | eval_unseen"),
               category: Optional[str] = typer.Option(None, help="follow | reason"),
               as_json: bool = typer.Option(False, "--json", help="print JSON lines instead of a table"),
               params: Path = PARAMS) -> None:
    """List the tasks of the suite (id, split, category, scene, instruction)."""
    from octopus.sim.tasks import CATEGORIES, SPLITS
    if split is not None and split not in SPLITS:
        fail(f"--split must be one of {', '.join(SPLITS)}")
    if category is not None and category not in CATEGORIES:
        fail(f"--category must be one of {', '.join(CATEGORIES)}")
    tasks = suite_of(params_of(params)).select(split, category)
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


@app.command("check")
def tasks_check(split: Optional[str] = typer.Option(None, help="only this split (default: the evaluation suite)"),
                all_tasks: bool = typer.Option(False, "--all", help="prove every task, not only the evaluation suite"),
                as_json: bool = typer.Option(False, "--json", help="print the counts as JSON"),
                params: Path = PARAMS) -> None:
    """Prove the suite solvable with the privileged planner and print counts (exits 1 if any task fails)."""
    from octopus.sim.tasks_stage import prove
    p = params_of(params)
    suite = suite_of(p)
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


@app.command("export")
def tasks_export(out: Path = typer.Argument(paths.SUITE, help="directory to write the snapshot to"),
                 task_list: Optional[Path] = typer.Option(None, help="published task list (default: the vendored copy)"),
                 metrics: Path = typer.Option(paths.report("tasks"), help="where to write the counts (DVC metrics)"),
                 params: Path = PARAMS) -> None:
    """Write the suite snapshot: tasks.json (tasks with BDDL problems, excluded tasks) and counts."""
    from octopus.sim.tasks_stage import write_suite
    suite = suite_of(params_of(params), task_list)
    counts = {"tasks": len(suite.tasks), "excluded": len(suite.excluded),
              **{s: len(suite.select(s)) for s in ("train", "eval_seen", "eval_unseen")},
              **{c: len(suite.select(None, c)) for c in ("follow", "reason")},
              "procedural": sum(t.source == "procedural" for t in suite.tasks)}
    write_suite(suite, out / "tasks.json", counts)
    problems = out / "problems"
    problems.mkdir(parents=True, exist_ok=True)
    for t in suite.tasks:
        (problems / f"{t.id}.bddl").write_text(t.problem() + "\n")
    write_json(metrics, counts)
    console.print(f"wrote {len(suite.tasks)} tasks to {out} ({counts})")


@app.command("procedural")
def tasks_procedural(n: int = typer.Option(50, help="how many procedural training tasks to generate and prove"),
                     seed: int = typer.Option(0, help="generator seed (the same seed gives the same tasks)"),
                     out: Optional[Path] = typer.Option(None, help="also write them as a JSON list of tasks here"),
                     as_json: bool = typer.Option(False, "--json", help="print JSON lines instead of a table"),
                     params: Path = PARAMS) -> None:
    """Generate procedural training tasks over the train split's scenes, each proven by the planner (a preview;
    the tasks stage adds `tasks.procedural` of them with `tasks.seed`)."""
    from octopus.sim.procedural import procedural_tasks
    from octopus.sim.tasks_stage import prove
    p = params_of(params)
    suite = suite_of(p)
    t0 = time.perf_counter()
    tasks = procedural_tasks(suite.tasks, n, p.sim, seed, prove, short_names=p.tasks.short_names)
    took = time.perf_counter() - t0
    if out is not None:
        write_json(out, [t.to_dict() for t in tasks])
    if as_json:
        for t in tasks:
            print(json.dumps({"id": t.id, "category": t.category, "scene": t.scene, "instruction": t.instruction,
                              "goal": t.goal, "plan_steps": t.plan_steps}))
    else:
        table = Table("id", "category", "scene", "steps", "instruction")
        for t in tasks:
            table.add_row(t.id, t.category, t.scene, str(t.plan_steps), t.instruction)
        Console().print(table)
    console.print(f"{len(tasks)} procedural tasks proven in {took:.1f} s "
                  f"({sum(t.category == 'reason' for t in tasks)} reason, "
                  f"{sum(len(t.goal) > 1 for t in tasks)} with two goals)")
    raise typer.Exit(0 if len(tasks) == n else 1)
