"""Load `params.yaml` into one dataclass per section, rejecting bad values with an error naming the field.

Each section's dataclass carries its defaults and help text; `load_params(path)` reads the YAML,
checks types, ranges and choices, and returns `Params`. Unknown keys are errors too (a typo in
params.yaml must not silently fall back to a default).
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A params.yaml value is missing, unknown or out of range; the message names the field."""


def _f(default: Any, help: str, *, lo: float | None = None, hi: float | None = None,
       choices: tuple | None = None) -> Any:
    meta = {"help": help, "lo": lo, "hi": hi, "choices": choices}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class SimParams:
    """The simulator (`octopus sim ...`, every stage that runs episodes)."""

    backend: str = _f("embedded", "simulator backend", choices=("embedded", "omnigibson"))
    max_steps: int = _f(10, "steps (subtasks) per episode before it is cut off", lo=1, hi=100)
    reach_m: float = _f(1.5, "the robot interacts only with objects this close (m)", lo=0.1, hi=10)
    hands: int = _f(2, "objects the robot can hold at once", lo=1, hi=4)
    distractors: int = _f(2, "extra furniture per room taken from the scene's own room lists", lo=0, hi=20)
    seed: int = _f(0, "layout seed", lo=0)
    planner_expansions: int = _f(4000, "search nodes the privileged planner may expand per task", lo=10)
    sandbox_timeout_s: float = _f(2.0, "wall-clock limit for one step's generated code (s)", lo=0.05, hi=600)
    sandbox_memory_mb: int = _f(1024, "memory limit for the code sandbox worker (MB)", lo=64)


@dataclass(frozen=True)
class TasksParams:
    """The task suite and its splits."""

    seed: int = _f(0, "seed for choosing evaluation tasks", lo=0)
    unseen_scenes: list = _f(["house_single_floor", "Benevolence_0_int", "Pomaria_1_int", "Merom_0_int",
                              "Rs_int", "office_large", "house_double_floor_upper"],
                             "scenes never used for training (their tasks form eval_unseen)")
    eval_seen: int = _f(45, "evaluation tasks from training scenes", lo=0)
    eval_unseen: int = _f(15, "evaluation tasks from unseen scenes", lo=0)
    eval_reason: int = _f(15, "reason tasks in the evaluation suite", lo=0)
    behavior_extra: int = _f(200, "extra follow tasks derived from BEHAVIOR-1K activity goals", lo=0)


@dataclass(frozen=True)
class RenderParams:
    """Cameras and offscreen rendering of the embedded simulator (MuJoCo on the CPU)."""

    size: int = _f(224, "width and height of each of the 10 views (px)", lo=16, hi=2048)
    gl: str = _f("auto", "OpenGL platform: auto tries egl, then osmesa (MUJOCO_GL overrides)",
                 choices=("auto", "egl", "osmesa"))
    ego_fov_deg: float = _f(80.0, "vertical field of view of the egocentric views (deg)", lo=20, hi=150)
    ego_pitch_deg: float = _f(-30.0, "egocentric camera pitch, negative looks down (deg)", lo=-89, hi=45)
    head_height_m: float = _f(1.3, "height of the robot's head camera (m)", lo=0.2, hi=3)
    wall_height_m: float = _f(2.2, "height of room walls (m)", lo=0.5, hi=5)


@dataclass(frozen=True)
class Params:
    sim: SimParams = field(default_factory=SimParams)
    tasks: TasksParams = field(default_factory=TasksParams)
    render: RenderParams = field(default_factory=RenderParams)


def _check(section: str, f: dataclasses.Field, value: Any) -> Any:
    name, meta = f"{section}.{f.name}", f.metadata
    typ = f.type if not isinstance(f.type, str) else eval(f.type, {"list": list})  # noqa: S307 - our own annotations
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(value, bool) and typ is not bool or not isinstance(value, typ):
        raise ConfigError(f"{name}: expected {typ.__name__}, got {type(value).__name__} {value!r}")
    if meta.get("choices") and value not in meta["choices"]:
        raise ConfigError(f"{name}: must be one of {', '.join(meta['choices'])}, got {value!r}")
    if meta.get("lo") is not None and value < meta["lo"]:
        raise ConfigError(f"{name}: must be >= {meta['lo']}, got {value!r}")
    if meta.get("hi") is not None and value > meta["hi"]:
        raise ConfigError(f"{name}: must be <= {meta['hi']}, got {value!r}")
    return value


def _section(cls: type, name: str, raw: Any) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{name}: expected a mapping, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"{name}.{unknown[0]}: unknown field (known: {', '.join(fields)})")
    return cls(**{k: _check(name, fields[k], v) for k, v in raw.items()})


def parse_params(raw: Any) -> Params:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"params: expected a mapping of sections, got {type(raw).__name__}")
    sections = {f.name: f for f in dataclasses.fields(Params)}
    out = {}
    for key, value in raw.items():
        if key not in sections:
            continue  # sections of later stages are validated by their own dataclasses
        cls = typing.get_type_hints(Params)[key]
        out[key] = _section(cls, key, value)
    return Params(**out)


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params; a missing file gives the defaults."""
    p = Path(path)
    if not p.exists():
        return Params()
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{p}: not valid YAML: {err}") from None
    return parse_params(raw)


