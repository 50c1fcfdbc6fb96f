"""Fixtures for the serving tests: tiny random-init policies (vision and blind), built once per session."""

from __future__ import annotations

import pytest

#: small enough to generate in milliseconds on 2 cores; 16 new tokens per response
TINY_MODEL = {"image_size": 32, "max_length": 256, "vocab_size": 400, "max_new_tokens": 16}


def tiny_policy(family: str = "idefics"):
    from octopus.config import ModelParams
    from octopus.model.factory import build_model
    from octopus.model.policy import Policy
    from tests.helpers import TEXTS
    return Policy(build_model(ModelParams(**TINY_MODEL, family=family), TEXTS * 4, seed=0),
                  max_new_tokens=TINY_MODEL["max_new_tokens"], batch_size=8)


@pytest.fixture(scope="session")
def vision_policy():
    return tiny_policy("idefics")


@pytest.fixture(scope="session")
def blind_policy():
    return tiny_policy("text")
