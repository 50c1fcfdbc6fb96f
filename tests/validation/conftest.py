"""Fixtures for the validate stage: a valid hand-built dataset and the suite snapshot (see dataset.py)."""

from __future__ import annotations

import pytest

from tests.validation import dataset


@pytest.fixture(scope="session")
def base_shards() -> list[list[dict]]:
    """Rows of the valid dataset (copy before changing them)."""
    return dataset.base_shards()


@pytest.fixture(scope="session")
def suite_tasks(tmp_path_factory):
    return dataset.write_suite(tmp_path_factory.mktemp("suite") / "tasks.json")


@pytest.fixture
def vparams():
    return dataset.make_params()
