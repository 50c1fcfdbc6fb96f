"""Evaluate a policy checkpoint on a few evaluation tasks, next to the oracle, and write the HTML report.

Shows what the evaluate stage does for each (agent, task) without Prefect, in one process:
`rollout` runs an episode and records every step, `summarize` computes the paper's Table 3 metrics
with bootstrap intervals over tasks, and `write_reports` writes the markdown table, the metrics JSON
and the static rollout report (index.html, one page per episode with the views the agent saw).

    # in a checkout after `make run` (models/sft/octopus and data/tasks/tasks.json exist)
    python examples/03_evaluate_a_policy.py                       # 3 tasks -> reports/example-eval/
    python examples/03_evaluate_a_policy.py --tasks 10 --model models/sft/blind --policy blind
    python examples/03_evaluate_a_policy.py --no-views            # smaller and faster: no step views

The full stage, on all 60 tasks and every configured agent in parallel, is `octopus evaluate`.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from octopus import paths
from octopus.agents import make_agent
from octopus.config import load_params
from octopus.evaluation.metrics import summarize
from octopus.evaluation.report import render_table, write_reports
from octopus.evaluation.rollouts import rollout
from octopus.sim.tasks_stage import read_snapshot


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=str(paths.sft_model("octopus")), help="checkpoint directory (the sft stage's)")
    ap.add_argument("--policy", default="octopus", help="entry of `policies` whose model settings apply")
    ap.add_argument("--tasks", type=int, default=3, help="first N evaluation tasks (eval_seen, then eval_unseen)")
    ap.add_argument("--suite", default=str(paths.SUITE_TASKS), help="task suite snapshot (the tasks stage's)")
    ap.add_argument("--params", default="params.yaml", help="params file (missing: the defaults)")
    ap.add_argument("--max-steps", type=int, help="responses per episode (default: sim.max_steps)")
    ap.add_argument("--out", default=str(paths.REPORTS / "example-eval"), help="output folder (its rollouts/ is replaced)")
    ap.add_argument("--no-views", action="store_true", help="do not save the views of each step")
    args = ap.parse_args()

    params = load_params(args.params)
    if args.max_steps:
        params = dataclasses.replace(params, sim=dataclasses.replace(params.sim, max_steps=args.max_steps))
    tasks = read_snapshot(args.suite).evaluation()[:args.tasks]
    out = Path(args.out)
    views_dir = None if args.no_views else out / "step-views"
    agents = {"oracle": make_agent("oracle"),  # the privileged planner: the ceiling
              f"{args.policy}_policy": make_agent("policy", model=args.model, params=params.for_policy(args.policy))}

    records = {name: [] for name in agents}
    for name, agent in agents.items():
        for task in tasks:
            r = rollout(agent, task, params, seed=0, views_dir=views_dir, name=name)
            records[name].append(r)
            # a crash (agent or simulator exception) is recorded as a failed episode, never raised
            why = r.error if r.crashed else (r.steps[-1].error if r.steps and not r.success else None)
            print(f"{name:>16} on {task.id} ({task.split}): {'success' if r.success else 'failure'} in "
                  f"{len(r.steps)} steps, plan score {r.plan_score:.2f}" + (f" ({why})" if why else ""))

    results = {name: summarize(recs, n_boot=params.evaluate.n_boot, seed=params.evaluate.seed)
               for name, recs in records.items()}
    write_reports(results, out / "evaluate.json", out / "evaluate.md", out / "evaluate_plots.json",
                  out / "rollouts", records, views_dir=views_dir,
                  row_notes={"oracle": "the privileged planner (a ceiling)", f"{args.policy}_policy": args.model})
    print("\n" + render_table(results))
    print("report:", (out / "rollouts" / "index.html").resolve())


if __name__ == "__main__":
    main()
