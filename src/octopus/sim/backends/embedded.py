"""The embedded backend: the CPU simulator of this package (`Episode` for the rules, `SceneRenderer` for the views).

The task suite is the one given (e.g. the tasks stage's snapshot), or loaded on first use with
`octopus.sim.tasks_stage.load_suite` (built and proved once, then read from the on-disk cache). `reset` starts an `Episode`; the renderer is built on the first
`observe()` after it, so text-only use (teachers, blind baselines, `octopus sim run`) never needs
OpenGL. The renderer holds the episode's `World`, so it always shows the current state.
"""

from __future__ import annotations

from octopus.config import Params
from octopus.sim.backends import register_backend
from octopus.sim.episode import Checkpoint, Episode, SimState, StepResult
from octopus.protocol import EnvMessage
from octopus.sim.tasks import SPLITS, Suite, Task


class EmbeddedBackend:
    """`Backend` over `octopus.sim.episode.Episode` and `octopus.sim.render.SceneRenderer`."""

    name = "embedded"

    def __init__(self, params: Params, suite: Suite | None = None) -> None:
        self.params = params
        self._suite: Suite | None = suite
        self._episode: Episode | None = None
        self._renderer = None  # SceneRenderer, built lazily by observe()

    # ------------------------------------------------------------------ tasks
    @property
    def suite(self) -> Suite:
        """The task suite for these params (loaded, or built and cached, on first use)."""
        if self._suite is None:
            from octopus.sim.tasks_stage import load_suite
            self._suite = load_suite(self.params.sim, self.params.tasks)
        return self._suite

    def tasks(self, split: str | None = None) -> list[Task]:
        if split is not None and split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; known splits: {', '.join(SPLITS)}")
        return self.suite.select(split)

    def get_task(self, task_id: str) -> Task:
        """The task with this id; ValueError naming close matches otherwise."""
        try:
            return self.suite.get(task_id)
        except KeyError as err:  # Suite.get names the closest ids (difflib)
            raise ValueError(f"{err.args[0]} (see `octopus tasks list`)") from None

    # ------------------------------------------------------------------ episode
    def reset(self, task_id: str) -> None:
        task = self.get_task(task_id)
        self._close_renderer()
        self._episode = Episode(task, self.params.sim)

    @property
    def episode(self) -> Episode:
        """The running episode (agents plan on it; RuntimeError before the first reset)."""
        if self._episode is None:
            raise RuntimeError("no episode yet: call reset(task_id) first")
        return self._episode

    def step(self, text: str) -> StepResult:
        return self.episode.step(text)

    def message(self, with_observations: bool = True) -> EnvMessage:
        return self.episode.message(with_observations)

    def observe(self, depth: bool = False, segmentation: bool = False):
        """The 10 views of the current state (`octopus.sim.render.Observation`; cached until the world changes)."""
        episode = self.episode
        if self._renderer is None:
            from octopus.sim.render import SceneRenderer
            self._renderer = SceneRenderer(episode.world, self.params.render, seed=self.params.sim.seed)
        return self._renderer.observe(depth=depth, segmentation=segmentation)

    def objects(self) -> dict[str, float]:
        return self.episode.objects()

    def snapshot(self) -> Checkpoint:
        return self.episode.checkpoint()

    def restore(self, snapshot: Checkpoint) -> None:
        if not isinstance(snapshot, Checkpoint):
            raise TypeError(f"restore() takes what snapshot() returned, got {type(snapshot).__name__}")
        self.episode.restore(snapshot)

    def state(self) -> SimState:
        return self.episode.state()

    @property
    def task(self) -> Task | None:
        return self._episode.task if self._episode is not None else None

    @property
    def steps(self) -> int:
        return self._episode.steps if self._episode is not None else 0

    @property
    def success(self) -> bool:
        return bool(self._episode.success) if self._episode is not None else False

    @property
    def progress(self) -> float:
        return float(self._episode.goal.progress()) if self._episode is not None else 0.0

    @property
    def max_steps(self) -> int:
        return self.params.sim.max_steps

    # ------------------------------------------------------------------ resources
    def _close_renderer(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def close(self) -> None:
        self._close_renderer()


register_backend("embedded", EmbeddedBackend)
