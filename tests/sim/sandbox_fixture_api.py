"""Tiny fake robot API for test_sandbox; imported by the sandbox worker, never by agent code."""
from __future__ import annotations

import ctypes
import os
from typing import Any

MODULE_LOG: list[str] = []  # module-level state: grows in the worker, must stay empty in the parent


class ActionError(Exception):
    """What a simulator raises when an action's precondition fails."""


class FakeSession:
    """Session protocol: ``globals`` (API names), ``args`` (entry args), ``result()``."""

    def __init__(self, payload: dict[str, Any]) -> None:
        self.payload = payload
        self.log: list[tuple[str, str]] = []
        self.opened: set[str] = set()
        self.args = ("robot_1", "env_1", "camera_1")
        self.ballast = bytearray(payload.get("ballast_mb", 0) * 2**20)  # a big simulator state
        self.globals: dict[str, Any] = {
            "MoveBot": self.move_bot, "EasyGrasp": self.easy_grasp, "registry": {"fridge": "fridge_1"},
            "crash": lambda code=3: os._exit(code), "segfault": lambda: ctypes.string_at(0),
        }
        if payload.get("with_open"):
            self.globals["open"] = self.open

    def move_bot(self, robot: str, target: str) -> bool:
        self.log.append(("move", target))
        MODULE_LOG.append(target)
        return True

    def open(self, robot: str, obj: str) -> None:
        self.log.append(("open", obj))
        self.opened.add(obj)

    def easy_grasp(self, robot: str, obj: str) -> None:
        if obj.startswith("fridge") and obj not in self.opened:
            raise ActionError(f"{obj} is closed: open it first")
        self.log.append(("grasp", obj))

    def result(self) -> Any:
        if self.payload.get("unpicklable"):
            return {"log": self.log, "bad": lambda: 0}
        return {"log": self.log, "pid": os.getpid(), "module_log": list(MODULE_LOG)}


def make_session(payload: dict[str, Any]) -> FakeSession:
    return FakeSession(payload)
