"""The evaluate stage: every configured agent on the evaluation suite, fanned out through Prefect.

    octopus evaluate                      # what `dvc repro evaluate` and `make eval` run
    out = run_evaluate(params, tasks)     # the same from Python (tasks of data/tasks/tasks.json)
    records = evaluate(params, task_ids)  # only the episodes, as a Prefect flow

One Prefect task run per (agent, task, seed), fanned out by `octopus.orchestration` over the
`evaluate.runner` block (processes, threads, Dask, Ray, as for collection); a trained policy's row
runs `evaluate.batch` tasks per task run in lockstep, one batched generate per round (`rollout_batch`:
the same episodes, 3.6x faster on 2 cores). A task run that raises is retried
`evaluate.runner.task_retries` times; its episodes that still fail are recorded as crashed, failed
episodes, so every (agent, task, seed) is in the table and nothing is silently dropped. The rows are
registered by name in `octopus.evaluation.rows`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path

from prefect import flow, get_run_logger, task

from octopus import paths
from octopus.config import Params
from octopus.evaluation.metrics import failure_counts, paired_difference, summarize
from octopus.evaluation.report import write_reports
from octopus.evaluation.rollouts import EpisodeRecord, rollout, rollout_batch
from octopus.evaluation.rows import PAPER, table_rows
from octopus.files import write_atomic, write_json
from octopus.orchestration import Call, fan_out
from octopus.progress import RunProgress
from octopus.provenance import code_revision, module_closure, source_digest
from octopus.sim.tasks import Task
from octopus.sim.tasks_stage import read_snapshot

class EvaluateError(RuntimeError):
    """The stage cannot run (unknown agent, missing checkpoint, no tasks)."""


_policies: dict[tuple, object] = {}  # per worker process: loaded policy agents, reused across its episodes


def _agent(row: str, seed: int, params: Params):
    """The agent for one episode, as if new: cheap agents are built fresh; a policy agent (a model
    load, minutes at the paper's scale) is loaded once per worker and its sampling seed reset.

    A plain module function, so that Prefect's process runner pickles it by reference: the task's own
    function is pickled by value (its module name points to the Task object), with a fresh copy of
    any module dict it touches, which made every episode reload the model."""
    r = table_rows(params)[row]
    if r.checkpoint is None:
        return r.make(params, seed)
    key = (row, str(Path(r.checkpoint).resolve()), repr(params))
    if key not in _policies:
        _policies[key] = r.make(params, seed)
    agent = _policies[key]
    agent.policy.generator_seed = seed
    return agent


@task(name="evaluate-episodes", retries=1, retry_delay_seconds=1)
def evaluate_episodes(row: str, task_dicts: list[dict], seed: int, params: Params, views_dir: str | None) -> list[dict]:
    """One row's episodes on these tasks: in lockstep (one batched generate per round) when there are
    several, else the one episode."""
    runner = params.evaluate.runner
    if runner.kind == "process" and runner.workers > 1:
        # workers share the cores: torch's default of one thread per core in every worker oversubscribes
        # them (10x slower generation measured with 2 workers x 2 threads on 2 cores)
        import os

        import torch
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // runner.workers))
    agent, tasks = _agent(row, seed, params), [Task(**t) for t in task_dicts]
    views = Path(views_dir) if views_dir else None
    records = (rollout_batch(agent, tasks, params, seed=seed, name=row, views_dir=views) if len(tasks) > 1
               else [rollout(agent, tasks[0], params, seed=seed, name=row, views_dir=views)])
    return [r.to_dict() for r in records]


def _crashed(row: str, t: Task, seed: int, error: str) -> EpisodeRecord:
    return EpisodeRecord(agent=row, task_id=t.id, split=t.split, category=t.category, scene=t.scene, seed=seed,
                         instruction=t.instruction, steps=[], success=False, steps_to_success=None,
                         plan_score=0.0, initial_progress=0.0, wall_s=0.0, error=error[:2000])


def check_agents(params: Params) -> None:
    rows = table_rows(params)
    unknown = [a for a in params.evaluate.agents if a not in rows]
    if unknown:
        raise EvaluateError(f"evaluate.agents: unknown agent {unknown[0]!r}; known: {', '.join(rows)} "
                            "(NAME_sft needs NAME in `policies`)")
    for row in params.evaluate.agents:
        ckpt = rows[row].checkpoint
        if ckpt is not None and not (Path(ckpt) / "octopus.json").is_file():
            raise EvaluateError(f"evaluate.agents: {row} needs the checkpoint {ckpt} "
                                f"(run `dvc repro {rows[row].stage}`)")


# Tasks are named by id, not passed whole: Prefect copies a flow's parameters into every task run's
# context (pickled per submission, validated in the worker), and the UI shows them as the run's parameters.
@flow(name="evaluate", log_prints=True)
def evaluate(params: Params, task_ids: list[str], suite_path: str = str(paths.SUITE_TASKS),
             views_dir: str | None = None, parts_dir: str | None = None) -> dict[str, list[EpisodeRecord]]:
    """Every (agent, task, seed) episode on those tasks of the suite snapshot; crashed ones recorded as failures.
    With `parts_dir`, each finished task run's episodes are kept there and a rerun (after a kill) runs only
    the task runs that have no part yet."""
    suite = read_snapshot(suite_path)
    try:
        tasks = [suite.get(i) for i in task_ids]
    except KeyError as err:
        raise EvaluateError(f"{suite_path}: {err.args[0]}") from None
    e = params.evaluate
    logger = get_run_logger()
    # several seeds only where an agent samples (a greedy policy or the planner gives the same episode)
    rows = table_rows(params)
    calls = []
    for row in e.agents:
        size = e.batch if rows[row].checkpoint is not None else 1  # a trained policy generates in batches
        for seed in range(e.seeds if rows[row].samples(params) else 1):
            for i in range(0, len(tasks), size):
                chunk = tasks[i:i + size]
                name = f"{row}-{chunk[0].id}-s{seed}" if size == 1 else f"{row}-s{seed}-tasks{i + 1}-{i + len(chunk)}"
                # the report shows the first seed's views (they are most of its size)
                calls.append(Call(name, {"row": row, "task_dicts": [t.to_dict() for t in chunk], "seed": seed,
                                         "params": params, "views_dir": views_dir if seed == 0 else None},
                                  (row, chunk, seed)))
    total = sum(len(c.key[1]) for c in calls)
    records: dict[str, list[EpisodeRecord]] = {row: [] for row in e.agents}
    t0 = time.perf_counter()
    progress = RunProgress("evaluate", total, description="evaluate: episodes done")

    def finished(call: Call, recs: list[EpisodeRecord]) -> None:
        records[call.key[0]].extend(recs)
        k = sum(map(len, records.values()))
        progress.set(k)
        if k // 20 > (k - len(recs)) // 20 or k == total:
            logger.info("%d/%d episodes in %.0f s", k, total, time.perf_counter() - t0)

    def crashed(call: Call, error: str) -> None:  # retried already: its episodes count as failures
        row, chunk, seed = call.key
        if error.startswith("ModelError: "):  # the row's checkpoint does not load: no episode can run, stop
            from octopus.model.factory import ModelError
            raise ModelError(error.removeprefix("ModelError: "))
        logger.warning("%s on %s (seed %d) crashed: %s", row, ", ".join(t.id for t in chunk), seed, error)
        finished(call, [_crashed(row, t, seed, error) for t in chunk])

    def result(call: Call, dicts: list[dict]) -> None:
        if parts_dir:
            write_json(Path(parts_dir) / f"{call.name}.json", dicts)
        finished(call, [EpisodeRecord.from_dict(x) for x in dicts])

    saved = {c.name: _part(Path(parts_dir) / f"{c.name}.json") for c in calls} if parts_dir else {}
    kept = [c for c in calls if saved.get(c.name) is not None]
    for call in kept:
        finished(call, [EpisodeRecord.from_dict(x) for x in saved[call.name]])
    if kept:
        logger.info("%d of %d episodes kept from an interrupted run in %s", sum(len(c.key[1]) for c in kept), total,
                    parts_dir)
    fan_out(evaluate_episodes, [c for c in calls if c not in kept], e.runner, "evaluate.runner",
            on_result=result, on_failure=crashed)
    for row in records:
        records[row].sort(key=lambda r: (r.task_id, r.seed))
    return records


def _part(path: Path) -> list[dict] | None:
    """A finished task run's episodes, or None when there is no readable part (never written, or damaged)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, list) and all(isinstance(d, dict) for d in data) else None


def fingerprint(params: Params, tasks: list[Task], suite_path: Path) -> str:
    """What the episodes depend on: params, the tasks, the suite snapshot, every row's checkpoint and the
    evaluation code. Parts of another fingerprint are never reused."""
    h = hashlib.sha256(json.dumps(asdict(params), sort_keys=True, default=str).encode())
    h.update(json.dumps([t.id for t in tasks]).encode() + Path(suite_path).read_bytes())
    h.update(source_digest(module_closure(["octopus.evaluation.stage"], ["octopus.cli"])).encode())
    rows = table_rows(params)
    for ckpt in sorted({str(rows[a].checkpoint) for a in params.evaluate.agents if rows[a].checkpoint is not None}):
        for f in sorted(p for p in Path(ckpt).rglob("*") if p.is_file()):
            h.update(f.relative_to(ckpt).as_posix().encode() + hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()[:16]


def run_evaluate(params: Params, tasks: list[Task], suite_path: Path = paths.SUITE_TASKS) -> dict:
    """The stage on `tasks` of the suite snapshot at `suite_path`: episodes, summaries with bootstrap
    CIs, and every report file. Finished episodes are kept in data/eval-parts/FINGERPRINT until the reports
    are written, so a killed run resumes where it stopped."""
    check_agents(params)
    if not tasks:
        raise EvaluateError("no evaluation tasks (see tasks.eval_seen / tasks.eval_unseen)")
    e = params.evaluate
    parts = paths.EVAL_PARTS / fingerprint(params, tasks, suite_path)
    parts.mkdir(parents=True, exist_ok=True)
    views = parts / "views" if e.save_views else None
    t0 = time.perf_counter()
    records = evaluate(params, [t.id for t in tasks], str(suite_path), str(views) if views else None, str(parts))
    seconds = time.perf_counter() - t0
    results = {row: summarize(recs, n_boot=e.n_boot, seed=e.seed) for row, recs in records.items()}
    rows = table_rows(params)
    differences = {row: {"baseline": base, **paired_difference(records[base], recs, n_boot=e.n_boot, seed=e.seed)}
                   for row, recs in records.items() if (base := rows[row].baseline) in records}
    episodes = sum(len(r) for r in records.values())
    meta = {"params": {"evaluate": asdict(e), "model": asdict(params.model), "sim": asdict(params.sim)},
            "git": code_revision(), "wall_s": round(seconds, 2), "episodes": episodes,
            "episodes_per_min": round(60 * episodes / seconds, 2) if seconds else None,
            "episodes_per_min_per_worker": round(60 * episodes / seconds / e.runner.workers, 2) if seconds else None}
    write_reports(results, paths.report("evaluate"), paths.EVAL_TABLE, paths.EVAL_PLOTS, paths.EVAL_HTML, records,
                  paper=PAPER, views_dir=views, meta=meta,
                  row_notes={name: r.note for name, r in rows.items()},
                  failures={row: failure_counts(recs) for row, recs in records.items()}, differences=differences)
    # every episode, for analysis (pandas.read_json); atomic: it lands inside a DVC output
    write_atomic(paths.EVAL_HTML / "episodes.jsonl",
                 "".join(json.dumps(r.to_dict()) + "\n" for recs in records.values() for r in recs))
    shutil.rmtree(paths.EVAL_PARTS, ignore_errors=True)  # this run's parts are in the report; others are stale
    return {"results": results, "records": records, "meta": meta, "differences": differences}

