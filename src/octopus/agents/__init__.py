"""Agents and teachers, registered by name.

Agents (`make_agent`) write one response for an episode's current state: evaluation, `octopus sim run`.
Teachers (`make_teacher`) propose responses for the collect stage, several per state when asked
(siblings of a trial-and-error tree), and account for what they cost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

from octopus.config import CollectParams, SimParams
from octopus.sim.episode import Episode


class Agent(Protocol):
    def respond(self, episode: Episode) -> str:
        """The next response (paper format) for the episode's current state."""


@dataclass(frozen=True)
class Proposal:
    """One proposed response. `explore` names the kind of deliberate wrong step (oracle exploration)."""

    text: str
    explore: str | None = None
    cached: bool = False


class Teacher(Protocol):
    name: str

    def propose(self, episode: Episode, n: int = 1) -> list[Proposal]:
        """`n` responses for the episode's current state (deterministic for the teacher's seed)."""

    def usage(self) -> dict[str, float]:
        """Accounting since construction (requests, cached, tokens, cost_usd, ...); summed by the stage."""


class TeacherError(RuntimeError):
    """The teacher cannot answer (endpoint down, timed out after retries, malformed API reply)."""


_REGISTRY: dict[str, Callable[..., Agent]] = {}
_TEACHERS: dict[str, Callable[..., Teacher]] = {}


def register(name: str) -> Callable:
    def wrap(factory: Callable[..., Agent]) -> Callable[..., Agent]:
        _REGISTRY[name] = factory
        return factory
    return wrap


def register_teacher(name: str) -> Callable:
    """Register `factory(collect: CollectParams, sim: SimParams, seed: int) -> Teacher` under `name`."""
    def wrap(factory: Callable[..., Teacher]) -> Callable[..., Teacher]:
        _TEACHERS[name] = factory
        return factory
    return wrap


def _load_builtins() -> None:
    from octopus.agents import llm, oracle, policy, random_agent  # noqa: F401 - registers the built-in agents and teachers


def make_agent(name: str, **kwargs) -> Agent:
    _load_builtins()
    if name not in _REGISTRY:
        raise KeyError(f"unknown agent {name!r}; known agents: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name](**kwargs)


def agent_names() -> list[str]:
    _load_builtins()
    return sorted(_REGISTRY)


def make_teacher(name: str, collect: CollectParams, sim: SimParams, seed: int = 0) -> Teacher:
    """The teacher registered as `name` (`collect.teacher`), seeded for one episode.

    `name` may also be `package.module:factory`, a factory with the registered signature, so a
    researcher's own teacher plugs in without editing this package (imported in every worker)."""
    _load_builtins()
    if ":" in name:
        import importlib
        module, _, attr = name.partition(":")
        try:
            factory = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as err:
            raise KeyError(f"teacher {name!r}: cannot import {attr} from {module} ({err})") from None
        return factory(collect, sim, seed)
    if name not in _TEACHERS:
        raise KeyError(f"unknown teacher {name!r}; known teachers: {', '.join(sorted(_TEACHERS))}, "
                       "or package.module:factory")
    return _TEACHERS[name](collect, sim, seed)


def teacher_names() -> list[str]:
    _load_builtins()
    return sorted(_TEACHERS)
