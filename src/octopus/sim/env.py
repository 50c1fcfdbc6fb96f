"""OctoGibsonEnv: the Gymnasium API over a simulator backend (embedded by default).

    import gymnasium as gym
    env = gym.make("octopus.sim.env:octopus/OctoGibson-v0")   # imports this module, which registers the id
    obs, info = env.reset(seed=0, options={"task": "..."})
    obs, reward, terminated, truncated, info = env.step(response_text)
    saved = env.snapshot(); ...; env.restore(saved)     # back to an earlier state of this episode (trees)

Importing this module registers `octopus/OctoGibson-v0`; after `import octopus.sim.env`, plain
`gym.make("octopus/OctoGibson-v0", **kwargs)` works too. Keyword arguments go to `OctoGibsonEnv`.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from octopus.config import Params, load_params
from octopus.protocol.api import N_VIEWS
from octopus.sim.backends import Backend, make_backend
from octopus.sim.tasks import SPLITS, Suite

ENV_ID = "octopus/OctoGibson-v0"
#: Printable ASCII plus newline and tab: the alphabet of the text observation and of responses.
CHARSET = "".join(chr(c) for c in range(32, 127)) + "\n\t"
TEXT_MAX = 8192
DEPTH_MAX = 1000.0  # metres; the cameras see at most 80 m
REWARDS = ("task", "progress")
_CHARS = frozenset(CHARSET)
_TRUNCATED = "\n[...truncated]"
_ASCII = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-", "\u2014": "-",
                        "\u2026": "...", "\u00a0": " ", "\r": "\n"})


def sanitize(text: str, max_length: int = TEXT_MAX) -> str:
    """`text` within `CHARSET` and `max_length`: accents dropped, other characters replaced by '?'."""
    text = unicodedata.normalize("NFKD", text.replace("\r\n", "\n").translate(_ASCII))
    out = "".join(c if c in _CHARS else "" if unicodedata.combining(c) else "?" for c in text)
    return out if len(out) <= max_length else out[:max_length - len(_TRUNCATED)] + _TRUNCATED


@dataclass(frozen=True)
class EnvSnapshot:
    """What `OctoGibsonEnv.snapshot()` returns: the backend's token and the env's own bookkeeping."""

    episode: object  # the identity of the reset it belongs to (unique across envs)
    backend: object
    progress: float
    done: bool


class OctoGibsonEnv(gym.Env[dict, str]):
    """Household tasks solved by writing code: the paper's OctoGibson environment (arXiv 2310.08588).

    ## Description
    Each episode is one task of the suite (a BEHAVIOR-1K activity in a house, with a BDDL goal). The
    agent sees the robot's 10 camera views and the text part of the environment message, and answers
    with a response in the paper's format: Explain, Subtasks, Code (a fenced python block defining
    `act(robot, env, camera)` that calls the 16 API functions) and Target States. One response is one
    subtask. A step succeeds when the code runs and its Target States hold; a failed step restores
    the world to its state before the step, and its error becomes the next message's Execution Error.

    ## Action Space
    `Text(max_length=8192, charset=CHARSET)`: one response (see `octopus.protocol.parse_response`).
    Any `str` is accepted; text that does not parse is a failed step (parsed=False), never a crash.

    ## Observation Space
    `Dict` with
    - `views` (unless `views=False`): `Box(0, 255, (10, S, S, 3), uint8)`, S = `render.size`; EGO-0 ...
      EGO-315 (the robot's head every 45 degrees counter-clockwise from its heading), BEV-I, BEV-II
      (`octopus.sim.render.VIEWS`). Rendered only when the state changed since the last observation.
    - `text`: `Text(max_length=8192, charset=CHARSET)`: the environment message without Observed
      Objects/Relations (Inventory, Task Goal, Original Subtasks, Previous Action Code, Execution
      Error), sanitized to the charset.
    - `depth` (`depth=True`): `Box(0, 1000, (10, S, S), float32)`, metres along each view axis.
    - `segmentation` (`segmentation=True`): `Box(-1, 2**31-1, (10, S, S), int32)`, world object
      index per pixel, -1 for walls, floor and background.

    ## Rewards
    `reward="task"`: 1.0 on the step where the BDDL goal becomes true, else 0.0.
    `reward="progress"`: that plus the change in goal progress (share of goal conditions holding)
    since the previous step, so a whole successful episode earns 1 + (1 - initial progress).

    ## Starting State
    The task's initial state from its BDDL init, laid out deterministically (`sim.seed`). The task
    is `options["task"]` if given, else drawn uniformly from `split` with `self.np_random`, so
    `reset(seed=s)` always starts the same task.

    ## Episode End
    Terminated when the task's goal holds. Truncated after `sim.max_steps` steps without success
    (the environment truncates itself; no `TimeLimit` wrapper is needed). Stepping after either
    raises `gymnasium.error.ResetNeeded`.

    ## Arguments
    - `params`: `octopus.config.Params`; default: read from `params_path`.
    - `params_path`: params file (default `params.yaml` when it exists, else the defaults).
    - `backend`: simulator backend name, overriding `params.sim.backend` (`embedded`, `omnigibson`).
    - `suite`: the tasks (`octopus.sim.tasks.Suite`, e.g. the tasks stage's snapshot); default: the suite
      these params build (cached).
    - `split`: tasks drawn by `reset` without a task option: `train`, `eval_seen` or `eval_unseen`.
    - `reward`: `task` or `progress` (see Rewards).
    - `render_mode`: None or `rgb_array` (`render()` returns the labelled contact sheet of the 10 views).
    - `views`: False leaves the views out of the observation (text-only agents; nothing is rendered).
    - `depth`, `segmentation`: add those observations (they need `views`).
    - `privileged`: add `info["state"]`, the simulator's true state (`octopus.sim.episode.SimState`: task,
      world, goal, ...), for privileged agents: the planner (oracle) and the random baseline.

    ## Going back (trees)
    `snapshot()` returns a token for the current state of this episode (world, steps, message history,
    progress); `restore(token)` returns to it, so several responses can each be tried from one state
    (the trial-and-error trees of paper §4.1). A token from before the last `reset` is refused.

    ## Info
    `task` (id), `steps`, `task_success`, `progress` (share of the goal's conditions holding), `message`
    (the FULL environment message with Observed Objects and Observed Relations, for teachers and blind
    baselines, not sanitized), `objects` (names of the scene's items and furniture -> distance to the
    robot in m: what post-processing may ground a model's names to, paper §5.1), `state` (with
    `privileged=True`) and, after a step, `result`: `parsed`, `executed`, `error`, `target_states_met`,
    `task_success`, `code` (the parsed code, None if the response did not parse), `unmet` (target
    states that did not hold), `calls` (`[function, [args]]` executed), `progress`.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 1}

    def __init__(self, params: Params | None = None, params_path: str | None = None, backend: str | None = None,
                 split: str = "train", reward: str = "task", render_mode: str | None = None,
                 depth: bool = False, segmentation: bool = False, views: bool = True, privileged: bool = False,
                 suite: Suite | None = None) -> None:
        if params is not None and params_path is not None:
            raise ValueError("pass either params or params_path, not both")
        if params is None:
            if params_path is not None and not Path(params_path).exists():
                raise FileNotFoundError(f"params_path {params_path!r} does not exist")
            params = load_params(params_path or "params.yaml")
        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        if reward not in REWARDS:
            raise ValueError(f"reward must be one of {', '.join(REWARDS)}, got {reward!r}")
        if (depth or segmentation) and not views:
            raise ValueError("depth and segmentation are per view: they need views=True")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be None or one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.params, self.split, self.reward_mode, self.render_mode = params, split, reward, render_mode
        self.views, self.depth, self.segmentation, self.privileged = views, depth, segmentation, privileged
        self.backend: Backend = make_backend(backend, params, suite)
        s = params.render.size
        obs: dict[str, spaces.Space] = {"text": spaces.Text(max_length=TEXT_MAX, min_length=0, charset=CHARSET)}
        if views:
            obs["views"] = spaces.Box(0, 255, (N_VIEWS, s, s, 3), np.uint8)
        if depth:
            obs["depth"] = spaces.Box(0.0, DEPTH_MAX, (N_VIEWS, s, s), np.float32)
        if segmentation:
            obs["segmentation"] = spaces.Box(-1, np.iinfo(np.int32).max, (N_VIEWS, s, s), np.int32)
        self.observation_space = spaces.Dict(obs)
        self.action_space = spaces.Text(max_length=TEXT_MAX, min_length=0, charset=CHARSET)
        self._task_ids: list[str] | None = None
        self._progress = 0.0
        self._done: bool | None = None  # None: never reset
        self._episode: object = None  # a fresh identity per reset: a snapshot belongs to one episode of one env

    # ------------------------------------------------------------------ gymnasium API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict, dict]:
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = sorted(set(options) - {"task"})
        if unknown:
            raise ValueError(f"unknown reset option(s) {unknown}; known: ['task']")
        task_id = options.get("task")
        if task_id is None:
            if self._task_ids is None:
                self._task_ids = [t.id for t in self.backend.tasks(self.split)]
            if not self._task_ids:
                raise ValueError(f"split {self.split!r} has no tasks: pass options={{'task': id}} or another split")
            task_id = self._task_ids[int(self.np_random.integers(len(self._task_ids)))]
        self.backend.reset(task_id)
        self._progress = self.backend.progress
        self._done = False
        self._episode = object()
        return self._observation(), self._info()

    def step(self, action: str) -> tuple[dict, float, bool, bool, dict]:
        if self._done is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        if self._done:
            raise gym.error.ResetNeeded("the episode has ended (terminated or truncated): call reset() before step()")
        if not isinstance(action, str):
            raise TypeError(f"the action is a response text (str), got {type(action).__name__}")
        result = self.backend.step(action)
        reward = 1.0 if result.task_success else 0.0
        if self.reward_mode == "progress":
            reward += float(result.progress) - self._progress
        self._progress = float(result.progress)
        terminated, truncated = bool(result.task_success), bool(result.truncated)
        self._done = terminated or truncated
        info = self._info()
        info["result"] = {**result.feedback(), "code": result.code, "unmet": [str(u) for u in result.unmet],
                          "calls": [[fn, list(args)] for fn, args in result.calls], "progress": float(result.progress)}
        return self._observation(), float(reward), terminated, truncated, info

    def snapshot(self) -> EnvSnapshot:
        """A token for the current state of this episode (see "Going back" in the class docstring)."""
        if self._done is None:
            raise gym.error.ResetNeeded("call reset() before snapshot()")
        return EnvSnapshot(self._episode, self.backend.snapshot(), self._progress, bool(self._done))

    def restore(self, snapshot: EnvSnapshot) -> tuple[dict, dict]:
        """Return to `snapshot` (taken in this episode); returns the observation and info of that state."""
        if not isinstance(snapshot, EnvSnapshot):
            raise TypeError(f"restore() takes what snapshot() returned, got {type(snapshot).__name__}")
        if snapshot.episode is not self._episode:
            raise ValueError("this snapshot was taken in another episode (an earlier one, or another env's): "
                             "a snapshot restores only the episode it was taken in")
        self.backend.restore(snapshot.backend)
        self._progress, self._done = snapshot.progress, snapshot.done
        return self._observation(), self._info()

    def render(self) -> np.ndarray | None:
        """The contact sheet of the current 10 views (`rgb_array`), or None without a render mode."""
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; pass render_mode='rgb_array' to the env")
            return None
        if self._done is None:
            raise gym.error.ResetNeeded("call reset() before render()")
        from octopus.sim.render import contact_sheet
        return contact_sheet(self.backend.observe().rgb)

    def close(self) -> None:
        self.backend.close()

    # ------------------------------------------------------------------ helpers
    def _observation(self) -> dict:
        # copies: the renderer caches its arrays, and callers keep what they are given
        obs: dict[str, Any] = {"text": sanitize(self.backend.message(with_observations=False).render())}
        if not self.views:
            return obs
        o = self.backend.observe(depth=self.depth, segmentation=self.segmentation)
        obs["views"] = np.array(o.rgb, dtype=np.uint8, copy=True)
        if self.depth:
            obs["depth"] = np.array(o.depth, dtype=np.float32, copy=True)
        if self.segmentation:
            obs["segmentation"] = np.array(o.segmentation, dtype=np.int32, copy=True)
        return obs

    def _info(self) -> dict:
        b = self.backend
        info = {"task": b.task.id, "steps": int(b.steps), "task_success": bool(b.success),
                "progress": float(b.progress), "message": b.message(with_observations=True).render(),
                "objects": b.objects()}
        if self.privileged:
            info["state"] = b.state()
        return info


if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point="octopus.sim.env:OctoGibsonEnv")
