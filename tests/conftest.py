"""Session-wide fixtures: the task suite is built once (about a minute) into a shared cache directory."""

from __future__ import annotations

import os

import pytest

from octopus.config import Params


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("octopus-cache")
    old = os.environ.get("OCTOPUS_CACHE")
    os.environ["OCTOPUS_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("OCTOPUS_CACHE", None)
    else:
        os.environ["OCTOPUS_CACHE"] = old


@pytest.fixture(scope="session")
def params() -> Params:
    return Params()


@pytest.fixture(scope="session")
def suite(cache_dir, params):
    from octopus.sim.suite import load_suite
    return load_suite(params.sim, params.tasks)
