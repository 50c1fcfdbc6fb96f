"""The task suite: tasks from the list published with the paper, over BEHAVIOR-1K activities, with splits.

Each published entry names a BEHAVIOR-1K activity, the instances removed from its init, the goal as
target states, and a scene. A task keeps the activity's scope and init (less the removed instances),
its goal as BDDL, a category (`follow`: the instruction states the goal; `reason`: it must be
inferred) and a split. Every task is built into a world and proved solvable by the planner within
the step budget; tasks that cannot be built or solved are excluded and counted with their reason.
Splits: `eval_unseen` holds tasks of scenes never used for training, `eval_seen` unseen tasks of
training scenes, `train` the rest; the default evaluation suite has the paper's shape (45 + 15 tasks,
45 follow + 15 reason).
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from functools import cached_property
from importlib import resources

from bddl.parsing import parse_problem as _bddl_parse_problem

from octopus.sim import content
from octopus.sim.goals import Goal
from octopus.sim.layout import LayoutParams, build_world
from octopus.protocol import UNARY_STATES
from octopus.sim.world import World

SPLITS = ("train", "eval_seen", "eval_unseen")
CATEGORIES = ("follow", "reason")
_STATE_ALIASES = {**UNARY_STATES, "toggleable": "toggled_on"}
_STOP = {"a", "an", "the", "and", "in", "on", "of", "to", "into", "onto", "it", "put", "for", "with", "two", "three"}


@dataclass
class Task:
    id: str
    activity: str
    scene: str
    instruction: str
    category: str
    objects: dict[str, list[str]]  # synset -> instances
    init: list
    goal: list  # list of BDDL goal expressions (conjoined)
    split: str = "train"
    source: str = "octogibson"
    plan_steps: int | None = None  # length of the planner's proof

    def problem(self) -> str:
        """The task as a BDDL problem (what bddl parses for goal evaluation)."""
        objs = " ".join(f"{' '.join(insts)} - {syn}" for syn, insts in self.objects.items())
        init = " ".join(_sexp(x) for x in self.init)
        goal = " ".join(_sexp(x) for x in self.goal)
        return f"(define (problem {self.id}) (:domain omnigibson) (:objects {objs}) (:init {init}) (:goal (and {goal})))"

    def build(self, params: LayoutParams) -> tuple[World, Goal]:
        world = build_world(self.objects, self.init, self.scene, self.id, params)
        return world, Goal(self.activity, self.problem(), world)

    def to_dict(self) -> dict:
        return asdict(self)


def parse_problem(activity: str, instance: int, domain: str):
    """bddl's parser, with its prints (to stdout, about unknown sections) silenced: stdout may carry JSON."""
    with contextlib.redirect_stdout(io.StringIO()):
        return _bddl_parse_problem(activity, instance, domain)


def _sexp(x) -> str:
    return "(" + " ".join(_sexp(y) for y in x) + ")" if isinstance(x, list) else str(x)


# ---------------------------------------------------------------------- published list
def task_list_bytes(path: str | None = None) -> bytes:
    """The task list published with the paper's code (vendored, see data/ATTRIBUTION.md), or a copy at `path`."""
    from pathlib import Path
    return Path(path).read_bytes() if path else resources.files("octopus.sim").joinpath("data/octogibson_tasks.json").read_bytes()


def published_entries(path: str | None = None) -> dict[str, dict]:
    """The published task list's entries, keyed by task id."""
    try:
        entries = json.loads(task_list_bytes(path))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path or 'vendored task list'}: not valid JSON: {err}") from None
    if not isinstance(entries, dict):
        raise ValueError(f"{path or 'vendored task list'}: expected an object mapping task ids to entries")
    return entries


def _fix_literal(raw: list[str]) -> list[str] | None:
    """Repair the list's few malformed target states (glued tokens, full-width commas); None if empty."""
    tokens: list[str] = []
    for part in raw:
        tokens += [t for t in re.split(r"[，,\s]+|(?<=_\d)(?=[a-z])", part) if t]
    if not tokens:
        return None
    if tokens[-1] not in ("0", "1"):
        tokens.append("1")
    return tokens


def _resolve(name: str, objects: dict[str, list[str]]) -> str | None:
    """Map a (possibly renamed, possibly instance-less) object name onto the current scope."""
    m = re.fullmatch(r"(.+\.n\.\d+)(?:_(\d+))?", name)
    if not m:
        return None
    synset, k = m.group(1), m.group(2)
    if synset not in objects:
        synset = content.renamed_synset(synset, objects.keys())
        if synset is None:
            return None
    return f"{synset}_{k}" if k else synset


def goal_from_targets(targets: list[list[str]], objects: dict[str, list[str]]) -> list:
    goal = []
    for n, raw in enumerate(targets):
        lit = _fix_literal(raw)
        if lit is None:
            continue
        value = lit[-1] == "1"
        if len(lit) == 3:
            pred = _STATE_ALIASES.get(lit[1])
            args = [lit[0]]
        elif len(lit) == 4:
            pred, args = lit[1], [lit[0], lit[2]]
        else:
            raise ValueError(f"target state {raw} has {len(lit)} fields")
        if pred is None:
            raise ValueError(f"unknown state {lit[1]!r}")
        resolved = [_resolve(a, objects) for a in args]
        if None in resolved:
            raise ValueError(f"object {args[resolved.index(None)]!r} is not in the activity's scope")
        body: list = [pred, *resolved]
        for j, a in enumerate(resolved):  # a synset without instance: any instance of it
            if not re.search(r"_\d+$", a):
                var = f"?x{n}{j}"
                body[1 + j] = var
                body = ["exists", [var, "-", a], body]
                break
        goal.append(body if value else ["not", body])
    if not goal:
        raise ValueError("no target states")
    return goal


def _words(name: str) -> set[str]:
    return {w for w in re.split(r"[_\s\-]+", name.lower()) if w and w not in _STOP}


def _category(key: str, detailed: str, goal_objs: list[str]) -> tuple[str, str]:
    """(category, instruction): `reason` when the task's own name does not say which objects to use."""
    heads = {s.split(".")[0].split("_")[-1] for s in goal_objs}
    key_words = _words(key)
    if key != detailed and not heads <= key_words:
        return "reason", key.replace("_", " ")
    return "follow", detailed.replace("_", " ")


def published_tasks(path: str | None = None) -> tuple[list[Task], list[tuple[str, str]]]:
    tasks, excluded = [], []
    parsed: dict[str, tuple] = {}
    for key, e in published_entries(path).items():
        try:
            act = e["task_name"]
            if act not in parsed:
                _, objs, init, _ = parse_problem(act, 0, "omnigibson")
                parsed[act] = (objs, init)
            objs, init = parsed[act]
            objects = {s: list(v) for s, v in objs.items()}
            removed = {r for r in (_resolve(x, objects) for x in e["removed_item"]) if r}
            objects = {s: [i for i in v if i not in removed] for s, v in objects.items()}
            objects = {s: v for s, v in objects.items() if v}
            keep = [lit for lit in init if not (set(_flat(lit)) & removed)]
            goal = goal_from_targets(e["target_states"], objects)
        except (ValueError, FileNotFoundError, KeyError, TypeError, content.ContentError) as err:
            excluded.append((key, f"malformed entry: {type(err).__name__}: {err}"))
            continue
        goal_objs = [a for lit in goal for a in _flat(lit) if ".n." in a]
        category, instruction = _category(key, e["detailed_name"], goal_objs)
        tasks.append(Task(key, act, e["env"], instruction, category, objects, keep, goal))
    return tasks, excluded


def _flat(x) -> list[str]:
    return [z for y in x for z in _flat(y)] if isinstance(x, list) else [x]


# ---------------------------------------------------------------------- suite
@dataclass
class Suite:
    tasks: list[Task]
    excluded: list[tuple[str, str]] = field(default_factory=list)

    @cached_property
    def by_id(self) -> dict[str, Task]:
        return {t.id: t for t in self.tasks}

    def get(self, task_id: str) -> Task:
        try:
            return self.by_id[task_id]
        except KeyError:
            import difflib
            close = difflib.get_close_matches(task_id, self.by_id, n=3)
            raise KeyError(f"unknown task {task_id!r}" + (f"; did you mean {', '.join(close)}?" if close else "")) from None

    def select(self, split: str | None = None, category: str | None = None) -> list[Task]:
        return [t for t in self.tasks if (split is None or t.split == split) and (category is None or t.category == category)]

    def evaluation(self) -> list[Task]:
        return self.select("eval_seen") + self.select("eval_unseen")


def assign_splits(tasks: list[Task], unseen_scenes: list[str], eval_seen: int, eval_unseen: int,
                  eval_reason: int, seed: int) -> list[tuple[str, str]]:
    """Set each task's split in place; returns tasks dropped (unseen-scene tasks beyond the quota)."""
    rng = random.Random(seed)
    unseen = [t for t in tasks if t.scene in unseen_scenes]
    seen = [t for t in tasks if t.scene not in unseen_scenes]
    pick_u = _pick(unseen, eval_unseen, round(eval_reason * eval_unseen / (eval_seen + eval_unseen)), rng, strict=False)
    per_scene = Counter(t.scene for t in seen)
    seen_pool = [t for t in seen if per_scene[t.scene] >= 3]  # "seen scene": it keeps training tasks
    pick_s = _pick(seen_pool, eval_seen, eval_reason - sum(t.category == "reason" for t in pick_u), rng,
                   cap=lambda scene: per_scene[scene] - 1)
    for t in tasks:
        t.split = "train"
    for t in pick_s:
        t.split = "eval_seen"
    for t in pick_u:
        t.split = "eval_unseen"
    dropped = [t for t in unseen if t.split != "eval_unseen"]
    for t in dropped:
        tasks.remove(t)
    return [(t.id, f"in unseen scene {t.scene} beyond the eval_unseen quota") for t in dropped]


def _pick(pool: list[Task], n: int, n_reason: int, rng: random.Random, cap=None, strict: bool = True) -> list[Task]:
    """n tasks, n_reason of them `reason` (fewer allowed unless strict), at most cap(scene) per scene."""
    taken: Counter = Counter()
    out: list[Task] = []
    for category in ("reason", "follow"):
        want = n_reason if category == "reason" else n - len(out)  # follow fills what reason left
        cands = sorted((t for t in pool if t.category == category), key=lambda t: t.id)
        rng.shuffle(cands)
        got = 0
        for t in cands:
            if got == want:
                break
            if cap is None or taken[t.scene] < cap(t.scene):
                out.append(t)
                taken[t.scene] += 1
                got += 1
        if got < want and (strict or category == "follow"):
            raise ValueError(f"only {got} {category} tasks available for {want} evaluation slots")
    return out


# ---------------------------------------------------------------------- tasks from BEHAVIOR-1K goals
_DERIVABLE = {"ontop": "put {0} on the {1}", "inside": "put {0} in the {1}", "under": "put {0} under the {1}",
              "cooked": "cook the {0}", "open": "open the {0}", "toggled_on": "turn on the {0}",
              "frozen": "freeze the {0}", "hot": "heat the {0}", "folded": "fold the {0}", "unfolded": "unfold the {0}"}


def words(inst: str) -> str:
    """BDDL instance -> the words an instruction uses (`?mug.n.04_1` -> "mug", `bottle__of__milk.n.01_1` ->
    "bottle of milk"): the category's words, single-spaced, without the BDDL variable mark."""
    return " ".join(inst.lstrip("?").split(".")[0].replace("__of__", " of ").replace("_", " ").split())


def behavior_tasks(activities: list[str], exclude: set[str], avoid_scenes: set[str]) -> list[Task]:
    """One `follow` task per BEHAVIOR-1K activity from its first plain goal literal over concrete objects.

    The scene is one of the activity's preselected scenes, else the first scene that has all its rooms."""
    preselected = preselected_scenes()
    rooms_of = {s: {content.room_type(r) for r in content.scene_rooms(s)} for s in content.scene_names()}
    out = []
    for act in activities:
        if act in exclude:
            continue
        try:
            _, objs, init, goal = parse_problem(act, 0, "omnigibson")
        except Exception:  # noqa: BLE001 - a few activity files use syntax the parser rejects; skip them
            continue
        needed = {lit[2] for lit in init if lit[0] == "inroom"}
        scenes = [s for s in preselected.get(act, []) if s not in avoid_scenes]
        scenes += [s for s in sorted(rooms_of) if s not in avoid_scenes and needed <= rooms_of[s]]
        if not scenes:
            continue
        for lit in goal:
            if lit[0] in _DERIVABLE and all(re.search(r"_\d+$", a) for a in lit[1:]) and "agent.n.01_1" not in lit:
                text = _DERIVABLE[lit[0]].format(*(words(a) for a in lit[1:]))
                objects = {s: list(v) for s, v in objs.items()}
                out.append(Task(f"{act}__{lit[0]}", act, scenes[0], text, "follow", objects, init, [lit],
                                source="behavior"))
                break
    return out


def preselected_scenes() -> dict[str, list[str]]:
    import bddl
    from pathlib import Path
    return json.loads((Path(bddl.__file__).parent / "activity_to_preselected_scenes.json").read_text())
