"""dvc.yaml's code deps are exact: each stage lists the source files it runs (its import closure) and no others."""

from __future__ import annotations

from pathlib import Path

import yaml

from octopus.provenance import PACKAGE_ROOT, module_closure

ROOT = Path(__file__).resolve().parents[1]
#: stage -> (the modules it enters through, what it never runs). The CLI is a thin shell and is left out; the
#: teacher registry of collect imports the trained-policy agent (and so the model) lazily, never for a teacher.
STAGES = {
    "backbone": (["octopus.model.backbones"], []),
    "tasks": (["octopus.sim.tasks_stage"], []),
    "collect": (["octopus.data.flow"], ["octopus.agents.learned", "octopus.model"]),
    "validate": (["octopus.validation.stage", "octopus.validation"], []),
    "sft": (["octopus.training.sft"], []),
    "reward": (["octopus.training.reward"], []),
    "rlef": (["octopus.training.rlef"], []),
    "evaluate": (["octopus.evaluation.stage"], []),
}


def code_deps(stage: str) -> list[str]:
    entries, exclude = STAGES[stage]
    return [f"src/{p.relative_to(PACKAGE_ROOT).as_posix()}" for p in module_closure(entries, ["octopus.cli", *exclude])]


def listed(stage: str) -> list[str]:
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][stage]
    deps = spec.get("do", spec)["deps"]
    return sorted(d for d in deps if d.startswith("src/"))


def test_every_stage_lists_exactly_the_code_it_runs():
    for stage in STAGES:
        assert listed(stage) == code_deps(stage), stage


def test_the_pipeline_has_no_stage_without_a_deps_check():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert set(stages) == set(STAGES)


if __name__ == "__main__":  # print the deps to paste into dvc.yaml
    for name in STAGES:
        print(name, *code_deps(name), sep="\n  - ")
