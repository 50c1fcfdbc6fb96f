"""Corrupt inputs: each a clear error naming the file, exit code 2, nothing written; a corrupt suite cache is rebuilt.

Already covered elsewhere (not repeated here): an unreadable part is redone by collect
(tests/data/test_collect.py), undecodable views name the step (tests/training/test_sft.py), manifest
mismatches fail the validate stage's expectations with exit 2 (tests/validation/test_stage.py), an unknown params
field or section names it (tests/test_config.py)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from octopus import paths
from tests.validation import dataset


def run(*args: str):
    from octopus.cli import app
    return CliRunner().invoke(app, list(args))


def said(result) -> str:
    return " ".join((result.output + (result.stderr if result.stderr_bytes is not None else "")).split())


@pytest.fixture
def shards(project) -> Path:
    return dataset.write_dataset(Path(paths.DATASET), dataset.base_shards(32))


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit, in the middle of the row data
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _stray(path: Path) -> None:
    shutil.copy(path, path.with_name("shard-99999-of-99999.parquet"))


def _lost(path: Path) -> None:
    path.unlink()


def _bad_manifest(path: Path) -> None:
    (path.parent / "manifest.json").write_text('{"rows": 3, "shards": [')


@pytest.mark.parametrize("damage, message", [
    (_flip, "{shard}: its sha256 differs from data/dataset/manifest.json"),
    (_truncate, "{shard}: not a readable Parquet shard"),
    (_stray, "data/dataset/shard-99999-of-99999.parquet: a shard that data/dataset/manifest.json does not list"),
    (_lost, "{shard}: listed in data/dataset/manifest.json but missing"),
    (_bad_manifest, "data/dataset/manifest.json: not a readable manifest"),
], ids=["bit-flip", "truncated", "stray", "lost", "manifest"])
@pytest.mark.parametrize("stage", ["sft", "reward"])
def test_a_damaged_dataset_is_exit_2_naming_the_file(shards, damage, message, stage):
    shard = sorted(shards.glob("*.parquet"))[0]
    damage(shard)
    result = run(stage)
    assert result.exit_code == 2, said(result)
    assert message.format(shard=shard.as_posix()) in said(result) and "Traceback" not in said(result)
    assert not Path("models").exists() and not Path("reports").exists()  # nothing written


def _checkpoint(path: Path) -> Path:
    from octopus.config import load_params
    from octopus.model.factory import build_model
    from tests.helpers import TEXTS
    build_model(load_params("params.yaml").model, TEXTS * 4, seed=0).save(path)
    return path / "model.safetensors"


def _drop(tensors: dict) -> str:
    key = "model.norm.weight"
    del tensors[key]
    return f"{key} missing"


def _reshape(tensors: dict) -> str:
    key = "model.norm.weight"
    tensors[key] = torch.zeros(3, 5)
    return f"{key} has shape (3, 5), the model needs (128,)"


@pytest.mark.parametrize("damage", [_drop, _reshape], ids=["missing-tensor", "mis-shaped-tensor"])
def test_a_checkpoint_with_a_missing_or_mis_shaped_tensor_names_it(project, damage):
    from octopus.model.factory import ModelError
    from octopus.model.policy import Policy
    weights = _checkpoint(Path("ckpt"))
    tensors = load_file(str(weights))
    what = damage(tensors)
    save_file(tensors, str(weights), metadata={"format": "pt"})
    with pytest.raises(ModelError, match=re.escape(f"ckpt: damaged checkpoint, 1 tensor(s) unusable: {what}")):
        Policy.from_pretrained("ckpt")


def test_a_truncated_checkpoint_is_exit_2_for_rlef(shards):
    weights = _checkpoint(paths.sft_model("octopus"))
    _truncate(weights)
    result = run("rlef")
    assert result.exit_code == 2, said(result)
    assert "models/sft/octopus: cannot load the checkpoint (SafetensorError" in said(result)
    assert not paths.rlef_model("octopus").exists()


@pytest.mark.slow
def test_evaluate_stops_with_exit_2_on_a_damaged_policy_checkpoint(project, prefect_api):
    project(evaluate={"agents": ["oracle", "octopus_sft"], "max_tasks": 1, "seeds": 1})
    weights = _checkpoint(paths.sft_model("octopus"))
    tensors = load_file(str(weights))
    what = _drop(tensors)
    save_file(tensors, str(weights), metadata={"format": "pt"})
    from tests.reliability.conftest import octopus
    result = octopus(Path.cwd(), "evaluate")  # a subprocess: Prefect's log handlers outlive a CliRunner
    said = " ".join(result.stderr.split())
    assert result.returncode == 2, said[-3000:]  # not a table where every octopus_sft episode "crashed"
    assert f"models/sft/octopus: damaged checkpoint, 1 tensor(s) unusable: {what}" in said
    assert not paths.report("evaluate").exists()


@pytest.mark.parametrize("text, message", [
    ("collect:\n  max_tasks: [1\n", "params.yaml: not valid YAML"),
    ("collect: {max_tasks: 2}\nsft: {epochs: 1", "params.yaml: not valid YAML"),  # truncated mid-file
    ("- collect\n- sft\n", "params.yaml"),
    ("collect:\n  max_tasks: two\n", "collect.max_tasks"),
], ids=["syntax", "truncated", "not-a-mapping", "wrong-type"])
def test_a_malformed_params_file_is_exit_2_naming_it(tmp_path, monkeypatch, text, message):
    monkeypatch.chdir(tmp_path)
    Path("params.yaml").write_text(text)
    for stage in ("collect", "sft", "evaluate"):
        result = run(stage)
        assert result.exit_code == 2 and message in said(result), said(result)
        assert "Traceback" not in said(result)


def test_a_corrupt_suite_cache_is_rebuilt_never_trusted(tmp_path, monkeypatch):
    """A cache file that no longer parses, and one edited so that it still parses, are both rebuilt."""
    from octopus.config import SimParams, TasksParams
    from octopus.sim import tasks_stage
    monkeypatch.setenv("OCTOPUS_CACHE", str(tmp_path))
    task_list = tmp_path / "list.json"
    vendored = json.loads((Path(tasks_stage.__file__).parent / "data" / "octogibson_tasks.json").read_text())
    task_list.write_text(json.dumps(vendored[:4] if isinstance(vendored, list) else
                                    {k: v for k, v in list(vendored.items())[:4]}))
    sim, tp = SimParams(), TasksParams(eval_seen=1, eval_unseen=0, eval_reason=0, behavior_extra=0, unseen_scenes=[])
    suite = tasks_stage.load_suite(sim, tp, task_list=str(task_list))
    assert suite.tasks
    [cache] = tmp_path.glob("suite-*.json")
    good = cache.read_bytes()
    data = json.loads(good)
    data["tasks"][0]["instruction"] = "walk out of the house"  # still valid JSON, no longer what was built
    cache.write_text(json.dumps(data))
    again = tasks_stage.load_suite(sim, tp, task_list=str(task_list))
    assert [t.to_dict() for t in again.tasks] == [t.to_dict() for t in suite.tasks]
    assert json.loads(cache.read_text())["tasks"] == json.loads(good)["tasks"]
    cache.write_bytes(good[: len(good) // 2])  # truncated: not JSON
    assert [t.id for t in tasks_stage.load_suite(sim, tp, task_list=str(task_list)).tasks] == [t.id for t in suite.tasks]


@pytest.mark.parametrize("damage, message", [
    (_truncate, "models/reward: cannot load the reward model (SafetensorError"),
    (lambda w: (w.parent / "octopus_reward.json").write_text("{not json"), "models/reward/octopus_reward.json: unreadable"),
    (lambda w: save_file({k: v for k, v in load_file(str(w)).items() if k != "score.weight"}, str(w),
                         metadata={"format": "pt"}), "models/reward: damaged checkpoint, 1 tensor(s) unusable: score.weight missing"),
], ids=["truncated-weights", "unreadable-meta", "missing-tensor"])
def test_a_damaged_reward_model_is_exit_2_for_rlef(project, shards, damage, message):
    from octopus.model.reward import RewardModel
    from tests.helpers import TEXTS
    project(rlef={"reward": "model"})
    _checkpoint(paths.sft_model("octopus"))
    RewardModel.build("tiny", TEXTS * 4, max_length=128, vocab_size=400).save(paths.REWARD_MODEL)
    damage(Path(paths.REWARD_MODEL) / "model.safetensors")
    result = run("rlef")
    assert result.exit_code == 2, said(result)
    assert message in said(result) and "Traceback" not in said(result)
    assert not paths.rlef_model("octopus").exists()
