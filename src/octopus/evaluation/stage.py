"""The evaluate stage: every configured agent on the evaluation suite, fanned out through Prefect.

    octopus evaluate                      # what `dvc repro evaluate` and `make eval` run
    out = run_evaluate(params, tasks)     # the same from Python (tasks of data/suite/tasks.json)
    records = evaluate(params, task_ids)  # only the episodes, as a Prefect flow

One Prefect task run per (agent, task, seed), over `evaluate.workers` processes (or threads, Dask,
Ray: `evaluate.runner`, as for collection). A task run that raises is retried
`evaluate.task_retries` times; one that still fails is recorded as a crashed, failed episode, so
every (agent, task, seed) is in the table and nothing is silently dropped. Agents (rows of the
table) are registered by name in `AGENT_ROWS`.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from prefect import flow, get_run_logger, task
from prefect.futures import as_completed

from octopus import paths
from octopus.config import Params
from octopus.data.collect import code_revision
from octopus.evaluation.metrics import summarize
from octopus.evaluation.report import write_reports
from octopus.evaluation.rollouts import EpisodeRecord, rollout
from octopus.sim.tasks import Task

#: the paper's OctoGibson task completion (Table 3, first value of each cell: the human plan score is not reproduced)
_COLS = ("Seen Env", "Unseen Env", "Follow", "Reason", "Total")
PAPER = {name: dict(zip(_COLS, vals)) for name, vals in {
    "GPT-4": (0.42, 0.46, 0.49, 0.27, 0.43),
    "GPT-4V": (0.40, 0.60, 0.42, 0.53, 0.45),
    "LLaMA GT (O+R)": (0.07, 0.13, 0.11, 0.00, 0.08),
    "CodeLLaMA GT (O+R)": (0.09, 0.20, 0.16, 0.00, 0.12),
    "TAPA (step-level)": (0.16, 0.13, 0.18, 0.07, 0.15),
    "EmbodiedGPT": (0.04, 0.27, 0.13, 0.00, 0.10),
    "Octopus (SFT only)": (0.11, 0.27, 0.16, 0.13, 0.15),
    "Octopus (SFT + RLEF)": (0.13, 0.33, 0.18, 0.20, 0.18),
}.items()}


#: what each row is, and its counterpart in the paper's table (listed under our table)
ROW_NOTES = {
    "random": "one random API call on a random visible object per step (a floor)",
    "oracle": "the privileged planner that taught the data (a ceiling; not in the paper)",
    "llm": "an OpenAI-compatible endpoint given the full text message (paper: GPT-4)",
    "octopus_sft": "Octopus, 10 views + instruction, trained by sft@octopus (paper: Octopus (SFT only))",
    "blind_sft": "a text-only LM given the ground-truth Observed Objects and Relations instead of views, trained "
                 "by sft@blind on the same steps (paper: LLaMA GT (O+R) / CodeLLaMA GT (O+R))",
}


class EvaluateError(RuntimeError):
    """The stage cannot run (unknown agent, missing checkpoint, no tasks)."""


def _policy(name: str) -> Callable:
    """The row of `policies.<name>`'s sft checkpoint, with that policy's model params (generation)."""
    def make(p: Params, seed: int):
        from octopus.agents import make_agent
        agent = make_agent("policy", model=paths.sft_model(name), params=p.for_policy(name))
        agent.policy.generator_seed = seed
        return agent
    make.checkpoint = paths.sft_model(name)
    make.samples = lambda p: p.for_policy(name).model.temperature > 0
    return make


def _plain(name: str) -> Callable:
    def make(p: Params, seed: int):
        from octopus.agents import make_agent
        kwargs = {"random": {"seed": seed}, "llm": {"params": p.collect.llm, "sim": p.sim, "seed": seed}}
        return make_agent(name, **kwargs.get(name, {}))
    make.samples = {"random": lambda p: True, "oracle": lambda p: False,
                    "llm": lambda p: p.collect.llm.temperature > 0}[name]
    return make


#: table row -> factory(params, seed) -> agent; `agent_rows` adds a row NAME_sft per policy (RLEF: NAME_rlef)
AGENT_ROWS: dict[str, Callable] = {
    "random": _plain("random"),
    "oracle": _plain("oracle"),
    "llm": _plain("llm"),
}


def agent_rows(params: Params) -> dict[str, Callable]:
    """Every row these params can put in the table: the fixed agents and one per trained policy."""
    return {**AGENT_ROWS, **{f"{name}_sft": _policy(name) for name in params.policies}}

_policies: dict[tuple, object] = {}  # per worker process: loaded policy agents, reused across its episodes


def _agent(row: str, seed: int, params: Params):
    """The agent for one episode, as if new: cheap agents are built fresh; a policy agent (a model
    load, minutes at the paper's scale) is loaded once per worker and its sampling seed reset.

    A plain module function, so that Prefect's process runner pickles it by reference: the task's own
    function is pickled by value (its module name points to the Task object), with a fresh copy of
    any module dict it touches, which made every episode reload the model."""
    make = agent_rows(params)[row]
    checkpoint = getattr(make, "checkpoint", None)
    if checkpoint is None:
        return make(params, seed)
    key = (row, str(Path(checkpoint).resolve()), repr(params))
    if key not in _policies:
        _policies[key] = make(params, seed)
    agent = _policies[key]
    agent.policy.generator_seed = seed
    return agent


@task(name="evaluate-episode", retries=1, retry_delay_seconds=1)
def evaluate_episode(row: str, task_dict: dict, seed: int, params: Params, views_dir: str | None) -> dict:
    if params.evaluate.runner == "process" and params.evaluate.workers > 1:
        # workers share the cores: torch's default of one thread per core in every worker oversubscribes
        # them (10x slower generation measured with 2 workers x 2 threads on 2 cores)
        import os

        import torch
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // params.evaluate.workers))
    record = rollout(_agent(row, seed, params), Task(**task_dict), params, seed=seed, name=row,
                     views_dir=Path(views_dir) if views_dir else None)
    return record.to_dict()


def _crashed(row: str, t: Task, seed: int, error: str) -> EpisodeRecord:
    return EpisodeRecord(agent=row, task_id=t.id, split=t.split, category=t.category, scene=t.scene, seed=seed,
                         instruction=t.instruction, steps=[], success=False, steps_to_success=None,
                         plan_score=0.0, initial_progress=0.0, wall_s=0.0, error=error[:2000])


def check_agents(params: Params) -> None:
    rows = agent_rows(params)
    unknown = [a for a in params.evaluate.agents if a not in rows]
    if unknown:
        raise EvaluateError(f"evaluate.agents: unknown agent {unknown[0]!r}; known: {', '.join(rows)} "
                            "(NAME_sft needs NAME in `policies`)")
    for row in params.evaluate.agents:
        ckpt = getattr(rows[row], "checkpoint", None)
        if ckpt is not None and not (Path(ckpt) / "octopus.json").is_file():
            raise EvaluateError(f"evaluate.agents: {row} needs the checkpoint {ckpt} "
                                f"(run `dvc repro sft@{Path(ckpt).name}`)")


# Tasks are named by id, not passed whole: Prefect copies a flow's parameters into every task run's
# context (pickled per submission, validated in the worker), and the UI shows them as the run's parameters.
@flow(name="evaluate", log_prints=True)
def evaluate(params: Params, task_ids: list[str], suite_path: str = str(paths.SUITE_TASKS),
             views_dir: str | None = None) -> dict[str, list[EpisodeRecord]]:
    """Every (agent, task, seed) episode on those tasks of the suite snapshot; crashed ones recorded as failures."""
    from octopus.data.collect import read_suite
    from octopus.data.flow import ensure_prefect_api, make_task_runner
    suite = read_suite(suite_path)
    try:
        tasks = [suite.get(i) for i in task_ids]
    except KeyError as err:
        raise EvaluateError(f"{suite_path}: {err.args[0]}") from None
    e = params.evaluate
    logger = get_run_logger()
    if e.runner != "thread":
        ensure_prefect_api()
    # several seeds only where an agent samples (a greedy policy or the planner gives the same episode)
    rows = agent_rows(params)
    jobs = [(row, t, seed) for row in e.agents for seed in range(e.seeds if rows[row].samples(params) else 1)
            for t in tasks]
    records: dict[str, list[EpisodeRecord]] = {row: [] for row in e.agents}
    episode = evaluate_episode.with_options(retries=e.task_retries)
    t0 = time.perf_counter()
    with make_task_runner(e) as runner:
        futures = {runner.submit(episode.with_options(task_run_name=f"{row}-{t.id}-s{seed}"),
                                 {"row": row, "task_dict": t.to_dict(), "seed": seed, "params": params,
                                  # the report shows the first seed's views (they are most of its size)
                                  "views_dir": views_dir if seed == 0 else None}): (row, t, seed)
                   for row, t, seed in jobs}
        for k, fut in enumerate(as_completed(list(futures)), 1):
            row, t, seed = futures[fut]
            try:
                records[row].append(EpisodeRecord.from_dict(fut.result()))
            except Exception as err:  # noqa: BLE001 - retried already; the episode counts as a failure
                logger.warning("%s on %s (seed %d) crashed: %s", row, t.id, seed, err)
                records[row].append(_crashed(row, t, seed, f"{type(err).__name__}: {err}"))
            if k % 20 == 0 or k == len(jobs):
                logger.info("%d/%d episodes in %.0f s", k, len(jobs), time.perf_counter() - t0)
    for row in records:
        records[row].sort(key=lambda r: (r.task_id, r.seed))
    return records


def run_evaluate(params: Params, tasks: list[Task], suite_path: Path = paths.SUITE_TASKS) -> dict:
    """The stage on `tasks` of the suite snapshot at `suite_path`: episodes, summaries with bootstrap
    CIs, and every report file."""
    check_agents(params)
    if not tasks:
        raise EvaluateError("no evaluation tasks (see tasks.eval_seen / tasks.eval_unseen)")
    e = params.evaluate
    views = paths.EVAL_VIEWS if e.save_views else None
    t0 = time.perf_counter()
    records = evaluate(params, [t.id for t in tasks], str(suite_path), str(views) if views else None)
    seconds = time.perf_counter() - t0
    results = {row: summarize(recs, n_boot=e.n_boot, seed=e.seed) for row, recs in records.items()}
    episodes = sum(len(r) for r in records.values())
    meta = {"params": {"evaluate": asdict(e), "model": asdict(params.model), "sim": asdict(params.sim)},
            "git": code_revision(), "wall_s": round(seconds, 2), "episodes": episodes,
            "episodes_per_min": round(60 * episodes / seconds, 2) if seconds else None,
            "episodes_per_min_per_worker": round(60 * episodes / seconds / e.workers, 2) if seconds else None}
    write_reports(results, paths.report("evaluate"), paths.EVAL_TABLE, paths.EVAL_PLOTS, paths.EVAL_HTML, records,
                  paper=PAPER, views_dir=views, meta=meta, row_notes=ROW_NOTES)
    with open(paths.EVAL_HTML / "episodes.jsonl", "w") as f:  # every episode, for analysis (pandas.read_json)
        for recs in records.values():
            for r in recs:
                f.write(json.dumps(r.to_dict()) + "\n")
    return {"results": results, "records": records, "meta": meta}

