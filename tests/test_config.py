"""params.yaml's `policies` section: one sft stage and one table row per policy, each a set of overrides."""

from __future__ import annotations

import pytest
import yaml

from octopus.config import DEFAULT_POLICIES, ConfigError, Params, load_params, parse_params


def test_the_shipped_params_train_octopus_and_the_blind_baseline():
    p = load_params("params.yaml")
    assert set(p.policies) == {"octopus", "blind"} and p.policies == DEFAULT_POLICIES
    assert p.for_policy("octopus").model == p.model  # Octopus is the `model` section as written
    blind = p.for_policy("blind")
    assert blind.model.family == "text" and blind.model.max_length == 1024
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
    ({"x": {"model": {"family": "gpt"}}}, r"policies\.x\.model\.family: must be one of idefics, auto, text"),
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
