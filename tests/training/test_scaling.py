"""`octopus bench scaling`: the data shares are nested and keep the same held-out tasks, and each run's row
carries what the table and the closing notes quote (training is faked here: the real runs take minutes to hours)."""

from __future__ import annotations

from octopus.config import parse_params
from octopus.training import scaling


def _steps(n_paper: int = 12, n_procedural: int = 28) -> list[dict]:
    ids = [f"paper_{k}" for k in range(n_paper)] + [f"procedural_{k:05d}__paper_0" for k in range(n_procedural)]
    return [{"task_id": t, "id": f"{t}/{j}"} for t in ids for j in range(2)]


def test_shares_are_nested_and_the_held_out_tasks_are_the_same_for_every_share():
    p = parse_params({"sft": {"val_fraction": 0.25}})
    steps = _steps()
    splits = {f: scaling.subset_split(steps, f, p) for f in (0.25, 0.5, 1.0)}
    tasks = {f: {r["task_id"] for r in train} for f, (train, _) in splits.items()}
    assert tasks[0.25] < tasks[0.5] < tasks[1.0] and len(tasks[1.0]) == 30
    assert len({tuple(r["id"] for r in val) for _, val in splits.values()}) == 1  # one held-out set
    held = {r["task_id"] for r in splits[1.0][1]}
    assert not held & tasks[1.0] and len(held) == 10


def test_each_row_has_the_runs_figures_and_held_out_completion_by_source(monkeypatch, tmp_path):
    from octopus.training import sft
    p = parse_params({"sft": {"val_fraction": 0.25}})
    monkeypatch.setattr(scaling.builders, "read_steps", lambda *a: _steps())
    seen = []

    def fake_train(params, dataset, out, split, **kw):
        seen.append((params.model.preset, len({r["task_id"] for r in split[0]})))
        by_source = {"octogibson": {"tasks": 2, "task_completion": 0.5, "code_executability": 0.75},
                     "procedural": {"tasks": 2, "task_completion": 0.0, "code_executability": 0.25}}
        return {"metrics": {"parameters": 1000, "train_tasks": len(split[0]), "train_steps": len(split[0]),
                            "epochs": 1.0, "train_s": 90.0, "val_loss": 0.5,
                            "val_rollouts": {"task_completion": 0.25, "task_completion_lo": 0.0,
                                             "task_completion_hi": 0.75, "code_executability": 0.5,
                                             "by_source": by_source}}}
    monkeypatch.setattr(sft, "train_sft", fake_train)
    monkeypatch.setattr(scaling, "_suite_figures", lambda ckpt, params: {
        "tasks": 60, "completion_all": 0.1, "completion_lo": 0.05, "completion_hi": 0.2, "executable": 0.4,
        "failures": {"steps": {"name": 3}, "episodes": {"name": 1}}})
    report = scaling.run_scaling(p, ["tiny", "small"], [0.5, 1.0], out_dir=tmp_path, log=lambda s: None)
    assert seen == [("tiny", 15), ("tiny", 30), ("small", 15), ("small", 30)]
    row = report["rows"][-1]
    assert (row["preset"], row["fraction"], row["train_min"], row["val_completion"]) == ("small", 1.0, 1.5, 0.25)
    assert row["val_by_source"] == {"octogibson": {"tasks": 2, "completion": 0.5, "executable": 0.75},
                                    "procedural": {"tasks": 2, "completion": 0.0, "executable": 0.25}}
    table = scaling.markdown(report)
    assert table.count("\n") == 2 + 4 and "| small | 0.0M | 30 | 30 | 1.5 | 0.500 | 0.25 [0.00, 0.75] | " \
        "0.10 [0.05, 0.20] | 0.40 | name 3 |" in table
