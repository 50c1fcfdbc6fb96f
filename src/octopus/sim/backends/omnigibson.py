"""The OmniGibson backend (optional extra): the paper's simulator, for machines that can run Isaac Sim.

Install with `pip install -e .[omnigibson]`; it needs an NVIDIA RTX GPU with Isaac Sim. Without it,
constructing the backend raises `BackendUnavailableError` saying so; the embedded backend (the
default, `sim.backend: embedded`) runs everywhere with the same interface.

Status: not implemented yet (a later issue). When `omnigibson` is importable, constructing the backend
raises `NotImplementedError`; nothing here pretends to run OmniGibson.
"""

from __future__ import annotations

import importlib

from octopus.config import Params
from octopus.sim.tasks import Suite
from octopus.sim.backends import BackendUnavailableError, register_backend

INSTALL_HINT = ("the omnigibson backend needs the optional extra: `pip install -e .[omnigibson]` "
                "(OmniGibson with Isaac Sim, which needs an NVIDIA RTX GPU); "
                "or use the default backend (`sim.backend: embedded` in params.yaml)")


class OmniGibsonBackend:
    """`Backend` over OmniGibson. Not implemented yet: construction raises (see the module docstring)."""

    name = "omnigibson"

    def __init__(self, params: Params, suite: Suite | None = None) -> None:
        self.params, self.suite = params, suite
        try:
            self.og = importlib.import_module("omnigibson")
        except ImportError as err:
            raise BackendUnavailableError(f"omnigibson is not installed ({err}): {INSTALL_HINT}") from err
        raise NotImplementedError(
            "the omnigibson backend is not implemented yet: omnigibson is installed, but building OctoGibson "
            "scenes, the 16 agent functions and the 10 cameras on it is a later issue; use `sim.backend: embedded`")


register_backend("omnigibson", OmniGibsonBackend)
