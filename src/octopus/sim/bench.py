"""Throughput of the symbolic simulator on the evaluation suite (`octopus bench sim`).

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
content_import_ms: a cold `import octopus.sim.content` in a fresh interpreter (best of 3): it must read
no data until asked.
sandbox_round_trip_ms: median wall time of one warm sandbox run of an oracle step's code (compile
cached, worker running): the fixed cost every step pays for executing untrusted code in a process.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass

from octopus.config import RenderParams, SimParams
from octopus.sim.actions import apply
from octopus.sim.goals import Goal
from octopus.sim.planner import plan
from octopus.sim.tasks_stage import layout_params
from octopus.sim.tasks import Task
from octopus.sim.world import Snapshot, World


@dataclass
class Replay:
    """One task's world at its initial state and the oracle's plan for it (planned once, replayed often)."""

    task: Task
    world: World
    goal: Goal
    start: Snapshot
    steps: list[list[tuple[str, tuple[str, ...]]]]

    def reset(self) -> World:
        self.world.restore(self.start)
        return self.world


def prepare(tasks: list[Task], sim: SimParams) -> list[Replay]:
    """Build and plan every task; tasks the planner cannot solve within the budget are left out."""
    out = []
    for t in tasks:
        world, goal = t.build(layout_params(sim))
        result = plan(world, goal, max_steps=sim.max_steps, max_expansions=sim.planner_expansions)
        if result.solved:
            out.append(Replay(t, world, goal, world.snapshot(), result.steps))
    return out


def run_bench(replays: list[Replay], repeats: int = 5) -> dict:
    step_rates, check_rates = [], []
    for _ in range(repeats):
        steps = checks = 0
        t_steps = t_checks = 0.0
        for r in replays:
            calls = [c for step in r.steps for c in step]
            world, goal = r.reset(), r.goal
            t0 = time.perf_counter()
            for fn, args in calls:
                apply(world, fn, args)
                goal.satisfied()
            t_steps += time.perf_counter() - t0
            steps += len(calls)
            r.reset()
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
    sizes = sorted(len(r.world) for r in replays)
    return {
        "tasks": len(replays),
        "objects_median": sizes[len(sizes) // 2] if sizes else 0,
        "objects_max": sizes[-1] if sizes else 0,
        "symbolic_steps_per_s": round(statistics.median(step_rates)),
        "goal_checks_per_s": round(statistics.median(check_rates)),
        "repeats": repeats,
    }


def run_render_bench(replays: list[Replay], render: RenderParams, seed: int = 0, repeats: int = 3) -> dict:
    """Observations per second after a state change, on one core (see the module docstring)."""
    from octopus.sim.render import SceneRenderer
    cpus = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(cpus)})
    try:
        rates, setups, idle_renders, frames = [], [], 0, 0
        for _ in range(repeats):
            seconds = 0.0
            count = 0
            for r in replays:
                world = r.reset()
                t0 = time.perf_counter()
                renderer = SceneRenderer(world, render, seed=seed)
                renderer.observe()
                setups.append(time.perf_counter() - t0)
                for step in r.steps:
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


def target_visibility(replays: list[Replay], render: RenderParams, seed: int = 0, min_pixels: int = 20) -> dict:
    """How often the objects an oracle action names are visible in EGO-0..EGO-315 at that moment."""
    from octopus.sim.render import SceneRenderer
    need = max(1, round(min_pixels * (render.size / 224) ** 2))
    seen = total = 0
    missed: list[str] = []
    for r in replays:
        world = r.reset()
        with SceneRenderer(world, render, seed=seed) as renderer:
            for step in r.steps:
                for fn, args in step:
                    if fn not in ("MoveBot", "registry", "donothing"):
                        seg = renderer.observe(segmentation=True).segmentation[:8]
                        for name in args:
                            total += 1
                            if (seg == world.idx(name)).sum(axis=(1, 2)).max() >= need:
                                seen += 1
                            else:
                                missed.append(f"{r.task.id}: {fn} {name}")
                    apply(world, fn, args)
    return {"targets_visible": round(seen / total, 3) if total else 0.0, "targets": total, "targets_missed": missed}


def sandbox_bench(replays: list[Replay], sim: SimParams, runs: int = 200) -> dict:
    """Median and p90 of warm sandbox round trips on the oracle's first steps (see the module docstring)."""
    from octopus.sim.episode import shared_sandbox
    sandbox = shared_sandbox(sim)
    jobs = [(_act(r.steps[0]), r) for r in replays if r.steps]
    if not jobs:
        return {}
    sandbox.run(jobs[0][0], jobs[0][1].reset())  # warm: worker started, modules imported
    times = []
    for k in range(runs):
        code, r = jobs[k % len(jobs)]
        world = r.reset()
        t0 = time.perf_counter()
        sandbox.run(code, world)
        times.append(time.perf_counter() - t0)
    times.sort()
    return {"sandbox_round_trip_ms": round(1000 * statistics.median(times), 3),
            "sandbox_round_trip_p90_ms": round(1000 * times[int(0.9 * (len(times) - 1))], 3)}


def _act(step: list[tuple[str, tuple[str, ...]]]) -> str:
    """The code of one plan step, as an agent writes it (registry, then each call and donothing)."""
    names = dict.fromkeys(a for _, args in step for a in args)
    calls = [f"MoveBot(env, robot, {args[0]}, camera)" if fn == "MoveBot" else f"{fn}(robot, {', '.join(args)})"
             for fn, args in step]
    return "\n".join(["def act(robot, env, camera):", *(f'    {a} = registry(env, "{a}")' for a in names),
                      *(f"    {c}\n    donothing(env)" for c in calls)])


def import_bench(repeats: int = 3) -> dict:
    """Best of `repeats` cold imports of the BEHAVIOR-1K content module (see the module docstring)."""
    import subprocess
    import sys
    code = ("import time; import octopus.sim; t = time.perf_counter(); import octopus.sim.content; "
            "print(time.perf_counter() - t)")
    times = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
             for _ in range(repeats)]
    return {"content_import_ms": round(1000 * min(times), 2)}
