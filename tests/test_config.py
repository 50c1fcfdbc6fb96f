"""params.yaml: strict sections and fields, the runner blocks, the `policies` section (one sft stage and one
table row per policy, each a set of overrides), and the generated reference docs/params.md."""

from __future__ import annotations

import dataclasses
import functools
import re
from pathlib import Path

import pytest
import yaml

from octopus.cli.params import reference
from octopus.config import DEFAULT_POLICIES, ConfigError, Params, RunnerParams, load_params, parse_params

ROOT = Path(__file__).resolve().parents[1]


def test_the_shipped_params_train_octopus_and_the_blind_baseline():
    p = load_params(ROOT / "params.yaml")
    assert set(p.policies) == {"octopus", "blind"} and p.policies == DEFAULT_POLICIES
    assert p.for_policy("octopus").model == p.model  # Octopus is the `model` section as written
    blind = p.for_policy("blind")
    assert blind.model.family == "text" and blind.model.max_length == 1536
    assert blind.sft == p.sft and blind.model.max_new_tokens == p.model.max_new_tokens  # the rest is shared
    assert {f"{n}_sft" for n in p.policies} <= set(p.evaluate.agents)
    assert Params().policies == DEFAULT_POLICIES


def test_overrides_are_applied_on_top_of_the_sections(tmp_path):
    raw = {"model": {"max_new_tokens": 64}, "sft": {"epochs": 3},
           "policies": {"big": {"model": {"vocab_size": 8192}, "sft": {"learning_rate": 1e-3}}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    p = load_params(tmp_path / "params.yaml").for_policy("big")
    assert (p.model.vocab_size, p.model.max_new_tokens, p.sft.epochs, p.sft.learning_rate) == (8192, 64, 3.0, 1e-3)
    assert set(p.policies) == {"big"}


@pytest.mark.parametrize("policies, match", [
    ({"x": {"model": {"family": "gpt"}}}, r"policies\.x\.model\.family: must be one of idefics, smolvlm, auto, text"),
    ({"x": {"sft": {"epochs": -1}}}, r"policies\.x\.sft\.epochs: must be >= 0\.01"),
    ({"x": {"modle": {}}}, r"policies\.x\.modle: unknown field \(known: model, sft\)"),
    ({"x": {"model": "text"}}, r"policies\.x\.model: expected a mapping"),
    ({"x": ["model"]}, r"policies\.x: expected a mapping"),
    ({"Octo-Pus": {}}, r"policies\.Octo-Pus: a policy name is lower_snake_case"),
    ({}, r"policies: expected a mapping of policy name"),
    ([], r"policies: expected a mapping of policy name"),
])
def test_bad_policies_are_rejected_naming_the_field(policies, match):
    with pytest.raises(ConfigError, match=match):
        parse_params({"policies": policies})


def test_an_unknown_policy_is_a_clear_error():
    with pytest.raises(ConfigError, match="no policy 'nope'; known: octopus, blind"):
        Params().for_policy("nope")


# ---------------------------------------------------------------------- sections
def test_an_unknown_section_is_an_error_naming_it_and_the_closest():
    with pytest.raises(ConfigError, match=r"^evalute: unknown section \(did you mean evaluate\?\); known sections: "
                                          r"sim, tasks, render, collect, validate, model, sft, reward, rlef, evaluate, policies$"):
        parse_params({"evalute": {"seeds": 1}})
    with pytest.raises(ConfigError, match=r"^wandb: unknown section; known sections: sim, "):  # nothing close
        parse_params({"wandb": {}})


def test_an_unknown_field_is_an_error_naming_it(tmp_path):
    (tmp_path / "params.yaml").write_text("sim:\n  max_step: 3\n")
    with pytest.raises(ConfigError, match=r"sim\.max_step: unknown field \(known: backend, max_steps, "):
        load_params(tmp_path / "params.yaml")


# ---------------------------------------------------------------------- runner blocks
def test_runner_blocks_default_per_section():
    p = Params()
    assert p.collect.runner == RunnerParams(kind="process", workers=2, address="", task_retries=2)
    assert p.evaluate.runner == RunnerParams(kind="process", workers=2, address="", task_retries=1)
    shipped = load_params(ROOT / "params.yaml")
    assert (shipped.collect.runner, shipped.evaluate.runner) == (p.collect.runner, p.evaluate.runner)


def test_a_partial_runner_block_keeps_the_sections_other_defaults(tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"collect": {"runner": {"kind": "thread"}},
                                                          "evaluate": {"runner": {"workers": 4}}}))
    p = load_params(tmp_path / "params.yaml")
    assert p.collect.runner == RunnerParams(kind="thread", workers=2, address="", task_retries=2)  # collect's 2 kept
    assert p.evaluate.runner == RunnerParams(kind="process", workers=4, address="", task_retries=1)
    assert p.collect.teacher == "oracle" and p.evaluate.seeds == 3  # the rest of each section untouched
    empty = parse_params({"collect": {"runner": {}}, "evaluate": {"runner": None}})
    assert empty.collect.runner.task_retries == 2 and empty.evaluate.runner.task_retries == 1


@pytest.mark.parametrize("raw, match", [
    ({"evaluate": {"runner": {"kind": "slurm"}}}, r"^evaluate\.runner\.kind: must be one of process, thread, dask, "
                                                  r"ray, got 'slurm'$"),
    ({"collect": {"runner": {"kind": "celery"}}}, r"^collect\.runner\.kind: must be one of"),
    ({"evaluate": {"runner": {"workers": 0}}}, r"^evaluate\.runner\.workers: must be >= 1, got 0$"),
    ({"collect": {"runner": {"task_retries": -1}}}, r"^collect\.runner\.task_retries: must be >= 0"),
    ({"evaluate": {"runner": {"worker": 2}}}, r"^evaluate\.runner\.worker: unknown field \(known: kind, workers, "
                                              r"address, task_retries\)$"),
    ({"evaluate": {"runner": "thread"}}, r"^evaluate\.runner: expected a mapping, got str$"),
])
def test_bad_runner_blocks_name_the_sections_field(raw, match):
    with pytest.raises(ConfigError, match=match):
        parse_params(raw)


@pytest.mark.parametrize("section, old", [("collect", "workers"), ("collect", "task_retries"),
                                          ("evaluate", "runner_address"), ("evaluate", "workers")])
def test_the_old_flat_runner_fields_are_rejected(section, old):
    """params.yaml files from before the runner block fail loudly instead of silently running with defaults."""
    with pytest.raises(ConfigError, match=rf"^{section}\.{old}: unknown field"):
        parse_params({section: {old: 1}})


# ---------------------------------------------------------------------- the reference
def test_docs_params_md_is_the_generated_reference():
    """docs/params.md is `octopus params`' output: regenerate it with `octopus params > docs/params.md`."""
    doc = (ROOT / "docs" / "params.md").read_text()
    assert doc == reference() + "\n", "docs/params.md is stale: run `octopus params > docs/params.md`"


def test_the_reference_lists_every_field_of_every_section():
    ref = reference()
    sections = re.findall(r"^## (\S+)$", ref, re.M)
    assert sections == ["sim", "tasks", "render", "collect", "collect.runner", "collect.oracle", "collect.llm",
                        "validate", "model", "sft", "reward", "rlef", "evaluate", "evaluate.runner", "policies"]
    for name in sections[:-1]:
        cls = type(functools.reduce(getattr, name.split("."), Params()))
        table = _block(ref, name)
        assert [f"`{f.name}`" for f in dataclasses.fields(cls)] == re.findall(r"^\| (`\w+`) \|", table, re.M), name
    assert "| `kind` | str | `'process'` | process, thread, dask, ray |" in ref
    assert "| `max_tasks` | int or null | `None` | >= 0 |" in ref
    assert "| `explore` | float | `0.3` | >= 0.0 <= 1.0 |" in ref


def _block(ref: str, name: str) -> str:
    return ref.split(f"## {name}\n", 1)[1].split("\n## ", 1)[0]


def test_the_reference_shows_each_blocks_own_defaults():
    ref = reference()
    assert "| `task_retries` | int | `2` | >= 0 <= 20 |" in _block(ref, "collect.runner")
    assert "| `task_retries` | int | `1` | >= 0 <= 20 |" in _block(ref, "evaluate.runner")
