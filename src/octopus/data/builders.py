"""Training sets built from the collected dataset: SFT steps (and, later, preference pairs).

    train, val = sft_split(read_steps("data/dataset", "positive"), val_fraction=0.1, seed=0)
    views = decode_all(train, size=96)           # (10, 96, 96, 3) uint8 per step, decoded in parallel

The validation split holds out whole TASKS (every step of a held-out task), so validation loss and
generation quality measure tasks the model never trained on, not other steps of the same tree.
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from octopus.data import schema
from octopus.data.schema import DatasetError
from octopus.files import sha256

STEP_COLUMNS = ("id", "task_id", "split", "scene", "prompt", "message", "response", "images", "label",
                "target_states_met", "task_success")
ROW_FILTERS = {
    "positive": lambda r: r["label"] == 1,
    "met": lambda r: bool(r["target_states_met"]),
    "all": lambda r: True,
}


def shard_files(directory: str | Path) -> list[Path]:
    """The dataset's shards, checked against its manifest.json when it has one (collect writes it): every shard
    listed there is present with its sha256, none is unlisted. DatasetError naming the file otherwise, so a
    truncated, bit-flipped, lost or stray shard never reaches training."""
    directory = Path(directory)
    files = schema.shard_files(directory)
    path = directory / "manifest.json"
    if not path.exists():
        return files
    try:
        listed = {s["file"]: s["sha256"] for s in json.loads(path.read_text())["shards"]}
    except (ValueError, KeyError, TypeError) as err:
        raise DatasetError(f"{path}: not a readable manifest ({type(err).__name__}: {err})") from None
    for f in files:
        if f.name not in listed:
            raise DatasetError(f"{f}: a shard that {path} does not list (rerun `dvc repro collect`)")
        if sha256(f) != listed[f.name]:
            schema.read_table(f)  # the more precise error when it is no longer Parquet at all
            raise DatasetError(f"{f}: its sha256 differs from {path}: the shard changed after collect wrote it "
                               "(damaged or edited; rerun `dvc repro collect` or `dvc checkout`)")
    missing = sorted(set(listed) - {f.name for f in files})
    if missing:
        raise DatasetError(f"{directory / missing[0]}: listed in {path} but missing ({len(missing)} shard(s))")
    return files


def read_steps(directory: str | Path, rows: str = "positive") -> list[dict]:
    """The dataset's steps chosen by `rows` (positive | met | all), in id order; only train-split steps."""
    if rows not in ROW_FILTERS:
        raise ValueError(f"unknown row filter {rows!r}; known: {', '.join(ROW_FILTERS)}")
    directory = Path(directory)
    files = shard_files(directory)
    if not files:
        raise DatasetError(f"{directory}: no Parquet shards (run `dvc repro collect`)")
    keep, out = ROW_FILTERS[rows], []
    for f in files:
        table = schema.read_table(f)
        for r in table.select(list(STEP_COLUMNS)).to_pylist():
            if r["split"] != "train":
                raise DatasetError(f"{f}: row {r['id']} is from split {r['split']!r}; training data must be train-only")
            if keep(r):
                out.append(r)
    out.sort(key=lambda r: r["id"])
    if not out:
        raise DatasetError(f"{directory}: no {rows} steps to train on ({len(files)} shard(s))")
    return out


def task_bucket(task_id: str, seed: int) -> float:
    """A task's place in [0, 1) for a seed: the order in which held-out tasks are chosen."""
    digest = hashlib.sha256(f"{seed}/{task_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") / 2 ** 64


def sft_split(steps: list[dict], val_fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """(train, val): whole tasks held out, about `val_fraction` of them, chosen by a seeded hash."""
    tasks = sorted({r["task_id"] for r in steps})
    n_val = round(len(tasks) * val_fraction) if len(tasks) > 1 else 0
    held = set(sorted(tasks, key=lambda t: task_bucket(t, seed))[:n_val])
    return [r for r in steps if r["task_id"] not in held], [r for r in steps if r["task_id"] in held]


def sample_steps(steps: list[dict], n: int, seed: int) -> list[dict]:
    """`n` of `steps`, chosen by a seeded hash of their ids (the same steps for the same seed), in id order."""
    if n >= len(steps):
        return list(steps)
    chosen = sorted(steps, key=lambda r: task_bucket(str(r["id"]), seed))[:n]
    return sorted(chosen, key=lambda r: r["id"])


def held_out_tasks(val: list[dict], n: int, seed: int, stratify: bool = False) -> list[str]:
    """Up to `n` task ids of the validation steps, in the split's seeded order (the rollout sample).

    `stratify`: paper-style and procedural tasks alternate (paper-style first) until one kind runs out. About
    four in five training tasks are procedural, and their instructions name the goal's objects in full 96% of
    the time against 39% for the seen-environment evaluation tasks, so a plain sample of 32 holds ~2 tasks
    like the ones the suite asks for."""
    order = sorted({r["task_id"] for r in val}, key=lambda t: task_bucket(t, seed))
    if not stratify:
        return order[:n]
    kinds = [[t for t in order if not is_procedural(t)], [t for t in order if is_procedural(t)]]
    out = [t for pair in zip(*kinds) for t in pair]
    out += kinds[0][len(out) // 2:] + kinds[1][len(out) // 2:]
    return out[:n]


def is_procedural(task_id: str) -> bool:
    """A procedural training task (octopus.sim.procedural names them `procedural_K__BASE`)."""
    return task_id.startswith("procedural_")


def decode_all(steps: list[dict], size: int | None, workers: int = 2) -> list[np.ndarray]:
    """Each step's 10 views decoded and resized once to `size` (None: as stored); the trainer reuses them."""
    from octopus.model.inputs import resize_views

    def one(r: dict) -> np.ndarray:
        try:
            views = schema.decode_views(r["images"])
            return views if size is None else resize_views(views, size)
        except (DatasetError, ValueError) as err:
            raise DatasetError(f"step {r['id']}: {err}") from None

    if workers <= 1 or len(steps) < 64:
        return [one(r) for r in steps]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, steps))


def fingerprint(steps: list[dict]) -> str:
    """Which steps a model saw (ids and texts), for the run's metadata."""
    h = hashlib.sha256()
    for r in steps:
        h.update(json.dumps([r["id"], r["prompt"], r["response"]]).encode())
    return h.hexdigest()[:16]
