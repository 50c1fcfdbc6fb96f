"""Throughput of the symbolic simulator on the evaluation suite (`octopus sim bench`).

symbolic_steps_per_s: one agent function executed, the relations it affects derived from geometry,
and the task's BDDL goal checked, replaying the oracle's plans from each task's initial state.
goal_checks_per_s: BDDL goal evaluations on the states along those plans, each on a fresh state
(relation caches invalidated first, so every check derives its relations from the poses).
observations_per_s: 10-view observations rendered right after a state change along those plans, at
the configured resolution, with the process pinned to one core; renders_without_change counts GL
passes spent on observations asked for again without a change (it must be 0).
targets_visible: of the objects the oracle's actions touch, the share that the egocentric views
show (at least `min_pixels` pixels of segmentation at 224 px, scaled with the size) right before the
action, i.e. once the robot stands at the right furniture.
"""

from __future__ import annotations

import os
import statistics
import time

from octopus.config import RenderParams, SimParams
from octopus.sim.actions import apply
from octopus.sim.planner import plan
from octopus.sim.suite import layout_params
from octopus.sim.tasks import Task


def run_bench(tasks: list[Task], sim: SimParams, repeats: int = 5) -> dict:
    episodes = []
    for t in tasks:
        world, goal = t.build(layout_params(sim))
        result = plan(world, goal, max_steps=sim.max_steps, max_expansions=sim.planner_expansions)
        if result.solved:
            episodes.append((world, goal, world.snapshot(), [c for step in result.steps for c in step]))
    step_rates, check_rates = [], []
    for _ in range(repeats):
        steps = checks = 0
        t_steps = t_checks = 0.0
        for world, goal, start, calls in episodes:
            world.restore(start)
            t0 = time.perf_counter()
            for fn, args in calls:
                apply(world, fn, args)
                goal.satisfied()
            t_steps += time.perf_counter() - t0
            steps += len(calls)
            world.restore(start)
            for fn, args in calls:
                t0 = time.perf_counter()
                for _ in range(20):
                    world.touch()
                    goal.satisfied()
                t_checks += time.perf_counter() - t0
                checks += 20
                apply(world, fn, args)
        step_rates.append(steps / t_steps)
        check_rates.append(checks / t_checks)
    sizes = sorted(len(w) for w, *_ in episodes)
    return {
        "tasks": len(episodes),
        "objects_median": sizes[len(sizes) // 2] if sizes else 0,
        "objects_max": sizes[-1] if sizes else 0,
        "symbolic_steps_per_s": round(statistics.median(step_rates)),
        "goal_checks_per_s": round(statistics.median(check_rates)),
        "repeats": repeats,
    }


def run_render_bench(tasks: list[Task], sim: SimParams, render: RenderParams, repeats: int = 3) -> dict:
    """Observations per second after a state change, on one core (see the module docstring)."""
    from octopus.sim.render import SceneRenderer
    cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cpus)})
    try:
        rates, setups, idle_renders, frames = [], [], 0, 0
        for _ in range(repeats):
            seconds = 0.0
            count = 0
            for t in tasks:
                world, goal = t.build(layout_params(sim))
                result = plan(world, goal, max_steps=sim.max_steps, max_expansions=sim.planner_expansions)
                if not result.solved:
                    continue
                t0 = time.perf_counter()
                renderer = SceneRenderer(world, render, seed=sim.seed)
                renderer.observe()
                setups.append(time.perf_counter() - t0)
                for step in result.steps:
                    for fn, args in step:
                        apply(world, fn, args)
                    t0 = time.perf_counter()
                    renderer.observe()
                    seconds += time.perf_counter() - t0
                    count += 1
                    before = renderer.renders
                    world.touch()  # a version bump without any change must not render
                    renderer.observe()
                    idle_renders += renderer.renders - before
                renderer.close()
            rates.append(count / seconds if seconds else 0.0)
            frames = count
    finally:
        os.sched_setaffinity(0, cpus)
    return {
        "observations_per_s": round(statistics.median(rates), 1),
        "observation_size": render.size,
        "observations_timed": frames,
        "renderer_setup_s_median": round(statistics.median(setups), 3),
        "renders_without_change": idle_renders,
    }


def target_visibility(tasks: list[Task], sim: SimParams, render: RenderParams, min_pixels: int = 20) -> dict:
    """How often the objects an oracle action names are visible in EGO-0..EGO-315 at that moment."""
    from octopus.sim.render import SceneRenderer
    need = max(1, round(min_pixels * (render.size / 224) ** 2))
    seen = total = 0
    missed: list[str] = []
    for t in tasks:
        world, goal = t.build(layout_params(sim))
        result = plan(world, goal, max_steps=sim.max_steps, max_expansions=sim.planner_expansions)
        if not result.solved:
            continue
        with SceneRenderer(world, render, seed=sim.seed) as renderer:
            for step in result.steps:
                for fn, args in step:
                    if fn not in ("MoveBot", "registry", "donothing"):
                        seg = renderer.observe(segmentation=True).segmentation[:8]
                        for name in args:
                            total += 1
                            if (seg == world.idx(name)).sum(axis=(1, 2)).max() >= need:
                                seen += 1
                            else:
                                missed.append(f"{t.id}: {fn} {name}")
                    apply(world, fn, args)
    return {"targets_visible": round(seen / total, 3) if total else 0.0, "targets": total, "targets_missed": missed}
