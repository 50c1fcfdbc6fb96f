"""Sessions of a sandbox worker taken over by its code (what a real escape would let agent code do), for
test_sandbox_hostile: imported by the sandbox worker only."""
from __future__ import annotations

import os
from typing import Any

from octopus.sim.actions import SandboxSession


class _RunsInTheParent:
    """Unpickling this calls os.system in whoever unpickles it."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple:
        return os.system, (f"touch {self.path}",)


class EvilPickle(SandboxSession):
    """Its reply asks the parent to run a shell command."""

    def result(self) -> Any:
        return [("MoveBot", ("stove_1",)), _RunsInTheParent(os.environ.get("OCTOPUS_TEST_PWNED", "/tmp/pwned"))]


class LyingLog(SandboxSession):
    """Its reply claims calls that were never made, in shapes the world has never seen."""

    def result(self) -> Any:
        return [("MoveBot", ("stove_1",)), ("EasyGrasp", ("no_such_object",)), ("MoveBot",), 42]


def evil_pickle(world: Any) -> EvilPickle:
    return EvilPickle(world)


def lying_log(world: Any) -> LyingLog:
    return LyingLog(world)
