"""The reward stage: preference pairs from the trees, r_phi trained with TRL's RewardTrainer, held-out figures."""

from __future__ import annotations

import json

import pytest

from octopus.config import parse_params
from octopus.data import preferences
from octopus.model.factory import ModelError
from octopus.model.reward import META, RewardModel
from octopus.training.reward import auc, pair_figures, train_reward, trivial_score
from tests.validation.dataset import tree, write_dataset

RAW = {"reward": {"max_length": 256, "vocab_size": 400, "epochs": 3, "batch_size": 8, "learning_rate": 2e-3,
                  "held_out": 0.25, "eval_every": 20, "log_every": 5}}


def _shards(n: int = 24) -> list[list[dict]]:
    """n tasks over 2 scenes; every fourth task failed (its nodes are all label 0: rule pairs)."""
    rows = [tree(f"task_{k:02d}", f"scene_{k % 2}", 0, k % 4 != 3, k, size=8) for k in range(n)]
    return [sum(rows[: n // 2], []), sum(rows[n // 2:], [])]


def test_pairs_share_a_state_or_follow_the_task_level_rule():
    nodes = [r for shard in _shards(8) for r in shard]
    pairs = preferences.preference_pairs(nodes)
    counts = preferences.pair_counts(pairs)
    # a completed tree: one label-1 sibling (fridge) against 3 failed ones; a failed tree's 5 nodes by the rule
    assert counts == {"sibling": 6 * 3, "rule": 2 * 5}, counts
    for p in pairs:
        assert p.chosen["label"] == 1 and p.rejected["label"] == 0
        if p.kind == "sibling":
            assert p.chosen["parent_id"] == p.rejected["parent_id"] and p.chosen["state_id"] == p.rejected["state_id"]
            assert p.chosen["task_id"] == p.rejected["task_id"] == p.task_id
        else:  # a failed task's node against a completed task's in the same scene
            assert not p.rejected["task_success"] and p.chosen["scene"] == p.rejected["scene"]
    train, held = preferences.split_by_task(pairs, 0.25, seed=0)
    assert train and held and not {p.task_id for p in train} & {p.task_id for p in held}


def test_auc_and_pair_figures_by_hand():
    assert auc([0.9, 0.8, 0.1, 0.8], [1, 1, 0, 0]) == pytest.approx((1 + 1 + 0.5 + 1) / 4)
    assert auc([1.0, 2.0], [1, 1]) is None
    f = pair_figures([1.0, 0.0, 2.0], [0.0, 0.0, 3.0], ["sibling", "rule", "sibling"])
    assert f["pairwise_accuracy"] == pytest.approx(0.5) and f["accuracy_rule"] == 0.5
    assert f["mean_margin"] == pytest.approx(0.0)


def test_the_trivial_scorer_reads_format_code_and_names():
    nodes = [r for r in _shards(4)[0]]
    message = ("Observed Objects: (table_1, (), 1.0)(fridge_1, (['openable', 0],), 2.0)\n"
               "Observed Relations: []\nInventory: None\nTask Goal: open the fridge\nOriginal Subtasks: None\n"
               "Previous Action Code: No code\nExecution Error: No error\nNow, please output ...")
    by_kind = {r["node"]: r["response"] for r in nodes[:5]}
    assert trivial_score(message, by_kind[0]) == 1.0               # parses, checks, names table_1
    assert trivial_score(message, by_kind[1]) == 0.0               # sink_1 is not in the scene
    assert trivial_score(message, by_kind[2]) == 0.0               # malformed
    assert trivial_score("not a message", by_kind[0]) == 0.0


@pytest.mark.slow
def test_the_reward_model_orders_held_out_pairs_better_than_chance(tmp_path, no_recompute):
    data = write_dataset(tmp_path / "dataset", _shards())
    params = parse_params(RAW)
    out = train_reward(params, data, tmp_path / "reward", log=lambda s: None)
    m = out["metrics"]
    assert m["pairs"]["sibling"] and m["pairs"]["rule"] and m["held_out_tasks"] == 6
    assert m["held_out_pairwise_accuracy"] >= 0.8, m
    assert m["held_out_auc_label"] > 0.5 and m["held_out_mean_margin"] > 0
    assert set(m["trivial"]) >= {"pairwise_accuracy", "auc_label", "auc_step", "mean_margin"}
    assert out["curve"] and "train_loss" in out["curve"][0]
    # the checkpoint reloads and scores as trained
    rm = RewardModel.from_pretrained(tmp_path / "reward")
    nodes = preferences.read_nodes(data)
    good, bad = nodes[4], nodes[3]  # completed task_00: the fridge step (label 1), the teleport step (0)
    assert good["label"] == 1 and bad["label"] == 0
    s = rm.score([(good["message"], good["response"]), (bad["message"], bad["response"])])
    assert s[0] > s[1]
    assert json.loads((tmp_path / "reward" / META).read_text())["pairs"] == m["pairs"]


def test_a_missing_or_broken_reward_model_is_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match=f"{tmp_path}.*no {META}"):
        RewardModel.from_pretrained(tmp_path)
    (tmp_path / META).write_text("{not json")
    with pytest.raises(ModelError, match=f"{META}: unreadable"):
        RewardModel.from_pretrained(tmp_path)


def test_no_pairs_is_a_clear_error(tmp_path):
    from octopus.training.reward import RewardError
    only_ok = [[r for r in tree("t", "s", 0, True, 0, size=8) if r["label"] == 1]]
    data = write_dataset(tmp_path / "dataset", only_ok)
    with pytest.raises(RewardError, match="no all preference pairs.*collect.oracle.explore"):
        train_reward(parse_params(RAW), data, tmp_path / "reward", log=lambda s: None)
