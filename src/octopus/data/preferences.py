"""The reward model's data D_R (paper §4.4): preference pairs and step labels from the feedback trees.

    nodes = read_nodes("data/dataset")                      # every train-split node, views left out
    pairs = preference_pairs(nodes)                         # [Pair(kind="sibling" | "rule", ...)]
    train, held = split_by_task(pairs, fraction=0.2, seed=0)

Two kinds of pair, both from the task-level rule's labels (label 1: the step met its targets on a
branch that completed the task; every step of a failed task is 0):
- `sibling`: responses that share a parent state (the same world; a failed step and its retry, or
  `collect.samples_per_node` > 1 proposals), the one on the completed branch preferred. Both are
  scored from the state as it was first seen (the earliest sibling's message), so the pair differs
  only in the response.
- `rule`: "even if a parental node does not have multiple responses, we can still assign feedback
  according to the rule": a node with no sibling of the other label is paired with a node of the opposite label from
  the same task, or, in a failed task (every node label 0), with a label-1 node of a completed task
  in the same scene (each scored from its own state).
Whole tasks are held out, so held-out accuracy measures tasks the reward model never saw.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from octopus.data import builders, schema
from octopus.data.schema import DatasetError

PAIR_KINDS = ("sibling", "rule")
NODE_COLUMNS = ("id", "task_id", "episode", "node", "parent_id", "split", "scene", "category", "instruction",
                "prompt", "message", "response", "parsed", "executed", "error", "target_states_met",
                "task_success", "label", "progress")


@dataclass(frozen=True)
class Pair:
    """A preferred and a dispreferred response, each with the state (message, prompt, node id) it answers."""

    kind: str
    task_id: str
    chosen: dict      # a node (NODE_COLUMNS); its `message`/`prompt` replaced by the shared state's for siblings
    rejected: dict


def read_nodes(directory: str | Path, columns: tuple[str, ...] = NODE_COLUMNS) -> list[dict]:
    """Every node of the dataset (train split only), in id order; `columns` chooses what is read."""
    directory = Path(directory)
    files = builders.shard_files(directory)
    if not files:
        raise DatasetError(f"{directory}: no Parquet shards (run `dvc repro collect`)")
    out = []
    for f in files:
        table = schema.read_table(f)
        missing = sorted(set(columns) - set(table.column_names))
        if missing:
            raise DatasetError(f"{f}: missing columns {missing}")
        for r in table.select(list(columns)).to_pylist():
            if r["split"] != "train":
                raise DatasetError(f"{f}: row {r['id']} is from split {r['split']!r}; training data must be train-only")
            out.append(r)
    out.sort(key=lambda r: (r["task_id"], r["episode"], r["node"]))
    if not out:
        raise DatasetError(f"{directory}: no nodes ({len(files)} shard(s))")
    return out


def _siblings(nodes: list[dict]) -> dict[tuple, list[dict]]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in nodes:
        groups[(r["task_id"], r["episode"], r["parent_id"])].append(r)
    return groups


def preference_pairs(nodes: list[dict]) -> list[Pair]:
    """Sibling pairs (shared parent, the completed branch preferred), then rule pairs for lone nodes."""
    pairs: list[Pair] = []
    lone: dict[str, list[dict]] = defaultdict(list)
    for (task, _, _), group in sorted(_siblings(nodes).items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or "")):
        group = sorted(group, key=lambda r: r["node"])
        good = [r for r in group if r["label"] == 1]
        bad = [r for r in group if r["label"] == 0]
        if not good or not bad:  # no sibling to prefer or to reject: the rule decides
            lone[task] += group
            continue
        state = {"message": group[0]["message"], "prompt": group[0]["prompt"], "state_id": group[0]["id"]}
        pairs += [Pair("sibling", task, {**c, **state}, {**r, **state}) for c in good for r in bad]
    # the rule for lone nodes: within a task where both labels occur; a failed task's nodes (all label 0)
    # against label-1 nodes of completed tasks in the same scene (round-robin), else of any scene
    good_by_scene: dict[str, list[dict]] = defaultdict(list)
    for r in nodes:
        if r["label"] == 1:
            good_by_scene[r["scene"]].append(r)
    all_good = [r for r in nodes if r["label"] == 1]
    used: dict[str, int] = defaultdict(int)
    for task in sorted(lone):
        good = [r for r in lone[task] if r["label"] == 1]
        bad = [r for r in lone[task] if r["label"] == 0]
        if bad and not good:
            pool = good_by_scene.get(bad[0]["scene"]) or all_good
            if not pool:
                continue
            key = bad[0]["scene"] if good_by_scene.get(bad[0]["scene"]) else ""
            for b in bad:
                g = pool[used[key] % len(pool)]
                used[key] += 1
                pairs.append(Pair("rule", task, {**g, "state_id": g["id"]}, {**b, "state_id": b["id"]}))
        elif good and bad:  # each lone node in one pair at least, cycling through the other side
            n = max(len(good), len(bad))
            pairs += [Pair("rule", task, {**good[i % len(good)], "state_id": good[i % len(good)]["id"]},
                           {**bad[i % len(bad)], "state_id": bad[i % len(bad)]["id"]}) for i in range(n)]
    return pairs


def pair_counts(pairs: list[Pair]) -> dict[str, int]:
    counts = {k: 0 for k in PAIR_KINDS}
    for p in pairs:
        counts[p.kind] += 1
    return counts


def split_tasks(task_ids, fraction: float, seed: int) -> set[str]:
    """About `fraction` of the task ids, chosen by a seeded hash (the held-out tasks)."""
    tasks = sorted(set(task_ids))
    n = round(len(tasks) * fraction) if len(tasks) > 1 else 0
    return set(sorted(tasks, key=lambda t: builders.task_bucket(t, seed))[:n])


def split_by_task(items: list, fraction: float, seed: int, task=lambda x: x.task_id) -> tuple[list, list]:
    """(train, held_out): whole tasks held out."""
    held = split_tasks([task(x) for x in items], fraction, seed)
    return [x for x in items if task(x) not in held], [x for x in items if task(x) in held]


def read_images(directory: str | Path, ids: set[str]) -> dict[str, list]:
    """The PNG views (HF Image structs) of the nodes `ids`, read shard by shard (only those rows kept)."""
    import pyarrow.compute as pc
    out: dict[str, list] = {}
    wanted = sorted(ids)
    for f in schema.shard_files(Path(directory)):
        table = schema.read_table(f).select(["id", "images"])
        table = table.filter(pc.is_in(table["id"], value_set=_string_array(wanted)))
        for r in table.to_pylist():
            out[r["id"]] = r["images"]
    missing = [i for i in wanted if i not in out]
    if missing:
        raise DatasetError(f"{directory}: nodes {missing[:3]} not found in the shards")
    return out


def _string_array(values: list[str]):
    import pyarrow as pa
    return pa.array(values, type=pa.string())
