"""The collect stage's core: which episodes to run, one episode to a part file, parts to shards.

    jobs = plan_jobs(suite, params)                       # one Job per (train task, episode)
    run_job(job, params, parts)                           # explore its tree, write parts/<job>.parquet + .json
    manifest = finalize(jobs, params, parts, out)         # parts -> out/shard-*.parquet + manifest.json

Resuming: a part is written atomically (Parquet first, then its JSON summary), and a job whose
summary exists is done, so an interrupted run continues where it stopped without losing or
duplicating episodes. Parts live under `data/collect-parts/<fingerprint>/`, where the fingerprint
covers everything that changes the data (params, the suite snapshot, the package's source), so a
changed setting never reuses stale parts. The dataset directory is replaced in one rename at the end.
The fan-out over workers is `octopus.data.flow` (Prefect); this module is plain functions.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow as pa

from octopus import provenance
from octopus.config import Params
from octopus.data import schema
from octopus.files import replace_dir, sha256, write_json
from octopus.sim.tasks import Suite, Task
from octopus.sim.tasks_stage import SnapshotError, read_snapshot

# collect settings that change how fast data is made, not what it is
_RUNTIME_KNOBS = ("runner", "max_failed_episodes", "shard_rows")
_LLM_DATA_KNOBS = ("model", "temperature", "max_tokens")  # the rest (endpoint, retries, prices) never changes replies
#: the code that makes the data: trees and rows, the teachers, and everything they import (the simulator, the
#: texts), lazily imported modules included. Orchestration, params plumbing and file helpers are not in it
#: (the params' values are hashed instead): editing them never invalidates finished episodes.
DATA_ENTRIES = ("octopus.data.collect", "octopus.data.tree", "octopus.agents.oracle", "octopus.agents.llm")
DATA_EXCLUDE = ("octopus.cli", "octopus.agents.learned", "octopus.model", "octopus.config", "octopus.paths",
                "octopus.provenance", "octopus.files", "octopus.orchestration")


class CollectError(RuntimeError):
    """The stage cannot produce a complete dataset (failed episodes, no tasks, bad inputs)."""


@dataclass(frozen=True)
class Job:
    """One tree to explore: a task (as its snapshot dict, so it pickles cheaply) and an episode index."""

    task: dict
    episode: int
    seed: int

    @property
    def name(self) -> str:
        return f"{self.task['id']}__e{self.episode}"


def read_suite(path: str | Path) -> Suite:
    """The task suite snapshot written by the tasks stage (`data/tasks/tasks.json`); CollectError if unreadable."""
    try:
        return read_snapshot(path)
    except SnapshotError as err:
        raise CollectError(str(err)) from None


def episode_seed(seed: int, task_id: str, episode: int) -> int:
    digest = hashlib.sha256(f"{seed}/{task_id}/{episode}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def plan_jobs(suite: Suite, params: Params) -> list[Job]:
    """The episodes to collect: a seeded choice of `max_tasks` train tasks x `episodes_per_task`."""
    c = params.collect
    max_tasks, episodes = c.scale()
    tasks = sorted(suite.select("train"), key=lambda t: t.id)
    if not tasks:
        raise CollectError("the suite has no train tasks to collect")
    if 0 < max_tasks < len(tasks):
        tasks = sorted(random.Random(c.seed).sample(tasks, max_tasks), key=lambda t: t.id)
    return [Job(t.to_dict(), e, episode_seed(c.seed, t.id, e)) for t in tasks for e in range(episodes)]


def source_digest() -> str:
    """Hash of the Python sources that make the data (`DATA_ENTRIES` and what they import)."""
    return provenance.source_digest(provenance.module_closure(DATA_ENTRIES, DATA_EXCLUDE))


def data_params(params: Params) -> dict:
    """The params that decide the data (what the manifest records and the fingerprint covers)."""
    collect = {k: v for k, v in asdict(params.collect).items() if k not in _RUNTIME_KNOBS}
    collect["llm"] = {k: v for k, v in collect["llm"].items() if k in _LLM_DATA_KNOBS}
    return {"sim": asdict(params.sim), "render": asdict(params.render), "tasks": asdict(params.tasks),
            "collect": collect}


def fingerprint(params: Params, suite_path: str | Path) -> str:
    h = hashlib.sha256(json.dumps(data_params(params), sort_keys=True, default=str).encode())
    h.update(Path(suite_path).read_bytes())
    h.update(source_digest().encode())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------- parts
def part_paths(parts: Path, job: Job) -> tuple[Path, Path]:
    return parts / f"{job.name}.parquet", parts / f"{job.name}.json"


def done(parts: Path, job: Job) -> dict | None:
    """The summary of a finished job, or None (missing, half-written or unreadable: run it again)."""
    table_path, summary_path = part_paths(parts, job)
    if not (summary_path.exists() and table_path.exists()):
        return None
    try:
        summary = json.loads(summary_path.read_text())
    except ValueError:
        return None
    return summary if summary.get("job") == job.name else None


def run_job(job: Job, params: Params, parts: str | Path) -> dict:
    """Explore one tree and write its part (idempotent: a finished job returns its summary)."""
    from octopus.agents import make_teacher
    from octopus.data.tree import explore
    parts = Path(parts)
    finished = done(parts, job)
    if finished is not None:
        return finished
    t0 = time.perf_counter()
    teacher = make_teacher(params.collect.teacher, params.collect, params.sim, job.seed)
    rows, stats = explore(Task(**job.task), params, teacher, job.episode)
    table_path, summary_path = part_paths(parts, job)
    schema.write_rows(rows, table_path)
    summary = {"job": job.name, "task_id": job.task["id"], "episode": job.episode, **stats,
               "usage": teacher.usage(), "seconds": time.perf_counter() - t0}
    write_json(summary_path, summary, sort_keys=True)
    return summary


# ---------------------------------------------------------------------- finalize
def sum_usage(summaries: list[dict]) -> dict:
    total: dict[str, float] = {}
    for s in summaries:
        for k, v in s.get("usage", {}).items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                total[k] = total.get(k, 0) + v
    return {k: round(v, 6) if isinstance(v, float) else v for k, v in sorted(total.items())}


def finalize(jobs: list[Job], params: Params, parts: Path, out: Path, suite_path: Path,
             failures: list[dict] | None = None) -> dict:
    """Merge the finished parts (in job order) into shards + manifest.json, replacing `out` atomically."""
    summaries, tables = [], []
    for job in jobs:
        summary = done(parts, job)
        if summary is None:
            continue
        try:
            tables.append(schema.read_table(part_paths(parts, job)[0]).select(list(schema.COLUMNS)))
        except schema.DatasetError:  # a damaged part is redone by the next run, never merged
            part_paths(parts, job)[1].unlink(missing_ok=True)
            raise CollectError(f"part {job.name} is unreadable; removed it, rerun to collect it again") from None
        summaries.append(summary)
    if not tables:
        raise CollectError("no episodes were collected")
    table = pa.concat_tables(tables)
    shards = []
    rows = params.collect.shard_rows
    n_shards = max(1, -(-table.num_rows // rows))
    with replace_dir(out) as tmp:
        for k in range(n_shards):
            name = f"shard-{k:05d}-of-{n_shards:05d}.parquet"
            path = schema.write_table(table.slice(k * rows, rows), tmp / name)
            shards.append({"file": name, "rows": min(rows, table.num_rows - k * rows), "sha256": sha256(path)})
        manifest = _manifest(table, summaries, shards, params, suite_path, failures or [])
        write_json(tmp / "manifest.json", manifest, sort_keys=True)
    return manifest


def _manifest(table: pa.Table, summaries: list[dict], shards: list[dict], params: Params, suite_path: Path,
              failures: list[dict]) -> dict:
    col = {c: table.column(c).to_pylist() for c in ("task_id", "label", "target_states_met", "parsed",
                                                      "executed", "explore")}
    episodes = len(summaries)
    explored: dict[str, int] = {}
    for kind in col["explore"]:
        if kind is not None:
            explored[kind] = explored.get(kind, 0) + 1
    return {
        "rows": table.num_rows, "images": table.num_rows * schema.N_VIEWS,
        "episodes": episodes, "tasks": len(set(col["task_id"])),
        "successful_episodes": sum(s["success"] for s in summaries),
        "steps": sum(s["steps"] for s in summaries),
        "positive": sum(col["label"]), "negative": table.num_rows - sum(col["label"]),
        "target_states_met": sum(col["target_states_met"]), "parsed": sum(col["parsed"]),
        "executed": sum(col["executed"]), "explored": explored,
        "teacher": params.collect.teacher,  # usage without timings, so the same inputs give the same manifest
        "usage": {k: v for k, v in sum_usage(summaries).items() if "seconds" not in k},
        "shards": shards, "columns": {c: schema.HELP[c] for c in schema.COLUMNS},
        "params": data_params(params), "suite_sha256": sha256(suite_path),
        "source_sha256": source_digest(), "code_revision": provenance.code_revision(),
        "failures": failures,
    }
