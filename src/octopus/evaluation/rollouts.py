"""Roll an agent out on one task: every step recorded, crashes recorded as failed episodes, never raised.

    agent = make_agent("oracle")
    record = rollout(agent, suite.get(task_id), params, seed=0, name="oracle", views_dir=Path("views"))
    records = rollout_batch(policy_agent, tasks, params)   # lockstep episodes, one batched respond per round
    record.success, record.steps_to_success, record.plan_score, record.steps[0].error
    json.dumps(record.to_dict());  EpisodeRecord.from_dict(d)

The episode steps `OctoGibsonEnv` (built by `env_for` to show the agent what it reads) until the
task's goal holds or `params.sim.max_steps` responses were stepped. Each
step keeps the response (clipped), its parsed code, the simulator's feedback, the goal progress after
the step and, with `views_dir`, a small contact sheet of the 10 views the agent saw before answering
(`<views_dir>/<agent>/<task>/seed<k>/stepNN.png`, stored relative to `views_dir`). An exception from
the agent or the simulator ends the episode as a failure with the message in `error`; only a
`RenderError` (this machine cannot draw at all: a setup problem, not the agent's failure) propagates.
The caller builds the agent with `seed` and closes it; `seed` is recorded with the episode.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from octopus.agents import Agent, env_for
from octopus.config import Params
from octopus.sim.render import RenderError
from octopus.sim.tasks import Suite, Task

RESPONSE_CHARS = 4000   # model output can be arbitrarily long; the record keeps the head
ERROR_CHARS = 2000
SHEET_WIDTH = 480       # px: a step's contact sheet is downscaled to this width for the HTML report


@dataclass
class StepRecord:
    """One stepped response and what the simulator made of it."""

    step: int                         # 1-based: the env's `info["steps"]` after the step
    response: str                     # the agent's text, clipped to RESPONSE_CHARS
    code: str | None                  # the parsed `act(...)` code, None when the response did not parse
    parsed: bool
    executed: bool                    # the code ran without error (targets may still be unmet)
    error: str | None                 # the feedback the agent reads next (None: the step succeeded)
    target_states_met: bool
    progress: float                   # goal progress after the step (bddl's best share of goal literals)
    task_success: bool
    grounding: dict[str, str] | None = None   # names the agent's post-processing replaced (policy agents)
    views: str | None = None          # contact sheet of the views seen before the step, relative to views_dir

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "StepRecord":
        return cls(**_known(cls, d))


@dataclass
class EpisodeRecord:
    """One episode of one agent on one task and seed (JSON-able through `to_dict` / `from_dict`)."""

    agent: str
    task_id: str
    split: str
    category: str
    scene: str
    seed: int
    instruction: str = ""
    steps: list[StepRecord] = field(default_factory=list)
    success: bool = False
    steps_to_success: int | None = None   # steps taken when the task succeeded, None when it failed
    plan_score: float = 0.0               # the best goal progress reached, the initial state included
    initial_progress: float = 0.0
    wall_s: float = 0.0
    error: str | None = None              # set when the episode crashed (agent or simulator exception)

    @property
    def crashed(self) -> bool:
        return self.error is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "EpisodeRecord":
        values = _known(cls, d)
        values["steps"] = [s if isinstance(s, StepRecord) else StepRecord.from_dict(s) for s in d.get("steps", [])]
        return cls(**values)


def _known(cls: type, d: dict[str, Any]) -> dict[str, Any]:
    """The fields `cls` has (records written by a newer version still load)."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in d.items() if k in names}


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f"\n... [{len(text) - limit} more characters]"


def slug(name: str) -> str:
    """A file-name-safe form of an agent or task name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(name)).strip("._") or "_"


def views_path(agent: str, task_id: str, seed: int, step: int) -> Path:
    """Where a step's contact sheet goes, relative to `views_dir`."""
    return Path(slug(agent)) / slug(task_id) / f"seed{seed}" / f"step{step:02d}.png"


def _sheet(views: np.ndarray, path: Path) -> None:
    """A downscaled contact sheet of the 10 views the agent saw (for the HTML report)."""
    from PIL import Image

    from octopus.sim.render import contact_sheet, save_png
    img = Image.fromarray(contact_sheet(views))
    if img.width > SHEET_WIDTH:
        img = img.resize((SHEET_WIDTH, max(1, round(img.height * SHEET_WIDTH / img.width))), Image.LANCZOS)
    save_png(np.asarray(img), path)


def _mapping(g: Any) -> dict[str, str] | None:
    mapping = getattr(g, "mapping", None)
    return {str(k): str(v) for k, v in mapping.items()} if mapping is not None else None


def _grounding(agent: Agent) -> dict[str, str] | None:
    return _mapping(getattr(agent, "last_grounding", None))


def _episode(agent: Agent, task: Task, params: Params, seed: int, views_dir: Path | None, agent_name: str):
    """One episode as a generator: yields (obs, info) for each response it needs, receives (text, grounding),
    returns the EpisodeRecord. An exception thrown in at the yield (the agent failed) ends it as a failure."""
    record = EpisodeRecord(agent_name, task.id, task.split, task.category, task.scene, seed, task.instruction)
    t0 = time.perf_counter()
    env = None
    try:
        env = env_for(agent, params, Suite([task]), views=views_dir is not None)
        obs, info = env.reset(seed=seed, options={"task": task.id})
        record.initial_progress = record.plan_score = float(info["progress"])
        done = bool(info["task_success"])
        while not done:
            n = info["steps"] + 1
            text, grounding = yield obs, info
            seen = None
            if views_dir is not None:  # the views the agent answered to
                rel = views_path(agent_name, task.id, seed, n)
                _sheet(obs["views"], Path(views_dir) / rel)
                seen = rel.as_posix()
            obs, _, terminated, truncated, info = env.step(text)
            r = info["result"]
            record.steps.append(StepRecord(
                step=int(info["steps"]), response=_clip(str(text), RESPONSE_CHARS), code=r["code"],
                parsed=bool(r["parsed"]), executed=bool(r["executed"]),
                error=_clip(r["error"], ERROR_CHARS) if r["error"] is not None else None,
                target_states_met=bool(r["target_states_met"]), progress=float(r["progress"]),
                task_success=bool(r["task_success"]), grounding=grounding, views=seen))
            record.plan_score = max(record.plan_score, float(r["progress"]))
            done = terminated or truncated
        record.success = bool(info["task_success"])
    except RenderError:
        raise
    except Exception as err:  # noqa: BLE001 - any agent or simulator failure is the episode's result
        record.error = _clip(f"{type(err).__name__}: {err}", ERROR_CHARS)
        record.success = False
    finally:
        if env is not None:
            env.close()
        record.wall_s = round(time.perf_counter() - t0, 3)
    record.steps_to_success = len(record.steps) if record.success else None
    return record


def _drive(episodes: list, respond) -> list[EpisodeRecord]:
    """Run `_episode` generators to their end in lockstep: each round, `respond(asks)` answers every running
    episode's (obs, info) with a (text, grounding) each; if it raises, each of those episodes fails with it."""
    records: list[EpisodeRecord | None] = [None] * len(episodes)
    asks: dict[int, tuple] = {}

    def advance(k: int, answer) -> None:
        try:
            asks[k] = episodes[k].throw(answer) if isinstance(answer, Exception) else episodes[k].send(answer)
        except StopIteration as stop:
            records[k] = stop.value
            asks.pop(k, None)

    for k in range(len(episodes)):
        advance(k, None)
    while asks:
        keys = list(asks)
        try:
            answers = respond([asks[k] for k in keys])
        except RenderError:
            raise
        except Exception as err:  # noqa: BLE001 - the agent's failure is these episodes' result
            answers = [err] * len(keys)
        for k, a in zip(keys, answers):
            advance(k, a)
    return records  # type: ignore[return-value]


def _one_by_one(agent: Agent):
    """`_drive`'s respond for an agent that answers one observation at a time."""
    return lambda asks: [(agent.respond(obs, info), _grounding(agent)) for obs, info in asks]


def rollout(agent: Agent, task: Task, params: Params, seed: int = 0, views_dir: Path | None = None,
            name: str | None = None) -> EpisodeRecord:
    """Run one episode of `task` with `agent` (named `name`, else its `name` attribute or class name)."""
    agent_name = name or getattr(agent, "name", None) or type(agent).__name__
    return _drive([_episode(agent, task, params, seed, views_dir, agent_name)], _one_by_one(agent))[0]


def rollout_batch(agent: Agent, tasks: list[Task], params: Params, seed: int = 0, views_dir: Path | None = None,
                  name: str | None = None, live: int | None = None) -> list[EpisodeRecord]:
    """Episodes of `tasks` in lockstep, the same episodes as `rollout` gives one by one: each round, one
    `agent.respond_batch(observations, infos)` call answers every running episode (a policy's batched
    generate); agents without `respond_batch` answer one by one. `live`: at most that many episodes (envs,
    renderers) at a time, the tasks taken in order (None: all). Each record's wall_s includes waiting for
    the others of its round. If a batched call raises, every episode of that round fails with its message."""
    agent_name = name or getattr(agent, "name", None) or type(agent).__name__
    batched = getattr(agent, "respond_batch", None)

    def respond(asks: list[tuple]) -> list[tuple]:
        texts = batched([o for o, _ in asks], [i for _, i in asks])
        groundings = getattr(agent, "last_groundings", None) or [None] * len(texts)
        return [(t, _mapping(g)) for t, g in zip(texts, groundings)]

    step = live or max(len(tasks), 1)
    return [r for i in range(0, len(tasks), step)
            for r in _drive([_episode(agent, t, params, seed, views_dir, agent_name) for t in tasks[i:i + step]],
                            respond if batched is not None else _one_by_one(agent))]
