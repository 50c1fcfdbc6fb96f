"""Simulator backends, registered by name: what `OctoGibsonEnv` and `octopus sim run` step.

A backend owns one episode at a time: `reset(task_id)` starts a task from its initial state,
`step(response_text)` executes one response in the paper's format, `message()` is the environment
message the agent reads, `observe()` the 10 views, `snapshot()`/`restore()` go back to an earlier
state of the episode (trees), and `state()` is the true state for privileged agents. Two are built in:

    embedded     the CPU simulator of this package (default; `octopus.sim.backends.embedded`)
    omnigibson   OmniGibson / Isaac Sim (optional extra; `octopus.sim.backends.omnigibson`)

`make_backend(None, params, suite)` builds `params.sim.backend` over a task suite (default: the one these
params build); `register_backend(name, factory)` adds one, `factory(params, suite)`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Protocol, runtime_checkable

from octopus.config import Params

if TYPE_CHECKING:
    from octopus.sim.episode import SimState, StepResult
    from octopus.protocol import EnvMessage
    from octopus.sim.render import Observation
    from octopus.sim.tasks import Suite, Task


class BackendUnavailableError(ImportError):
    """A backend's optional dependency is not installed; the message says how to install it."""


@runtime_checkable
class Backend(Protocol):
    """One simulator running one episode at a time (see the module docstring)."""

    name: str  # the registered name

    def tasks(self, split: str | None = None) -> list[Task]:
        """Tasks of the suite, all or one split (`train`, `eval_seen`, `eval_unseen`)."""

    def reset(self, task_id: str) -> None:
        """Start `task_id` from its initial state (ValueError naming close matches if unknown)."""

    def step(self, text: str) -> StepResult:
        """Execute one response; a failed step leaves the world as it was before it."""

    def message(self, with_observations: bool = True) -> EnvMessage:
        """The environment message; without observations it is the text part a vision policy reads."""

    def observe(self, depth: bool = False, segmentation: bool = False) -> Observation:
        """The 10 views (`octopus.sim.render.VIEWS` order) of the current state."""

    def objects(self) -> dict[str, float]:
        """Names an agent may use (items and furniture of the scene) -> distance to the robot (m)."""

    def snapshot(self) -> object:
        """An opaque token for the episode's current state (world, step count, message history)."""

    def restore(self, snapshot: object) -> None:
        """Back to a state `snapshot()` returned during this episode."""

    def state(self) -> SimState:
        """The true state, for privileged agents (planner, random baseline); see `SimState`."""

    @property
    def task(self) -> Task | None:
        """The current task (None before the first reset)."""

    @property
    def steps(self) -> int:
        """Steps taken in the current episode."""

    @property
    def success(self) -> bool:
        """Whether the task's BDDL goal holds now."""

    @property
    def progress(self) -> float:
        """Share of the goal's conditions that hold now (0..1)."""

    @property
    def max_steps(self) -> int:
        """Steps per episode before it is truncated."""

    def close(self) -> None:
        """Release renderers and other resources (safe to call twice)."""


BackendFactory = Callable[["Params", "Suite | None"], Backend]
_REGISTRY: dict[str, BackendFactory] = {}


def register_backend(name: str, factory: BackendFactory) -> BackendFactory:
    """Register `factory(params, suite) -> Backend` under `name` (re-registering a name replaces it)."""
    if not name or not isinstance(name, str):
        raise ValueError(f"backend name must be a non-empty string, got {name!r}")
    _REGISTRY[name] = factory
    return factory


def _load_builtins() -> None:
    from octopus.sim.backends import embedded, omnigibson  # noqa: F401 - registers the built-in backends


def backend_names() -> list[str]:
    """Names `make_backend` accepts."""
    _load_builtins()
    return sorted(_REGISTRY)


def make_backend(name: str | None, params: Params, suite: Suite | None = None) -> Backend:
    """Build the backend `name` (default: `params.sim.backend`) for these params, over `suite` (default:
    the suite these params build, from the cache)."""
    _load_builtins()
    name = params.sim.backend if name is None else name
    if name not in _REGISTRY:
        raise ValueError(f"unknown simulator backend {name!r}; known backends: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name](params, suite)
