"""Agents that write responses for episodes, registered by name (`make_agent`)."""

from __future__ import annotations

from typing import Callable, Protocol

from octopus.sim.episode import Episode


class Agent(Protocol):
    def respond(self, episode: Episode) -> str:
        """The next response (paper format) for the episode's current state."""


_REGISTRY: dict[str, Callable[..., Agent]] = {}


def register(name: str) -> Callable:
    def wrap(factory: Callable[..., Agent]) -> Callable[..., Agent]:
        _REGISTRY[name] = factory
        return factory
    return wrap


def make_agent(name: str, **kwargs) -> Agent:
    from octopus.agents import oracle, random_agent  # noqa: F401 - registers the built-in agents
    if name not in _REGISTRY:
        raise KeyError(f"unknown agent {name!r}; known agents: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name](**kwargs)


def agent_names() -> list[str]:
    from octopus.agents import oracle, random_agent  # noqa: F401
    return sorted(_REGISTRY)
