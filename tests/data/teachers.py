"""Teachers for collect-stage tests, plugged in by import path (`collect.teacher: tests.data.teachers:NAME`).

Each reads what the env shows a privileged teacher (`info["state"]`, for the oracle it wraps) and the
task id (`info["task"]`)."""

from __future__ import annotations

import os
from pathlib import Path

from octopus.agents import Proposal, TeacherError
from octopus.agents.oracle import OracleAgent


class _Plain:
    """The oracle without exploration (one proposal per state)."""

    name = "plain"
    reads = frozenset({"state"})

    def __init__(self) -> None:
        self.agent = OracleAgent()
        self.calls = 0

    def propose(self, obs: dict, info: dict, n: int = 1) -> list[Proposal]:
        self.calls += 1
        return [Proposal(self.agent.respond(obs, info)) for _ in range(n)]

    def usage(self) -> dict:
        return {"proposals": self.calls}


def plain(collect, sim, seed):
    return _Plain()


class _Failing(_Plain):
    """Raises TeacherError for one task (OCTOPUS_TEST_FAIL_TASK), like an endpoint that is down."""

    def propose(self, obs: dict, info: dict, n: int = 1) -> list[Proposal]:
        if info["task"] == os.environ.get("OCTOPUS_TEST_FAIL_TASK"):
            raise TeacherError("endpoint http://127.0.0.1:9/v1 unreachable after 3 attempts")
        return super().propose(obs, info, n)


def failing(collect, sim, seed):
    return _Failing()


class _CrashOnce(_Plain):
    """Kills its worker process the first time it proposes for OCTOPUS_TEST_FAIL_TASK (marker file)."""

    def propose(self, obs: dict, info: dict, n: int = 1) -> list[Proposal]:
        marker = Path(os.environ["OCTOPUS_TEST_CRASH_MARKER"])
        if info["task"] == os.environ.get("OCTOPUS_TEST_FAIL_TASK") and not marker.exists():
            marker.write_text("crashed")
            os._exit(17)  # a hard crash: no exception, no cleanup
        return super().propose(obs, info, n)


def crash_once(collect, sim, seed):
    return _CrashOnce()


class _Slow(_Plain):
    """Sleeps before every proposal, so a test can interrupt a run midway."""

    def propose(self, obs: dict, info: dict, n: int = 1) -> list[Proposal]:
        import time
        time.sleep(float(os.environ.get("OCTOPUS_TEST_SLEEP", "0.3")))
        return super().propose(obs, info, n)


def slow(collect, sim, seed):
    return _Slow()
