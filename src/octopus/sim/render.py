"""Offscreen rendering of the embedded simulator: the 10 views the agent sees.

`SceneRenderer(world, params)` builds the world's MuJoCo scene once (`octopus.sim.scene`) and renders
on the CPU through Mesa (`MUJOCO_GL=egl`, falling back to `osmesa`). An observation is the paper's
10 views in a fixed order: 8 egocentric views from the robot's head every 45 degrees,
counter-clockwise from its heading (EGO-0 ... EGO-315), then BEV-I (straight down on the robot's
room) and BEV-II (oblique over the whole house). All 10 are drawn into one offscreen buffer as a
5 x 2 grid and read back at once.

Nothing is rendered until an observation is asked for, and an observation is cached until the world
changes: only the objects whose pose, visibility or state changed are updated in the MuJoCo scene.
Objects inside a closed container are hidden; opening it shows them. Depth (metres) and segmentation
(world object index per pixel, -1 for walls and background) are rendered on request.
"""

from __future__ import annotations

import ctypes.util
import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from octopus.config import RenderParams
from octopus.files import write_atomic
from octopus.sim.scene import GROUP_HIDDEN, GROUP_OBJECT, GROUP_ROBOT, build_scene
from octopus.sim.world import World
from octopus.protocol.api import VIEW_NAMES

VIEWS = VIEW_NAMES  # the fixed order of octopus.protocol.api
BEV_FOV = 60.0
COLS = 5
INSTALL_HINT = ("install Mesa's offscreen OpenGL: `apt-get install -y libegl1 libegl-mesa0 libgl1-mesa-dri` for EGL, "
                "or `apt-get install -y libosmesa6` and MUJOCO_GL=osmesa (`make sysdeps` does the first)")
_LIBS = {"egl": "EGL", "osmesa": "OSMesa"}
_TINTS = (("cooked", (.5, .3, .12), .45), ("burnt", (.08, .06, .05), .75), ("frozen", (.85, .93, 1.0), .55),
          ("hot", (1.0, .25, .1), .3))
_local = threading.local()


class RenderError(RuntimeError):
    """Rendering is impossible here (no OpenGL library, no context); the message says what to install."""


@dataclass
class Observation:
    """The 10 views in `VIEWS` order."""

    rgb: np.ndarray  # (10, S, S, 3) uint8
    depth: np.ndarray | None = None  # (10, S, S) float32, metres along the view axis
    segmentation: np.ndarray | None = None  # (10, S, S) int32 world object index, -1 for structure/background


def gl_platform(choice: str = "auto") -> str:
    """The OpenGL platform to render with: MUJOCO_GL if set, else the first of egl, osmesa that is installed."""
    env = os.environ.get("MUJOCO_GL", "").strip().lower()
    if env:
        if env not in ("egl", "osmesa", "glfw", "glx"):
            raise RenderError(f"MUJOCO_GL={env!r} is not a platform MuJoCo can render offscreen with here; "
                              "use egl or osmesa")
        return env
    candidates = ("egl", "osmesa") if choice == "auto" else (choice,)
    for name in candidates:
        if ctypes.util.find_library(_LIBS[name]):
            os.environ["MUJOCO_GL"] = name
            return name
    raise RenderError(f"no offscreen OpenGL library found (looked for {', '.join(candidates)}): {INSTALL_HINT}")


def _gl_context(platform: str):
    """One OpenGL context per thread and platform, made current (MjrContexts of many scenes share it)."""
    contexts = _local.__dict__.setdefault("contexts", {})
    ctx = contexts.get(platform)
    if ctx is None:
        os.environ.setdefault("LP_NUM_THREADS", "1")  # llvmpipe: one core per renderer, workers scale out
        if platform in ("egl", "osmesa"):
            os.environ.setdefault("PYOPENGL_PLATFORM", platform)
        try:
            if platform == "egl":
                from mujoco.egl import GLContext
            elif platform == "osmesa":
                from mujoco.osmesa import GLContext
            else:
                from mujoco.glfw import GLContext
            ctx = contexts[platform] = GLContext(64, 64)
        except Exception as err:  # noqa: BLE001 - ImportError, OSError, GL errors: all mean "cannot render"
            raise RenderError(f"cannot create an offscreen OpenGL context with MUJOCO_GL={platform}: "
                              f"{type(err).__name__}: {err}. {INSTALL_HINT}") from err
    ctx.make_current()
    return ctx


class SceneRenderer:
    """Renders `world` as the 10 views, following its state (see the module docstring)."""

    def __init__(self, world: World, params: RenderParams | None = None, seed: int = 0) -> None:
        self.world, self.params, self.seed = world, params or RenderParams(), seed
        self.size = self.params.size
        self.renders = 0  # times the GL pipeline really ran (all 10 views count once)
        self._platform = gl_platform(self.params.gl)
        import mujoco
        self._mj = mujoco
        self.spec = build_scene(world, self.size, self.params.ego_fov_deg, self.params.wall_height_m)
        try:
            self.model = mujoco.MjModel.from_xml_string(self.spec.xml)
        except ValueError as err:
            raise RenderError(f"MuJoCo rejected the scene built for {world.scene!r}: {err}") from err
        self.data = mujoco.MjData(self.model)
        _gl_context(self._platform)
        try:
            self._con = mujoco.MjrContext(self.model, mujoco.mjtFontScale.mjFONTSCALE_50)
            self._con.readDepthMap = mujoco.mjtDepthMap.mjDEPTH_ZEROFAR  # reversed Z: precise far away
            mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self._con)
        except Exception as err:  # noqa: BLE001
            raise RenderError(f"cannot set up MuJoCo's offscreen buffer: {err}. {INSTALL_HINT}") from err
        if self._con.offWidth < COLS * self.size or self._con.offHeight < 2 * self.size:
            raise RenderError(f"the OpenGL driver gave a {self._con.offWidth}x{self._con.offHeight} buffer, "
                              f"too small for 10 views of {self.size} px: lower render.size")
        self._scene = mujoco.MjvScene(self.model, maxgeom=self.model.ngeom + 16)
        self._pert, self._cam = mujoco.MjvPerturb(), mujoco.MjvCamera()
        self._cam.type = mujoco.mjtCamera.mjCAMERA_FREE
        self._opts = {}
        for view, hidden in (("ego", (GROUP_ROBOT, GROUP_HIDDEN)), ("bev", (GROUP_HIDDEN,))):
            opt = mujoco.MjvOption()
            for g in range(len(opt.geomgroup)):
                opt.geomgroup[g] = g not in hidden
            self._opts[view] = opt
        self._geom_obj = np.full(self.model.ngeom, -1, dtype=np.int32)
        self._by_obj: dict[int, list[tuple[int, str, tuple]]] = {}
        for g in self.spec.geoms:
            gid = self.model.geom(g.name).id
            self._geom_obj[gid] = g.obj
            if g.role not in ("wall", "floor"):
                self._by_obj.setdefault(g.obj, []).append((gid, g.role, g.rgba))
        self._mocap = {i: int(self.model.body(name).mocapid[0]) for i, name in self.spec.bodies.items()}
        self._applied: dict[int, tuple] = {}
        self._fingerprint: tuple | None = None
        self._version: int | None = None
        self._obs: Observation | None = None

    # ------------------------------------------------------------------ state -> scene
    def _state_fingerprint(self) -> tuple:
        w = self.world
        return (tuple(w.pos), tuple(w.unary), tuple(w.group), w.held, w.heading, tuple(w.placement),
                frozenset(w.facts))

    def _sync(self) -> int:
        """Push the world's state into the MuJoCo scene; returns how many objects changed."""
        w, m, d = self.world, self.model, self.data
        subst = {s: k for k, s in enumerate(self.spec.substances)}
        coats: dict[int, set[str]] = {}
        for fact in w.facts:
            args = [a for a in fact[1:] if isinstance(a, int)]
            for s in (a for a in args if a in subst):
                for o in (a for a in args if a not in subst):
                    coats.setdefault(o, set()).add(f"coat:{subst[s]}")
        changed = 0
        for i, geoms in self._by_obj.items():
            visible = i == 0 or w.hidden_by(i) is None
            roles = {"body"}
            if "openable" in w.objects[i].abilities:
                roles.add("door_open" if w.get("open", i) else "door")
            if w.get("toggled_on", i):
                roles.add("lamp")
            roles |= coats.get(i, set())
            state = (w.pos[i], w.heading if i == 0 else 0.0, visible, frozenset(roles), w.unary[i])
            if self._applied.get(i) == state:
                continue
            changed += 1
            self._applied[i] = state
            mid = self._mocap[i]
            d.mocap_pos[mid] = w.pos[i]
            if i == 0:
                d.mocap_quat[mid] = (math.cos(w.heading / 2), 0.0, 0.0, math.sin(w.heading / 2))
            for gid, role, rgba in geoms:
                shown = visible and role in roles
                m.geom_group[gid] = (GROUP_ROBOT if i == 0 else GROUP_OBJECT) if shown else GROUP_HIDDEN
                if role == "body":
                    m.geom_rgba[gid] = self._tint(rgba, i)
        if changed:
            self._mj.mj_kinematics(m, d)
        return changed

    def _tint(self, rgba: tuple, i: int) -> tuple:
        r, g, b, a = rgba
        for state, (tr, tg, tb), k in _TINTS:
            if self.world.get(state, i):
                r, g, b = r + (tr - r) * k, g + (tg - g) * k, b + (tb - b) * k
        return (r, g, b, a)

    # ------------------------------------------------------------------ cameras
    def _camera(self, k: int) -> str:
        cam, w, p = self._cam, self.world, self.params
        if k < 8:
            x, y, _ = w.pos[0]
            yaw, pitch = w.heading + k * math.pi / 4, math.radians(p.ego_pitch_deg)
            fwd = (math.cos(pitch) * math.cos(yaw), math.cos(pitch) * math.sin(yaw), math.sin(pitch))
            cam.lookat[:] = (x + fwd[0], y + fwd[1], p.head_height_m + fwd[2])
            cam.distance, cam.azimuth, cam.elevation = 1.0, math.degrees(yaw), p.ego_pitch_deg
            self.model.vis.global_.fovy = p.ego_fov_deg
            return "ego"
        half_fov = math.tan(math.radians(BEV_FOV / 2))
        self.model.vis.global_.fovy = BEV_FOV
        if k == 8:
            room = w.room_of(0)
            x0, y0, x1, y1 = w.rooms[room] if room else next(iter(w.rooms.values()), (0, 0, 1, 1))
            cam.lookat[:] = ((x0 + x1) / 2, (y0 + y1) / 2, 0.0)
            cam.distance = (max(x1 - x0, y1 - y0) / 2 + 0.4) / half_fov + p.wall_height_m * 0.5
            cam.azimuth, cam.elevation = 90.0, -89.9
        else:
            (cx, cy), (ex, ey) = self.spec.center, self.spec.extent
            cam.lookat[:] = (cx, cy, 0.0)
            cam.distance = (max(ex, ey * 1.4) / 2 + 1.0) / half_fov + 1.0
            cam.azimuth, cam.elevation = 90.0, -58.0
        return "bev"

    # ------------------------------------------------------------------ rendering
    def _pass(self, mode: str) -> np.ndarray:
        """Draw all 10 views into the 5 x 2 grid and read it back: rgb, depth or segmentation."""
        mj, m, scn, s = self._mj, self.model, self._scene, self.size
        if self._con is None:
            raise RuntimeError("the renderer is closed")
        _gl_context(self._platform)
        mj.mjr_setBuffer(mj.mjtFramebuffer.mjFB_OFFSCREEN, self._con)
        ids = mode != "rgb"
        scn.flags[mj.mjtRndFlag.mjRND_SEGMENT] = ids
        scn.flags[mj.mjtRndFlag.mjRND_IDCOLOR] = ids
        segmaps = []
        for k in range(len(VIEWS)):
            view = self._camera(k)
            mj.mjv_updateScene(m, self.data, self._opts[view], self._pert, self._cam, mj.mjtCatBit.mjCAT_ALL, scn)
            if mode == "segmentation":
                table = np.full(scn.ngeom + 1, -1, dtype=np.int32)
                for g in scn.geoms[:scn.ngeom]:
                    if g.segid >= 0 and g.objtype == mj.mjtObj.mjOBJ_GEOM:
                        table[g.segid + 1] = self._geom_obj[g.objid]
                segmaps.append(table)
            mj.mjr_render(mj.MjrRect((k % COLS) * s, (k // COLS) * s, s, s), scn, self._con)
        full = mj.MjrRect(0, 0, COLS * s, 2 * s)
        if mode == "depth":
            buf = np.empty((2 * s, COLS * s), dtype=np.float32)
            mj.mjr_readPixels(None, buf, full, self._con)
            buf = self._metric_depth(buf)
        else:
            buf = np.empty((2 * s, COLS * s, 3), dtype=np.uint8)
            mj.mjr_readPixels(buf, None, full, self._con)
        tiles = [buf[(k // COLS) * s:(k // COLS + 1) * s, (k % COLS) * s:(k % COLS + 1) * s][::-1]
                 for k in range(len(VIEWS))]
        if mode == "segmentation":
            tiles = [table[np.minimum(t[..., 0].astype(np.int64) + (t[..., 1].astype(np.int64) << 8)
                                      + (t[..., 2].astype(np.int64) << 16), len(table) - 1)]
                     for t, table in zip(tiles, segmaps)]
        self.renders += 1
        return np.ascontiguousarray(np.stack(tiles))

    def _metric_depth(self, z: np.ndarray) -> np.ndarray:
        """Undo the perspective projection of the reversed-Z depth buffer (1 at znear, 0 at zfar) into metres."""
        extent = self.model.stat.extent
        near, far = np.float32(self.model.vis.map.znear * extent), np.float32(self.model.vis.map.zfar * extent)
        c = -(far + near) / (far - near)
        d = -(np.float32(2) * far * near) / (far - near)
        c, d = np.float32(-0.5) * c - np.float32(0.5), np.float32(-0.5) * d
        return (d / (z.astype(np.float64) + c)).astype(np.float32)

    def observe(self, depth: bool = False, segmentation: bool = False) -> Observation:
        """The current 10 views; rendered only if the world changed since the last call."""
        w = self.world
        if self._obs is None or w.version != self._version:
            fingerprint = self._state_fingerprint()
            if fingerprint != self._fingerprint:
                self._sync()
                self._fingerprint, self._obs = fingerprint, None
            self._version = w.version
        if self._obs is None:
            self._obs = Observation(self._pass("rgb"))
        if depth and self._obs.depth is None:
            self._obs.depth = self._pass("depth")
        if segmentation and self._obs.segmentation is None:
            self._obs.segmentation = self._pass("segmentation")
        return Observation(self._obs.rgb, self._obs.depth if depth else None,
                           self._obs.segmentation if segmentation else None)

    def close(self) -> None:
        if self._con is not None:
            _gl_context(self._platform)
            self._con.free()
            self._con = None

    def __enter__(self) -> "SceneRenderer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def contact_sheet(rgb: np.ndarray, names: tuple[str, ...] = VIEWS) -> np.ndarray:
    """The views as one labelled image: a 5 x 2 grid, each view under its name."""
    from PIL import Image, ImageDraw
    n, s = rgb.shape[0], rgb.shape[1]
    cols, rows, band, pad = min(COLS, n), math.ceil(n / COLS), 16, 4
    sheet = Image.new("RGB", (cols * (s + pad) + pad, rows * (s + band + pad) + pad), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for k in range(n):
        x, y = pad + (k % cols) * (s + pad), pad + (k // cols) * (s + band + pad)
        draw.text((x + 2, y + 2), names[k] if k < len(names) else str(k), fill=(0, 0, 0))
        sheet.paste(Image.fromarray(rgb[k]), (x, y + band))
    return np.asarray(sheet)


def save_png(array: np.ndarray, path: str | Path) -> Path:
    """Write an image atomically (a crash never leaves a truncated PNG behind)."""
    import io

    from PIL import Image
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(array)).save(buffer, format="PNG")
    return write_atomic(path, buffer.getvalue())
