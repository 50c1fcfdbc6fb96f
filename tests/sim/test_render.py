"""The 10 views: count, order, size, content, caching, depth/segmentation, determinism, failure paths."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from dataclasses import replace

import numpy as np
import pytest

from octopus.config import Params, RenderParams
from octopus.sim import render as render_mod
from octopus.sim.actions import apply
from octopus.sim.layout import LayoutParams, build_world
from octopus.sim.render import VIEWS, RenderError, SceneRenderer, contact_sheet, gl_platform, save_png
from octopus.sim.scene import build_scene, category_color
from octopus.sim.tasks_stage import layout_params

from .conftest import INIT, OBJECTS

SIZE = 96


@pytest.fixture
def renderer(world):
    r = SceneRenderer(world, replace(Params().render, size=SIZE))
    yield r
    r.close()


def pixels(obs, i: int) -> np.ndarray:
    """How many pixels of world object i each view shows."""
    return (obs.segmentation == i).sum(axis=(1, 2))


def test_view_names_and_order():
    assert VIEWS == ("EGO-0", "EGO-45", "EGO-90", "EGO-135", "EGO-180", "EGO-225", "EGO-270", "EGO-315",
                     "BEV-I", "BEV-II")


def test_ten_views_of_the_configured_size(world):
    for size in (32, 80):
        with SceneRenderer(world, RenderParams(size=size)) as r:
            obs = r.observe()
            assert obs.rgb.shape == (10, size, size, 3) and obs.rgb.dtype == np.uint8
            assert obs.depth is None and obs.segmentation is None


def test_views_are_not_uniform_and_headings_differ(renderer, world):
    apply(world, "MoveBot", ("electric_refrigerator_1",))
    rgb = renderer.observe().rgb.astype(int)
    for k, name in enumerate(VIEWS):
        assert np.ptp(rgb[k]) > 40, f"{name} is nearly uniform"
        assert len(np.unique(rgb[k].reshape(-1, 3), axis=0)) > 20, name
    for a in range(10):
        for b in range(a + 1, 10):
            assert np.abs(rgb[a] - rgb[b]).mean() > 2, f"{VIEWS[a]} and {VIEWS[b]} are the same image"


def test_ego_views_turn_counter_clockwise_with_the_robot(renderer, world):
    """Turning the robot by +45 degrees makes EGO-k show what EGO-(k+1) showed."""
    before = renderer.observe().rgb.astype(int)
    world.heading += math.pi / 4
    world.touch()
    after = renderer.observe().rgb.astype(int)
    for k in range(7):
        assert np.abs(after[k] - before[k + 1]).mean() < 1.0, VIEWS[k]
    assert np.abs(after[0] - before[0]).mean() > 2


def test_bacon_appears_only_after_it_leaves_the_closed_fridge(renderer, world):
    bacon = world.idx("bacon_1")
    apply(world, "MoveBot", ("electric_refrigerator_1",))
    closed = renderer.observe(segmentation=True)
    assert pixels(closed, bacon).sum() == 0
    rgb_closed = closed.rgb.copy()
    apply(world, "open", ("electric_refrigerator_1",))
    opened = renderer.observe(segmentation=True)
    assert pixels(opened, bacon)[0] > 0, "the open fridge shows its contents in EGO-0"
    apply(world, "EasyGrasp", ("bacon_1",))
    apply(world, "close", ("electric_refrigerator_1",))
    out = renderer.observe(segmentation=True)
    assert pixels(out, bacon)[0] > 0, "held bacon is in front of the robot"
    mask = out.segmentation[0] == bacon
    assert (out.rgb[0][mask] != rgb_closed[0][mask]).any(axis=-1).mean() > 0.9, "its pixels are new in the image"


def test_closing_a_container_hides_its_contents_again(renderer, world):
    bacon = world.idx("bacon_1")
    apply(world, "MoveBot", ("electric_refrigerator_1",))
    apply(world, "open", ("electric_refrigerator_1",))
    assert pixels(renderer.observe(segmentation=True), bacon).sum() > 0
    apply(world, "close", ("electric_refrigerator_1",))
    assert pixels(renderer.observe(segmentation=True), bacon).sum() == 0


def test_robot_is_seen_from_above_but_not_from_its_own_head(renderer, world):
    seg = renderer.observe(segmentation=True).segmentation
    robot = (seg == 0).sum(axis=(1, 2))
    assert (robot[:8] == 0).all()
    assert robot[8] > 0 and robot[9] > 0


def test_render_only_when_the_state_changes(renderer, world):
    renderer.observe()
    assert renderer.renders == 1
    renderer.observe()
    world.touch()  # a version bump that changes nothing
    snap = world.snapshot()
    world.restore(snap)
    assert renderer.observe() is not None and renderer.renders == 1
    apply(world, "MoveBot", ("breakfast_table_1",))
    first = renderer.observe().rgb
    assert renderer.renders == 2
    assert renderer.observe().rgb is first
    world.restore(snap)  # back to a state rendered before: a new state for the cache, one more render
    renderer.observe()
    assert renderer.renders == 3


def test_only_changed_objects_are_updated(renderer, world):
    renderer.observe()
    assert renderer._sync() == 0
    apply(world, "MoveBot", ("breakfast_table_1",))
    assert renderer._sync() == 1  # only the robot moved
    apply(world, "EasyGrasp", ("apple_1",))
    assert renderer._sync() == 1  # only the apple


def test_depth_in_metres_and_segmentation_ids(renderer, world):
    obs = renderer.observe(depth=True, segmentation=True)
    assert obs.depth.shape == (10, SIZE, SIZE) and obs.depth.dtype == np.float32
    assert obs.segmentation.shape == (10, SIZE, SIZE) and obs.segmentation.dtype == np.int32
    assert np.isfinite(obs.depth).all() and (obs.depth > 0).all()
    # the lowest row of EGO-0 sees the floor just in front of the robot: its depth along the view axis
    p = renderer.params
    half = math.radians(p.ego_fov_deg / 2) * (1 - 1 / SIZE)
    ray = math.radians(-p.ego_pitch_deg) + half
    expected = p.head_height_m / math.sin(ray) * math.cos(half)
    assert obs.depth[0, -1, SIZE // 2] == pytest.approx(expected, rel=0.03)
    ids = set(np.unique(obs.segmentation).tolist())
    assert ids <= set(range(-1, len(world.objects)))
    assert world.idx("breakfast_table_1") in ids
    # the floor object of the kitchen is labelled as itself
    assert world.idx("floor_1") in set(np.unique(obs.segmentation[8]).tolist())


def test_cached_modalities_are_reused(renderer):
    renderer.observe(depth=True)
    n = renderer.renders
    obs = renderer.observe(depth=True)
    assert renderer.renders == n and obs.depth is not None
    assert renderer.observe().depth is None


def test_deterministic_for_a_task_and_seed(world):
    other = build_world(OBJECTS, INIT, "Rs_int", "test_kitchen", LayoutParams(distractors=0))
    with SceneRenderer(world, RenderParams(size=64)) as a, SceneRenderer(other, RenderParams(size=64)) as b:
        assert np.array_equal(a.observe().rgb, b.observe().rgb)


def test_state_changes_are_visible(renderer, world):
    apply(world, "MoveBot", ("stove_1",))
    before = renderer.observe().rgb.copy()
    apply(world, "toggle_on", ("stove_1",))
    assert np.abs(renderer.observe().rgb[0].astype(int) - before[0]).mean() > 0.05


def test_cooked_objects_change_colour(renderer, world):
    bacon = world.idx("bacon_1")
    renderer.observe()
    gid = next(g for g, role, _ in renderer._by_obj[bacon] if role == "body")
    raw = renderer.model.geom_rgba[gid].copy()
    world.set("cooked", bacon, True)
    renderer.observe()
    assert not np.allclose(renderer.model.geom_rgba[gid], raw)


def test_category_colours_are_fixed_and_distinct():
    assert category_color("apple") == category_color("apple")
    names = ["apple", "bacon", "wicker_basket", "bowl", "mug", "bottle", "towel", "book", "knife", "plate"]
    colors = [category_color(n) for n in names]
    for i in range(len(colors)):
        for j in range(i + 1, len(colors)):
            assert sum(abs(a - b) for a, b in zip(colors[i][:3], colors[j][:3])) > 0.08, (names[i], names[j])


def test_every_evaluation_scene_builds_and_renders(suite, params):
    small = replace(params.render, size=24)
    for task in suite.evaluation():
        world, _ = task.build(layout_params(params.sim))
        with SceneRenderer(world, small) as r:
            assert r.observe().rgb.std() > 1, task.id


def test_task_objects_are_visible_from_where_the_oracle_acts(suite, params):
    """Once the robot stands at the right furniture, what it acts on shows in its own views."""
    from octopus.sim.bench import prepare, target_visibility
    vis = target_visibility(prepare(suite.evaluation(), params.sim), replace(params.render, size=112))
    assert vis["targets"] > 150
    assert vis["targets_visible"] >= 0.88, vis["targets_missed"]


def test_every_training_scene_compiles(suite, params):
    """Every scene of the suite compiles, with one mocap body per drawn object and a floor per room."""
    import mujoco
    for task in suite.tasks:
        world, _ = task.build(layout_params(params.sim))
        spec = build_scene(world, 24, 75.0, 2.2)
        model = mujoco.MjModel.from_xml_string(spec.xml)
        drawn = [i for i, o in enumerate(world.objects) if o.kind not in ("floor", "substance")]
        assert sorted(spec.bodies) == drawn, task.id
        assert model.nmocap == len(drawn), task.id
        assert all(mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, name) >= 0 for name in spec.bodies.values())
        assert set(spec.floor_of) == {o.room for o in world.objects if o.kind == "floor" and o.room}, task.id


def test_furniture_taller_than_the_walls_is_cut_to_their_height(world):
    import mujoco
    fridge = world.idx("electric_refrigerator_1")
    assert world.objects[fridge].size[2] > 1.5
    spec = build_scene(world, 24, 75.0, 1.0)
    m = mujoco.MjModel.from_xml_string(spec.xml)
    d = mujoco.MjData(m)
    mujoco.mj_kinematics(m, d)
    for g in spec.geoms:
        if g.obj == fridge and g.role in ("body", "door"):
            gid = m.geom(g.name).id
            assert d.geom_xpos[gid][2] + m.geom_size[gid][2] <= 1.0 + 1e-6
            assert d.geom_xpos[gid][2] - m.geom_size[gid][2] >= -1e-6  # still standing on the floor


def test_contact_sheet_and_png(renderer, tmp_path):
    from PIL import Image
    sheet = contact_sheet(renderer.observe().rgb)
    assert sheet.ndim == 3 and sheet.shape[1] > 5 * SIZE and sheet.shape[0] > 2 * SIZE
    path = save_png(sheet, tmp_path / "deep" / "sheet.png")
    with Image.open(path) as im:
        assert im.size == (sheet.shape[1], sheet.shape[0])
    assert not list(tmp_path.rglob("*.part"))


# ---------------------------------------------------------------------- failure paths
def test_bad_mujoco_gl_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("MUJOCO_GL", "vulkan")
    with pytest.raises(RenderError, match="MUJOCO_GL='vulkan'"):
        gl_platform("auto")


def test_missing_gl_libraries_say_what_to_install(monkeypatch):
    monkeypatch.delenv("MUJOCO_GL", raising=False)
    monkeypatch.setattr(render_mod.ctypes.util, "find_library", lambda name: None)
    with pytest.raises(RenderError, match="apt-get install -y libegl1"):
        gl_platform("auto")
    with pytest.raises(RenderError, match="osmesa"):
        gl_platform("osmesa")


def test_failing_context_is_a_clear_error(world):
    """A process whose OpenGL is bound to another platform cannot make an EGL context."""
    code = textwrap.dedent("""
        import os
        os.environ["MUJOCO_GL"] = "egl"
        os.environ["PYOPENGL_PLATFORM"] = "osmesa"
        from octopus.config import Params, RenderParams
        from octopus.sim.layout import LayoutParams, build_world
        from octopus.sim.render import RenderError, SceneRenderer
        from tests.helpers import INIT, OBJECTS
        w = build_world(OBJECTS, INIT, "Rs_int", "t", LayoutParams(distractors=0))
        try:
            SceneRenderer(w, RenderParams(size=16))
        except RenderError as err:
            print("RenderError:", err)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "RenderError: cannot create an offscreen OpenGL context with MUJOCO_GL=egl" in out.stdout, out.stderr
    assert "apt-get install" in out.stdout


def test_closed_renderer_refuses(world):
    r = SceneRenderer(world, RenderParams(size=16))
    r.close()
    r.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        r.observe()
