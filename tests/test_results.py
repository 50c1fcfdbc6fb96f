"""The README's results block is written from the reports, never by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from octopus.experiments.results import END, START, ResultsError, render, replace_block

ROOT = Path(__file__).resolve().parents[1]


def _row(completion: float, executable: float) -> dict:
    a = {"tasks": 2, "task_completion": completion, "task_completion_lo": 0.0, "task_completion_hi": 1.0,
         "code_executability": executable, "code_executability_lo": 0.25, "code_executability_hi": 0.75,
         "plan_score": 0.5}
    return {"all": a}


def _reports(tmp_path: Path) -> Path:
    (tmp_path / "sft").mkdir(parents=True)
    (tmp_path / "evaluate.json").write_text(json.dumps({
        "agents": {"oracle": _row(1.0, 1.0), "octopus_sft": _row(0.5, 0.5)},
        "failures": {"octopus_sft": {"steps": {"name": 3, "format": 1}}}}))
    (tmp_path / "sft" / "octopus.json").write_text(json.dumps({
        "family": "smolvlm", "parameters": 136.8e6, "trainable_parameters": 136.8e6, "train_steps": 480,
        "epochs": 1.0, "train_s": 960.0, "wall_s": 1200.0, "samples_per_s": 0.5, "peak_memory_mb": 12288,
        "val_rollouts": {"tasks": 32, "task_completion": 0.25, "task_completion_lo": 0.1,
                         "task_completion_hi": 0.4, "code_executability": 0.6}}))
    (tmp_path / "sft" / "octopus_curve.json").write_text("[]")
    return tmp_path


def test_the_block_holds_every_row_with_its_interval_and_failures(tmp_path):
    block = render(_reports(tmp_path))
    assert block.startswith(START) and block.endswith(END)
    assert "| octopus_sft | 0.50 [0.00, 1.00] | 0.50 [0.25, 0.75] | 0.50 | 3 / 0 / 0 / 0 / 1 / 0 |" in block
    assert "| sft@octopus | smolvlm | 136.8M (136.8M) | 480 steps x 1 epoch | 16.0 | 0.50 samples/s | 12.0 | " \
           "0.25 [0.10, 0.40] / 0.60 (32 tasks) |" in block
    assert "octopus_curve" not in block
    assert "Wall minutes per stage: sft@octopus 20.0." in block


def test_missing_reports_and_markers_are_named(tmp_path):
    with pytest.raises(ResultsError, match="evaluate.json is missing"):
        render(tmp_path)
    (tmp_path / "evaluate.json").write_text("{not json")
    with pytest.raises(ResultsError, match="evaluate.json is unreadable"):
        render(tmp_path)
    with pytest.raises(ResultsError, match="no results block"):
        replace_block("# a README\n", f"{START}\n{END}")
    assert replace_block(f"a\n{START}\nold\n{END}\nb", f"{START}\nnew\n{END}") == f"a\n{START}\nnew\n{END}\nb"


def test_the_readme_shows_the_committed_reports():
    """`octopus results --write` was run on the reports in the repository: the README's numbers are theirs."""
    readme = (ROOT / "README.md").read_text()
    assert render(ROOT / "reports") in readme, "run `octopus results --write` after the pipeline"
