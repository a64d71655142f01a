"""The six LabUtopia tasks: a scene recipe, a scripted expert (atomic skills), a success predicate and
a staged progress score, each sampled from a `Split` with a seeded generator.

Levels follow the original LabUtopia (arXiv 2505.22634): L1 = one atomic skill, L2 = a combination.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from lerobot_labvla.errors import LabVLAError
from lerobot_labvla.sim import assets as A
from lerobot_labvla.sim.scene import SceneBuilder, Sim
from lerobot_labvla.sim.skills import (
    Motion,
    Target,
    button_pressed,
    door_angle,
    door_open,
    lifted_and_held,
    open_door,
    particles_inside,
    pick,
    place,
    pour,
    press,
    resting_in_region,
)
from lerobot_labvla.envs.labutopia import GYM_IDS
from lerobot_labvla.envs.labutopia.splits import Split

# Three fixed slots like the official LabVLA evaluator's camera_1..3: two fixed views that between them
# see every task object (the front one from across the bench, the side one from the robot's left,
# which looks at the oven's door and handle) and the wrist camera.
FIXED_CAMERAS = {
    "front": {"pos": (1.3, -0.45, 0.95), "lookat": (0.45, 0.0, 0.2), "fovy": 58.0},
    "side": {"pos": (0.0, 0.8, 0.85), "lookat": (0.58, -0.05, 0.08), "fovy": 60.0},
}
CAMERA_NAMES = {"front": "front", "side": "side", "wrist": "fr3/wrist_cam"}  # observation key -> MuJoCo camera
POUR_FRACTION = 0.7  # of the particles must end in the target beaker
LIFT_HEIGHT = 0.08
TRANSPORT_LIFT = 0.03  # transport_beaker: the beaker must have been carried this high (no pushing)
RETRACT_HEIGHT = 0.05  # press tasks: the TCP this far above the pressed button while its lamp is lit
DOOR_RELEASE_DIST = 0.08  # open_door: the TCP this far from the handle, and no robot contact with the door
GLASS_GAP = 0.05  # free space between glassware footprints: room for the open fingers
WORKSPACE = ((0.44, 0.8), (-0.42, 0.42))  # x, y bounds of object centres (nearer the base, top-down grasps slip)

# Paraphrases chosen per seed; `{obj}` names the glassware by colour, `{colour}` the button, `{zone}` the area.
TEMPLATES = {
    "pick_up": ("pick up the {obj}", "lift the {obj} off the bench", "grasp the {obj} and raise it"),
    "press_button": ("press the {colour} button", "push the {colour} button", "turn on the {colour} button's lamp"),
    "open_door": ("open the door of the drying oven", "open the drying oven", "swing the oven door open"),
    "pour_liquid": ("pour the liquid from the {obj} into the large beaker", "empty the {obj} into the wide beaker",
                    "transfer the liquid in the {obj} to the big beaker"),
    "heat_beaker": ("place the beaker on the hot plate and turn the hot plate on",
                    "put the beaker on the hot plate and switch it on",
                    "set the beaker on the heating plate, then press the hot plate's button"),
    "transport_beaker": ("carry the {obj} to the {zone} target area", "move the {obj} onto the {zone} area",
                         "bring the {obj} to the {zone} zone"),
}


def _instruction(rng: np.random.Generator, task: str, **names: str) -> str:
    options = TEMPLATES[task]
    return options[int(rng.integers(len(options)))].format(**names)


def scene(split: Split, grasp_assist: bool | tuple[str, ...] = False, robot: str = "fr3") -> SceneBuilder:
    """Bench, robot, the fixed cameras and the split's light: what every LabUtopia (and genesis) scene starts from."""
    b = SceneBuilder(bench_rgba=split.bench_rgba, grasp_assist=grasp_assist)
    b.add_robot(robot=robot)
    for name, cam in FIXED_CAMERAS.items():
        b.add_camera(name, cam["pos"], cam["lookat"], cam["fovy"])
    b.add_light(split.light_pos, split.light_dir, split.light_diffuse)
    return b


class Layout:
    """Places objects for one scene: nominal (x, y) transformed + jittered by the split, footprints apart."""

    def __init__(self, rng: np.random.Generator, split: Split):
        self.rng, self.split = rng, split
        self.placed: list[tuple[float, float, float]] = []  # x, y, footprint radius

    def put(self, x: float, y: float, radius: float, gap: float = GLASS_GAP) -> tuple[float, float]:
        """A free position for a footprint of `radius` m near the nominal (`x`, `y`) (rejection sampling)."""
        (x_lo, x_hi), (y_lo, y_hi) = WORKSPACE
        for _ in range(200):
            px, py = self.split.xy(self.rng, x, y)
            px, py = float(np.clip(px, x_lo, x_hi)), float(np.clip(py, y_lo, y_hi))
            if all(math.hypot(px - qx, py - qy) >= radius + qr + gap for qx, qy, qr in self.placed):
                break
        self.placed.append((px, py, radius))
        return px, py

    def yaw(self) -> float:
        return float(self.rng.uniform(-self.split.device_yaw, self.split.device_yaw))


def _grasp_stage(sim: Sim, obj: str, start_z: float) -> float:
    """0.5 once `obj` is held and off the bench, 0.25 while merely held, else 0."""
    held = sim.fingers_touch(obj)
    if held and sim.body_pos(obj)[2] > start_z + 0.02:
        return 0.5
    return 0.25 if held else 0.0


def _near(sim: Sim, point, radius: float) -> bool:
    return bool(np.linalg.norm(sim.tcp_pos - np.asarray(point)) < radius)


def _retracted_from(sim: Sim, device: str) -> bool:
    """The hand has let go of the device's button: TCP >= RETRACT_HEIGHT above its top, no robot contact."""
    top = sim.site_pos(sim.assets[device].graspable_sites[0])
    return bool(sim.tcp_pos[2] - top[2] >= RETRACT_HEIGHT and not sim.robot_touches(sim.assets[device].body))


@dataclass(frozen=True)
class Task:
    """One benchmark task; subclasses fill in build/expert/success/progress (and `update` for episode state)."""

    name: str
    gym_id: str
    instruction: str
    level: str
    episode_length: int  # control steps at the env's fps

    def build(self, rng: np.random.Generator, split: Split) -> tuple[SceneBuilder, dict]:
        raise NotImplementedError

    def expert(self, m: Motion, ctx: dict) -> Iterator[Target]:
        raise NotImplementedError

    def update(self, sim: Sim, ctx: dict) -> None:
        """Called after every control step, before `success`: record what the rule needs from the past."""

    def success(self, sim: Sim, ctx: dict) -> bool:
        raise NotImplementedError

    def progress(self, sim: Sim, ctx: dict) -> float:
        raise NotImplementedError


def _named_glass(b: SceneBuilder, rng, split: Split, lay: Layout, slots, names=("beaker", "distractor")) -> dict:
    """The named beaker and a distractor of another colour at the nominal `slots` (in random order)."""
    first, other = split.two_colours(rng)
    order = [0, 1] if rng.uniform() < 0.5 else [1, 0]
    out = {}
    for name, colour, k in zip(names, (first, other), order):
        g = split.glass(rng, colour)
        x, y = lay.put(*slots[k], g["radius"])
        b.add(A.beaker, name, [x, y, 0.0], **g)
        out[name] = (x, y)
    out["colour"] = split.glass_color_names[first]
    return out


class PickUp(Task):
    def build(self, rng, split):
        b, lay = scene(split), Layout(rng, split)
        glass = _named_glass(b, rng, split, lay, [(0.55, -0.08), (0.55, 0.12)])
        bx, by = lay.put(0.68, 0.3, 0.03)
        b.add(A.reagent_bottle, "bottle", [bx, by, 0.0])  # clutter
        return b, {"obj": "beaker", "start_z": 0.0,
                   "instruction": _instruction(rng, self.name, obj=f"{glass['colour']} beaker")}

    def expert(self, m, ctx):
        yield from pick(m, ctx["obj"], lift=0.15)

    def success(self, sim, ctx):
        return lifted_and_held(sim, ctx["obj"], ctx["start_z"], LIFT_HEIGHT)

    def progress(self, sim, ctx):
        obj = ctx["obj"]
        if self.success(sim, ctx):
            return 1.0
        held = sim.fingers_touch(obj)
        if held and sim.body_pos(obj)[2] > ctx["start_z"] + 0.02:
            return 0.75
        if held:
            return 0.5
        return 0.25 if _near(sim, sim.site_pos(sim.assets[obj].graspable_sites[0]), 0.05) else 0.0


class PressButton(Task):
    SLOTS = ((0.48, -0.24), (0.58, 0.0), (0.48, 0.24))

    def build(self, rng, split):
        b, lay = scene(split), Layout(rng, split)
        colours = [split.button_colors[int(k)] for k in rng.permutation(len(split.button_colors))]
        panels = []
        for i, ((name, rgba), slot) in enumerate(zip(colours, self.SLOTS)):
            x, y = lay.put(*slot, 0.09, gap=0.02)
            b.add(A.button_panel, f"panel{i}", [x, y, 0.0], rgba=rgba, yaw=lay.yaw())
            panels.append(f"panel{i}")
        k = int(rng.integers(len(panels)))
        return b, {"device": panels[k], "others": [p for p in panels if p != panels[k]], "wrong": False,
                   "instruction": _instruction(rng, self.name, colour=colours[k][0])}

    def expert(self, m, ctx):
        yield from press(m, ctx["device"])

    def update(self, sim, ctx):
        # Pressing a wrong button before the named one fails the episode for good.
        if not button_pressed(sim, ctx["device"]) and any(button_pressed(sim, o) for o in ctx["others"]):
            ctx["wrong"] = True

    def success(self, sim, ctx):
        return not ctx["wrong"] and button_pressed(sim, ctx["device"]) and _retracted_from(sim, ctx["device"])

    def progress(self, sim, ctx):
        dev = ctx["device"]
        if ctx["wrong"]:
            return 0.0
        if self.success(sim, ctx):
            return 1.0
        if button_pressed(sim, dev) or sim.button_fraction(dev) > 0.2:
            return 0.75
        top = sim.site_pos(sim.assets[dev].graspable_sites[0])
        if _near(sim, top, 0.025):
            return 0.5
        return 0.25 if _near(sim, top, 0.08) else 0.0


class OpenDoor(Task):
    def build(self, rng, split):
        b, lay = scene(split), Layout(rng, split)
        x, y = lay.put(0.74, 0.22, 0.2)
        if split.mirror:
            # The hinge is on the door's -y edge: keep the cabinet on the +y side of the robot so the
            # door swings open towards it (a mirrored cabinet would open away from the arm).
            y = -y + 0.05
        rgba = (0.8, 0.82, 0.85, 1) if split.name == "id" else (0.55, 0.75, 0.6, 1)
        b.add(A.cabinet, "cabinet", [x, y, 0.0], door_rgba=rgba, yaw=lay.yaw())
        return b, {"cabinet": "cabinet", "instruction": _instruction(rng, self.name)}

    def expert(self, m, ctx):
        yield from open_door(m, ctx["cabinet"], angle=1.25)

    def _released(self, sim, ctx) -> bool:
        a = sim.assets[ctx["cabinet"]]
        handle = sim.data.geom(a.parts["handle"]).xpos
        return bool(np.linalg.norm(sim.tcp_pos - handle) >= DOOR_RELEASE_DIST and not sim.robot_touches(a.parts["door"]))

    def success(self, sim, ctx):
        return door_open(sim, ctx["cabinet"], 1.0) and self._released(sim, ctx)

    def progress(self, sim, ctx):
        angle = door_angle(sim, ctx["cabinet"])
        if angle >= 1.0:
            return 1.0 if self._released(sim, ctx) else 0.9
        if angle > 0.5:
            return 0.75
        if angle > 0.1:
            return 0.5
        return 0.25 if _near(sim, sim.site_pos(sim.assets[ctx["cabinet"]].graspable_sites[0]), 0.05) else 0.0


class PourLiquid(Task):
    def build(self, rng, split):
        # The only task with grasp assist, and only on the source: the beaker is rolled ~120 deg about the
        # grip axis, where pad friction alone lets it spin out of the fingers (see Sim.encloses).
        b, lay = scene(split, grasp_assist=("source",)), Layout(rng, split)
        dx, dy = lay.put(0.52, 0.13, 0.045)
        dst_rgba = (0.8, 0.9, 1.0, 0.35) if split.name == "id" else (0.95, 0.9, 0.7, 0.4)
        b.add(A.beaker, "target", [dx, dy, 0.0], radius=0.045, height=0.08, rgba=dst_rgba, mass=0.3)
        glass = _named_glass(b, rng, split, lay, [(0.42, -0.12), (0.62, -0.1)], names=("source", "distractor"))
        sx, sy = glass["source"]
        inner = b.assets["source"].params["radius"] - b.assets["source"].params["wall"]
        b.add(A.particles, "liquid", [sx, sy, 0.004], inner, count=30 if inner > 0.02 else 20)
        return b, {"src": "source", "dst": "target", "liquid": "liquid", "start_z": 0.0,
                   "instruction": _instruction(rng, self.name, obj=f"{glass['colour']} beaker")}

    def expert(self, m, ctx):
        sim = m.sim
        towards_plus_y = sim.body_pos(ctx["dst"])[1] >= sim.body_pos(ctx["src"])[1]
        # Fingers close along x so the mouth can turn towards the target's side (see `pour`).
        yield from pick(m, ctx["src"], lift=0.12, yaw=math.pi / 2 if towards_plus_y else -math.pi / 2)
        yield from pour(m, ctx["src"], ctx["dst"])

    def success(self, sim, ctx):
        return particles_inside(sim, ctx["liquid"], ctx["dst"]) >= POUR_FRACTION

    def progress(self, sim, ctx):
        poured = particles_inside(sim, ctx["liquid"], ctx["dst"])
        if poured >= POUR_FRACTION:
            return 1.0
        if poured > 0:
            return 0.75
        return _grasp_stage(sim, ctx["src"], ctx["start_z"])


class HeatBeaker(Task):
    def build(self, rng, split):
        b, lay = scene(split), Layout(rng, split)
        hx, hy = lay.put(0.5, -0.2, 0.15, gap=0.03)
        b.add(A.hot_plate, "hot_plate", [hx, hy, 0.0], yaw=lay.yaw())
        g = split.glass(rng)
        bx, by = lay.put(0.55, 0.15, g["radius"])
        b.add(A.beaker, "beaker", [bx, by, 0.0], **g)
        return b, {"obj": "beaker", "device": "hot_plate", "start_z": 0.0,
                   "instruction": _instruction(rng, self.name)}

    def _on_plate(self, sim, ctx) -> bool:
        plate = sim.assets[ctx["device"]]
        center = sim.site_pos(plate.parts["plate"])
        half = plate.params["plate_radius"] - 0.6 * sim.assets[ctx["obj"]].params["radius"]
        return resting_in_region(sim, ctx["obj"], center, [half / math.sqrt(2)] * 2, center[2], z_tol=0.01)

    def expert(self, m, ctx):
        sim = m.sim
        yield from pick(m, ctx["obj"], lift=0.12)
        center = sim.site_pos(sim.assets[ctx["device"]].parts["plate"])
        yield from place(m, ctx["obj"], center[:2], center[2])
        yield from press(m, ctx["device"])

    def success(self, sim, ctx):
        return (self._on_plate(sim, ctx) and button_pressed(sim, ctx["device"])
                and _retracted_from(sim, ctx["device"]))

    def progress(self, sim, ctx):
        if self.success(sim, ctx):
            return 1.0
        if self._on_plate(sim, ctx):
            return 0.75
        return _grasp_stage(sim, ctx["obj"], ctx["start_z"])


class TransportBeaker(Task):
    def build(self, rng, split):
        b, lay = scene(split), Layout(rng, split)
        zx, zy = lay.put(0.53, 0.22, 0.085, gap=0.0)
        zone_rgba, zone = ((0.1, 0.7, 0.2, 0.6), "green") if split.name == "id" else ((0.2, 0.4, 0.9, 0.6), "blue")
        b.add(A.target_zone, "zone", [zx, zy, 0.0], rgba=zone_rgba)
        glass = _named_glass(b, rng, split, lay, [(0.53, -0.2), (0.66, -0.02)])
        return b, {"obj": "beaker", "zone": "zone", "zone_xy": (zx, zy), "start_z": 0.0, "lifted": False,
                   "instruction": _instruction(rng, self.name, obj=f"{glass['colour']} beaker", zone=zone)}

    def _in_zone(self, sim, ctx) -> bool:
        z = sim.assets[ctx["zone"]]
        return resting_in_region(sim, ctx["obj"], ctx["zone_xy"], [z.params["half_x"], z.params["half_y"]], 0.0)

    def expert(self, m, ctx):
        yield from pick(m, ctx["obj"], lift=0.12)
        yield from place(m, ctx["obj"], ctx["zone_xy"], 0.0)

    def update(self, sim, ctx):
        # Carried, not pushed or knocked: off the bench by TRANSPORT_LIFT with both fingers on it.
        if sim.body_pos(ctx["obj"])[2] - ctx["start_z"] >= TRANSPORT_LIFT and sim.fingers_touch(ctx["obj"]):
            ctx["lifted"] = True

    def success(self, sim, ctx):
        return ctx["lifted"] and self._in_zone(sim, ctx)

    def progress(self, sim, ctx):
        if self.success(sim, ctx):
            return 1.0
        held = sim.fingers_touch(ctx["obj"])
        dist = np.linalg.norm(sim.body_pos(ctx["obj"])[:2] - np.asarray(ctx["zone_xy"]))
        if held and ctx["lifted"] and dist < 0.1:
            return 0.75
        if held:
            return 0.5
        grasp = sim.site_pos(sim.assets[ctx["obj"]].graspable_sites[0])
        return 0.25 if _near(sim, grasp, 0.05) else 0.0


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        PickUp("pick_up", GYM_IDS["pick_up"], "pick up the <colour> beaker", "L1 atomic (pick)", 160),
        PressButton("press_button", GYM_IDS["press_button"], "press the <colour> button", "L1 atomic (press)", 160),
        OpenDoor("open_door", GYM_IDS["open_door"], "open the door of the drying oven", "L1 atomic (open door)", 240),
        PourLiquid("pour_liquid", GYM_IDS["pour_liquid"], "pour the liquid from the <colour> beaker into the large beaker",
                   "L1 atomic (pour)", 320),
        HeatBeaker("heat_beaker", GYM_IDS["heat_beaker"],
                   "place the beaker on the hot plate and turn the hot plate on", "L2 combined (pick, place, press)", 380),
        TransportBeaker("transport_beaker", GYM_IDS["transport_beaker"],
                        "carry the <colour> beaker to the <colour> target area", "L2 combined (pick, place)", 300),
    )
}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise LabVLAError(f"unknown LabUtopia task {name!r}; expected one of {list(TASKS)}")
    return TASKS[name]
