"""The MuJoCo scene of a world: rooms, walls, furniture and objects as shaded primitives (MJCF).

Every object of the world becomes one mocap body at its box centre, so moving an object is a pose
update, never a recompile. Its geoms carry a *role* that decides when they are shown:

- ``body``: the object itself (hidden while it is inside a closed container);
- ``door`` / ``door_open``: the closed and swung-open doors (or lid) of an openable container;
- ``lamp``: a glowing bulb shown while the object is toggled on;
- ``coat:<k>``: a thin layer coloured like substance ``k`` while a fact relates the object to it
  (dust covering a table, water filling a bucket).

Shapes follow what the object is: containers are shells open at the front (furniture) or the top
(items), tables and seats are a top on legs (so what is under them shows), round and cylindrical
things are ellipsoids and cylinders, everything else a box of its real size (small objects are drawn
at least 5 cm wide, so that a die or a pencil stays visible at 224 px; furniture taller than the
walls is cut to their height, so the bird's-eye views see the room; relations use the real size).
Colours are fixed per category (furniture muted, small objects saturated), so a category looks the
same in every scene.
"""

from __future__ import annotations

import colorsys
import zlib
from dataclasses import dataclass, field

from octopus.sim.world import World

WALL_T = 0.1  # wall thickness (m)
DOOR_W = 1.0  # doorway between neighbouring rooms (m)
MIN_ITEM = 0.05  # smallest drawn width of a small object (m): a 2 cm die would be 3 px wide at 224 px
GROUP_OBJECT, GROUP_STRUCTURE, GROUP_ROBOT, GROUP_HIDDEN = 0, 1, 2, 5
TABLE_LIKE = ("table", "desk", "bench", "stool", "chair", "console")
ROUND = ("apple", "orange", "tomato", "lemon", "lime", "peach", "plum", "ball", "melon", "grape", "egg",
         "onion", "potato", "pumpkin", "squash", "cherry", "berry", "nut", "globe", "bulb")
CYLINDER = ("bottle", "can", "cup", "mug", "jar", "candle", "glass", "vase", "tumbler", "canister", "tube",
            "pot", "pan", "bucket", "pail", "flask", "thermos", "roll", "carafe", "pitcher", "kettle")
FLOORS = {"kitchen": ((.86, .86, .82), (.7, .72, .7)), "bathroom": ((.78, .86, .92), (.62, .72, .8)),
          "bedroom": ((.62, .5, .42), (.58, .46, .38)), "living": ((.66, .5, .34), (.6, .45, .3)),
          "dining": ((.7, .55, .38), (.64, .5, .33)), "garage": ((.55, .55, .55), (.5, .5, .5))}
DEFAULT_FLOOR = ((.75, .73, .68), (.68, .66, .6))


def category_color(category: str, furniture: bool = False) -> tuple[float, float, float, float]:
    """A fixed colour per category: the hue, saturation and value come from a hash of its name."""
    h = zlib.crc32(category.encode())
    hue = (h % 997) / 997
    sat = 0.55 + (h >> 10) % 40 / 100
    val = 0.6 + (h >> 16) % 35 / 100
    if furniture:
        sat, val = sat * 0.45, 0.5 + (h >> 16) % 30 / 100
    r, g, b = colorsys.hsv_to_rgb(hue, sat, val)
    return (round(r, 3), round(g, 3), round(b, 3), 1.0)


@dataclass
class GeomInfo:
    """One geom of the scene: which object it draws and when."""

    name: str
    obj: int  # world object index, -1 for structure (walls)
    role: str
    rgba: tuple[float, float, float, float]
    group: int = GROUP_OBJECT


@dataclass
class SceneSpec:
    xml: str
    geoms: list[GeomInfo] = field(default_factory=list)
    bodies: dict[int, str] = field(default_factory=dict)  # object index -> mocap body name
    floor_of: dict[str, int] = field(default_factory=dict)  # room -> floor object index (segmentation)
    substances: list[int] = field(default_factory=list)  # coat:<k> refers to substances[k]
    center: tuple[float, float] = (0.0, 0.0)
    extent: tuple[float, float] = (1.0, 1.0)  # house size along x and y


def _f(*xs: float) -> str:
    return " ".join(f"{x:.4g}" for x in xs)


class _Builder:
    def __init__(self) -> None:
        self.geoms: list[GeomInfo] = []
        self.dz = 0.0  # vertical offset of the current object's geoms (furniture cut to the walls' height)

    def geom(self, obj: int, role: str, kind: str, size, pos, rgba, group=GROUP_OBJECT, extra: str = "") -> str:
        name = f"g{len(self.geoms)}"
        self.geoms.append(GeomInfo(name, obj, role, tuple(rgba), group))
        pos = (pos[0], pos[1], pos[2] + self.dz)
        return (f'<geom name="{name}" type="{kind}" size="{_f(*size)}" pos="{_f(*pos)}" rgba="{_f(*rgba)}" '
                f'group="{group}" contype="0" conaffinity="0" {extra}/>')


def _shell(b: _Builder, i: int, half, opening: tuple[int, int, int], openable: bool, rgba, front2d=None) -> list[str]:
    """A hollow box open on the `opening` face; openable ones get a closed door/lid and open doors."""
    t = max(0.008, min(0.03, 0.12 * min(half)))
    out = []
    for axis in range(3):
        for sign in (-1, 1):
            n = [0, 0, 0]
            n[axis] = sign
            size = list(half)
            size[axis] = t / 2
            pos = [0.0, 0.0, 0.0]
            pos[axis] = sign * (half[axis] - t / 2)
            if tuple(n) != opening:
                out.append(b.geom(i, "body", "box", size, pos, rgba))
            elif openable:
                door = tuple(min(1.0, c * 0.85) for c in rgba[:3]) + (1.0,)
                out.append(b.geom(i, "door", "box", size, pos, door))
                if front2d is not None:  # double doors swung out by 90 degrees at both side edges
                    fx, fy = front2d
                    lx, ly = -fy, fx
                    lat = abs(lx) * half[0] + abs(ly) * half[1]
                    depth = abs(fx) * half[0] + abs(fy) * half[1]
                    for side in (-1, 1):
                        cx = fx * (depth + lat / 2) + side * lx * (lat - t / 2)
                        cy = fy * (depth + lat / 2) + side * ly * (lat - t / 2)
                        sx = abs(fx) * lat / 2 + abs(lx) * t / 2
                        sy = abs(fy) * lat / 2 + abs(ly) * t / 2
                        out.append(b.geom(i, "door_open", "box", (sx, sy, half[2]), (cx, cy, 0), door))
    return out


def _table(b: _Builder, i: int, half, rgba) -> list[str]:
    top = min(0.05, half[2] * 0.3)
    leg = min(0.035, 0.2 * min(half[0], half[1]))
    out = [b.geom(i, "body", "box", (half[0], half[1], top / 2), (0, 0, half[2] - top / 2), rgba)]
    lh = half[2] - top / 2
    for sx in (-1, 1):
        for sy in (-1, 1):
            out.append(b.geom(i, "body", "box", (leg, leg, lh), (sx * (half[0] - leg), sy * (half[1] - leg), -top / 2), rgba))
    return out


def _item(b: _Builder, i: int, category: str, half, rgba) -> list[str]:
    """A small object; tiny ones are drawn at least MIN_ITEM wide and standing on their real bottom."""
    shown = (max(half[0], MIN_ITEM / 2), max(half[1], MIN_ITEM / 2), max(half[2], MIN_ITEM / 5))
    lift = (0, 0, shown[2] - half[2])
    if any(k in category for k in ROUND):
        return [b.geom(i, "body", "ellipsoid", shown, lift, rgba)]
    if any(k in category for k in CYLINDER):
        return [b.geom(i, "body", "cylinder", (min(shown[0], shown[1]), shown[2]), lift, rgba)]
    return [b.geom(i, "body", "box", shown, lift, rgba)]


def _robot(b: _Builder) -> list[str]:
    grey, dark, red = (.35, .37, .4, 1), (.2, .2, .22, 1), (.85, .15, .1, 1)
    return [b.geom(0, "body", "cylinder", (0.25, 0.55), (0, 0, -0.05), grey, GROUP_ROBOT),
            b.geom(0, "body", "sphere", (0.16,), (0, 0, 0.7), dark, GROUP_ROBOT),
            b.geom(0, "body", "box", (0.12, 0.04, 0.04), (0.16, 0, 0.7), red, GROUP_ROBOT)]


def _walls(b: _Builder, rooms: dict, height: float) -> list[str]:
    """Walls just outside every room, with a doorway where two rooms meet."""
    out, color = [], (.88, .86, .82, 1)
    boxes = list(rooms.values())

    def neighbour(x: float) -> bool:
        return any(abs(r[0] - x) < WALL_T * 2.5 or abs(r[2] - x) < WALL_T * 2.5 for r in boxes if r[0] != x and r[2] != x)

    for x0, y0, x1, y1 in boxes:
        t = WALL_T / 2
        for y in (y0 - t, y1 + t):  # south, north
            out.append(b.geom(-1, "wall", "box", ((x1 - x0) / 2 + WALL_T, t, height / 2), ((x0 + x1) / 2, y, height / 2),
                              color, GROUP_STRUCTURE))
        for x in (x0 - t, x1 + t):  # west, east: split around a doorway towards a neighbour
            edge = x0 if x < x0 else x1
            if neighbour(edge):
                ym = (y0 + y1) / 2
                for a, c in ((y0, ym - DOOR_W / 2), (ym + DOOR_W / 2, y1)):
                    out.append(b.geom(-1, "wall", "box", (t, (c - a) / 2, height / 2), (x, (a + c) / 2, height / 2),
                                      color, GROUP_STRUCTURE))
            else:
                out.append(b.geom(-1, "wall", "box", (t, (y1 - y0) / 2, height / 2), (x, (y0 + y1) / 2, height / 2),
                                  color, GROUP_STRUCTURE))
    return out


def _floor_material(room: str) -> str:
    key = next((k for k in FLOORS if k in room), None)
    return f"floor_{key or 'default'}"


def build_scene(world: World, size: int, fovy: float, wall_height: float) -> SceneSpec:
    """MJCF for `world` with an offscreen buffer that holds the 10 views as a 5 x 2 grid of `size` px tiles."""
    b = _Builder()
    substances = [i for i, o in enumerate(world.objects) if o.kind == "substance"]
    floor_of = {o.room: i for i, o in enumerate(world.objects) if o.kind == "floor" and o.room}
    bodies: dict[int, str] = {}
    body_xml: list[str] = []
    for i, o in enumerate(world.objects):
        if o.kind in ("floor", "substance"):
            continue
        half, b.dz = o.half, 0.0
        if o.kind == "furniture" and 2 * half[2] > wall_height:  # a 9 m tree would hide the room from above
            b.dz = wall_height / 2 - half[2]
            half = (half[0], half[1], wall_height / 2)
        if o.kind == "agent":
            geoms = _robot(b)
        else:
            rgba = category_color(o.category, furniture=o.kind == "furniture")
            openable = "openable" in o.abilities
            if o.container and o.kind == "furniture":
                geoms = _shell(b, i, half, (round(o.front[0]), round(o.front[1]), 0), openable, rgba, o.front)
            elif o.container:
                geoms = _shell(b, i, half, (0, 0, 1), openable, rgba)
            elif o.kind == "furniture" and any(k in o.category for k in TABLE_LIKE):
                geoms = _table(b, i, half, rgba)
            elif o.kind == "furniture":
                geoms = [b.geom(i, "body", "box", half, (0, 0, 0), rgba)]
            else:
                geoms = _item(b, i, o.category, half, rgba)
            if "toggleable" in o.abilities:
                geoms.append(b.geom(i, "lamp", "sphere", (min(0.06, max(half[:2])),), (0, 0, half[2] + 0.04),
                                    (1, .92, .3, 1), extra='material="glow"'))
            for k, s in enumerate(substances):
                coat = category_color(world.objects[s].category)
                geoms.append(b.geom(i, f"coat:{k}", "box", (half[0] * .9, half[1] * .9, 0.006), (0, 0, half[2] + 0.006), coat))
        name = f"obj{i}"
        bodies[i] = name
        p = world.pos[i]
        body_xml.append(f'<body name="{name}" mocap="true" pos="{_f(*p)}">{"".join(geoms)}</body>')

    b.dz = 0.0
    floors = []
    for room, (x0, y0, x1, y1) in world.rooms.items():
        floors.append(b.geom(floor_of.get(room, -1), "floor", "box", ((x1 - x0) / 2, (y1 - y0) / 2, 0.005),
                             ((x0 + x1) / 2, (y0 + y1) / 2, -0.005), (1, 1, 1, 1), GROUP_STRUCTURE,
                             f'material="{_floor_material(room)}"'))
    walls = _walls(b, world.rooms, wall_height)
    xs = [v for r in world.rooms.values() for v in (r[0], r[2])] or [0.0, 1.0]
    ys = [v for r in world.rooms.values() for v in (r[1], r[3])] or [0.0, 1.0]
    center = ((min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2)
    extent = (max(xs) - min(xs), max(ys) - min(ys))
    stat = max(10.0, max(extent) * 1.5)
    textures = "".join(
        f'<texture name="tex_{k}" type="2d" builtin="checker" rgb1="{_f(*c1)}" rgb2="{_f(*c2)}" width="64" height="64"/>'
        f'<material name="floor_{k}" texture="tex_{k}" texrepeat="2 2" texuniform="true"/>'
        for k, (c1, c2) in [*FLOORS.items(), ("default", DEFAULT_FLOOR)])
    xml = f"""<mujoco model="octogibson_{world.scene or 'scene'}">
  <statistic extent="{stat:.4g}" center="{_f(*center, 1.0)}"/>
  <visual>
    <global offwidth="{size * 5}" offheight="{size * 2}" fovy="{fovy:.4g}"/>
    <quality offsamples="0" shadowsize="0"/>
    <map znear="{0.03 / stat:.6g}" zfar="{80 / stat:.6g}" haze="0"/>
    <headlight ambient=".38 .38 .38" diffuse=".45 .45 .45" specular="0 0 0"/>
    <rgba haze="0 0 0 0"/>
  </visual>
  <asset>
    <texture name="sky" type="skybox" builtin="gradient" rgb1=".75 .82 .9" rgb2=".95 .95 .95" width="32" height="32"/>
    {textures}
    <material name="glow" emission="1" rgba="1 .92 .3 1"/>
  </asset>
  <worldbody>
    <light directional="true" pos="0 0 10" dir="-0.2 -0.3 -1" diffuse=".45 .45 .45" specular="0 0 0" castshadow="false"/>
    {"".join(floors)}{"".join(walls)}
    {"".join(body_xml)}
  </worldbody>
</mujoco>"""
    return SceneSpec(xml, b.geoms, bodies, floor_of, substances, center, extent)
