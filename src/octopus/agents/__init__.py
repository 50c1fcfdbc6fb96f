"""Agents and teachers, registered by name: who writes responses from what the environment shows.

Agents (`make_agent`) write one response for the current state: evaluation, `octopus sim run`, RL.
Teachers (`make_teacher`) propose responses for the collect stage, several per state when asked
(siblings of a trial-and-error tree), and account for what they cost.

Both read what `OctoGibsonEnv` returns, `(obs, info)`, and say in `reads` which parts they need, so
the rollout builds the env to match (no views rendered for a text-only agent):

    views, text    obs["views"], obs["text"]: the 10 views and the text a vision-language policy reads
    message        info["message"]: the full text message with Observed Objects/Relations (LLMs, blind LMs)
    objects        info["objects"]: the scene's object names -> distance (grounding a model's names)
    state          info["state"]: the simulator's true state (privileged: planner, random baseline)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol

from octopus.config import CollectParams, SimParams

#: what an agent may read (see the module docstring)
READS = frozenset({"views", "text", "message", "objects", "state"})


class Agent(Protocol):
    reads: frozenset[str]  # subset of READS

    def respond(self, obs: dict[str, Any], info: dict[str, Any]) -> str:
        """The next response (paper format) for the state the env just showed."""


@dataclass(frozen=True)
class Proposal:
    """One proposed response. `explore` names the kind of deliberate wrong step (oracle exploration)."""

    text: str
    explore: str | None = None
    cached: bool = False


class Teacher(Protocol):
    name: str
    reads: frozenset[str]  # subset of READS

    def propose(self, obs: dict[str, Any], info: dict[str, Any], n: int = 1) -> list[Proposal]:
        """`n` responses for the state the env just showed (deterministic for the teacher's seed)."""

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
    from octopus.agents import learned, llm, oracle, random_agent  # noqa: F401 - registers the built-in agents and teachers


def env_for(who: Agent | Teacher, params: Any, suite: Any = None, views: bool = False):
    """The `OctoGibsonEnv` that shows `who` what it reads (views rendered only if it reads them or `views`)."""
    from octopus.sim.env import OctoGibsonEnv
    reads = reads_of(who)
    return OctoGibsonEnv(params=params, suite=suite, views=views or "views" in reads, privileged="state" in reads)


def reads_of(who: Agent | Teacher) -> frozenset[str]:
    """What an agent or teacher reads (ValueError for an unknown part; default: views and text)."""
    reads = frozenset(getattr(who, "reads", ("views", "text")))
    if unknown := sorted(reads - READS):
        raise ValueError(f"{type(who).__name__}.reads: unknown part(s) {unknown}; known: {sorted(READS)}")
    return reads


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
