"""Renamed copies of training steps: the policy learns to copy object names from the Task Goal.

A small model trained on a few thousand steps memorises the names of its training scenes: asked to
"buy an egg" it writes `registry(env, "hotdog_1")`. The evaluation tasks name categories it never had
to write. `rename_steps` swaps, in a share of the training steps, every category that the step's Task
Goal names (`swiss_cheese` when the goal says "swiss cheese") for another BEHAVIOR-1K category, the same
way in the prompt and the response:

    Task Goal: put swiss cheese in the basket      ->  Task Goal: put soup ladle in the basket
    registry(env, "swiss_cheese_1")                ->  registry(env, "soup_ladle_1")

The only way to get such a step right is to copy the name from the goal. The views still show the
original object; names the goal does not mention (the furniture that holds it) are left alone, since
they come from the views and the feedback. Replacement categories exclude every category of the
evaluation suite, so copying an evaluation task's names is never seen in training.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable

NAME = re.compile(r"\b([a-z][a-z]*(?:_[a-z]+)*)_(\d+)\b")
GOAL = re.compile(r"^Task Goal: (.*)$", re.M)
GOAL_LINE = re.compile(r"^.*(?:Task Goal:|task goal is:).*$", re.M)  # the prompt's goal and the Explain's copy
POOL_WORD = re.compile(r"^[a-z]{3,}(?:_[a-z]{3,}){0,2}$")


def category_pool(exclude: Iterable[str] = ()) -> list[str]:
    """BEHAVIOR-1K object categories (lemmas of bddl synsets with object models, no substances) usable as
    names, minus `exclude`, sorted."""
    from octopus.sim.content import all_synsets, synset_info
    banned = set(exclude)
    infos = (synset_info(s) for s in all_synsets())
    return sorted({i.category for i in infos if i.n_models > 0 and not i.is_substance and not i.is_agent
                   and not i.is_floor and POOL_WORD.match(i.category) and i.category not in banned})


def suite_categories(suite_path, splits: tuple[str, ...] = ("eval_seen", "eval_unseen")) -> set[str]:
    """The object categories of the suite snapshot's tasks in `splits` (what renaming never introduces)."""
    from octopus.sim.content import lemma
    from octopus.sim.tasks_stage import read_snapshot
    return {lemma(synset) for t in read_snapshot(suite_path).tasks if t.split in splits for synset in t.objects}


def goal_categories(prompt: str, response: str = "") -> list[str]:
    """Categories of the names in `prompt` and `response` that the prompt's Task Goal spells out in words,
    longest first."""
    goal = GOAL.search(prompt)
    if goal is None:
        return []
    words = f" {re.sub(r'[^a-z]+', ' ', goal.group(1).lower())} "
    cats = {m.group(1) for m in NAME.finditer(prompt + "\n" + response)}
    return sorted((c for c in cats if f" {c.replace('_', ' ')} " in words), key=lambda c: (-len(c), c))


def rename_text(text: str, mapping: dict[str, str]) -> str:
    """`text` with each category of `mapping` replaced: as a name (`cat_1`) everywhere, and in words
    (`the cat`) on the lines that quote the goal (never in code, where `camera` is an argument)."""
    for old, new in mapping.items():
        text = re.sub(rf"\b{old}_(\d+)\b", rf"{new}_\1", text)
    words = {rf"\b{old.replace('_', ' ')}\b": new.replace("_", " ") for old, new in mapping.items()}

    def goal_line(m: re.Match) -> str:
        line = m.group(0)
        for old, new in words.items():
            line = re.sub(old, new, line)
        return line
    return GOAL_LINE.sub(goal_line, text)


def rename_step(step: dict, column: str, pool: list[str], rng: random.Random) -> dict | None:
    """A copy of `step` with its goal's categories renamed in `column` and the response; None if none."""
    cats = goal_categories(step[column], step["response"])
    if not cats:
        return None
    taken = {m.group(1) for m in NAME.finditer(step[column] + step["response"])}
    fresh = [c for c in rng.sample(pool, min(len(pool), 4 * len(cats) + len(taken))) if c not in taken]
    mapping = dict(zip(cats, fresh))
    return {**step, column: rename_text(step[column], mapping), "response": rename_text(step["response"], mapping)}


def rename_steps(steps: list[dict], share: float, column: str, pool: list[str], seed: int) -> tuple[list[dict], int]:
    """`steps` with about `share` of them replaced by renamed copies (seeded), and how many were renamed."""
    if share <= 0 or not pool:
        return steps, 0
    rng, out, renamed = random.Random(seed), [], 0
    for step in steps:
        new = rename_step(step, column, pool, rng) if rng.random() < share else None
        out.append(new or step)
        renamed += new is not None
    return out, renamed
