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

FRONT_CAMERA = {"pos": (1.0, -0.42, 0.55), "lookat": (0.5, 0.04, 0.1), "fovy": 58.0}
CAMERA_NAMES = {"front": "front", "wrist": "fr3/wrist_cam"}  # observation key -> MuJoCo camera
POUR_FRACTION = 0.7  # of the particles must end in the target beaker
LIFT_HEIGHT = 0.08


def _scene(split: Split, grasp_assist: bool = False) -> SceneBuilder:
    b = SceneBuilder(bench_rgba=split.bench_rgba, grasp_assist=grasp_assist)
    b.add_robot()
    b.add_camera("front", FRONT_CAMERA["pos"], FRONT_CAMERA["lookat"], FRONT_CAMERA["fovy"])
    b.add_light(split.light_pos, split.light_dir, split.light_diffuse)
    return b


def _grasp_stage(sim: Sim, obj: str, start_z: float) -> float:
    """0.5 once `obj` is held and off the bench, 0.25 while merely held, else 0."""
    held = sim.fingers_touch(obj)
    if held and sim.body_pos(obj)[2] > start_z + 0.02:
        return 0.5
    return 0.25 if held else 0.0


def _near(sim: Sim, point, radius: float) -> bool:
    return bool(np.linalg.norm(sim.tcp_pos - np.asarray(point)) < radius)


@dataclass(frozen=True)
class Task:
    """One benchmark task; subclasses fill in the four methods."""

    name: str
    gym_id: str
    instruction: str
    level: str
    episode_length: int  # control steps at the env's fps

    def build(self, rng: np.random.Generator, split: Split) -> tuple[SceneBuilder, dict]:
        raise NotImplementedError

    def expert(self, m: Motion, ctx: dict) -> Iterator[Target]:
        raise NotImplementedError

    def success(self, sim: Sim, ctx: dict) -> bool:
        raise NotImplementedError

    def progress(self, sim: Sim, ctx: dict) -> float:
        raise NotImplementedError


class PickUp(Task):
    def build(self, rng, split):
        b = _scene(split)
        g = split.glass(rng)
        x, y = split.xy(rng, 0.5, -0.05)
        b.add(A.beaker, "beaker", [x, y, 0.0], **g)
        bx, by = split.xy(rng, 0.6, 0.25)
        b.add(A.reagent_bottle, "bottle", [bx, by, 0.0])  # clutter
        return b, {"obj": "beaker", "start_z": 0.0}

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
    def build(self, rng, split):
        b = _scene(split)
        x, y = split.xy(rng, 0.45, 0.1)
        rgba = [(0.1, 0.55, 0.15, 1), (0.1, 0.3, 0.8, 1)][int(rng.integers(2))] if split.name == "id" \
            else (0.9, 0.75, 0.1, 1)
        b.add(A.button_panel, "panel", [x, y, 0.0], rgba=rgba)
        bx, by = split.xy(rng, 0.55, -0.2)
        b.add(A.beaker, "beaker", [bx, by, 0.0], **split.glass(rng))  # clutter
        return b, {"device": "panel"}

    def expert(self, m, ctx):
        yield from press(m, ctx["device"])

    def success(self, sim, ctx):
        return button_pressed(sim, ctx["device"])

    def progress(self, sim, ctx):
        dev = ctx["device"]
        if self.success(sim, ctx):
            return 1.0
        if sim.button_fraction(dev) > 0.2:
            return 0.75
        top = sim.site_pos(sim.assets[dev].graspable_sites[0])
        if _near(sim, top, 0.025):
            return 0.5
        return 0.25 if _near(sim, top, 0.08) else 0.0


class OpenDoor(Task):
    def build(self, rng, split):
        b = _scene(split)
        x, y = split.xy(rng, 0.75, 0.28)
        if split.mirror:
            # The hinge is on the door's -y edge: keep the cabinet on the +y side of the robot so the
            # door swings open towards it (a mirrored cabinet would open away from the arm).
            y = -y + 0.05
        rgba = (0.8, 0.82, 0.85, 1) if split.name == "id" else (0.55, 0.75, 0.6, 1)
        b.add(A.cabinet, "cabinet", [x, y, 0.0], door_rgba=rgba)
        return b, {"cabinet": "cabinet"}

    def expert(self, m, ctx):
        yield from open_door(m, ctx["cabinet"], angle=1.25)

    def success(self, sim, ctx):
        return door_open(sim, ctx["cabinet"], 1.0)

    def progress(self, sim, ctx):
        angle = door_angle(sim, ctx["cabinet"])
        if angle >= 1.0:
            return 1.0
        if angle > 0.5:
            return 0.75
        if angle > 0.1:
            return 0.5
        return 0.25 if _near(sim, sim.site_pos(sim.assets[ctx["cabinet"]].graspable_sites[0]), 0.05) else 0.0


class PourLiquid(Task):
    def build(self, rng, split):
        # The only task with grasp assist: the beaker is rolled ~120 deg about the grip axis, where
        # pad friction alone lets it spin out of the fingers (see Sim.grasp_eq).
        b = _scene(split, grasp_assist=True)
        g = split.glass(rng)
        sx, sy = split.xy(rng, 0.5, -0.1)
        dx, dy = split.xy(rng, 0.5, 0.1)
        b.add(A.beaker, "source", [sx, sy, 0.0], **g)
        inner = g["radius"] - 0.004
        b.add(A.particles, "liquid", [sx, sy, 0.004], inner, count=30 if inner > 0.02 else 20)
        dst_rgba = (0.8, 0.9, 1.0, 0.35) if split.name == "id" else (0.95, 0.9, 0.7, 0.4)
        b.add(A.beaker, "target", [dx, dy, 0.0], radius=0.045, height=0.08, rgba=dst_rgba, mass=0.3)
        return b, {"src": "source", "dst": "target", "liquid": "liquid", "start_z": 0.0}

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
        b = _scene(split)
        g = split.glass(rng)
        bx, by = split.xy(rng, 0.5, 0.15)
        hx, hy = split.xy(rng, 0.5, -0.2)
        b.add(A.beaker, "beaker", [bx, by, 0.0], **g)
        b.add(A.hot_plate, "hot_plate", [hx, hy, 0.0])
        return b, {"obj": "beaker", "device": "hot_plate", "start_z": 0.0}

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
        return self._on_plate(sim, ctx) and button_pressed(sim, ctx["device"])

    def progress(self, sim, ctx):
        if self.success(sim, ctx):
            return 1.0
        if self._on_plate(sim, ctx):
            return 0.75
        return _grasp_stage(sim, ctx["obj"], ctx["start_z"])


class TransportBeaker(Task):
    def build(self, rng, split):
        b = _scene(split)
        g = split.glass(rng)
        bx, by = split.xy(rng, 0.45, -0.2)
        zx, zy = split.xy(rng, 0.5, 0.22)
        b.add(A.beaker, "beaker", [bx, by, 0.0], **g)
        zone_rgba = (0.1, 0.7, 0.2, 0.6) if split.name == "id" else (0.2, 0.4, 0.9, 0.6)
        b.add(A.target_zone, "zone", [zx, zy, 0.0], rgba=zone_rgba)
        colour = "green" if split.name == "id" else "blue"
        return b, {"obj": "beaker", "zone": "zone", "zone_xy": (zx, zy), "start_z": 0.0,
                   "instruction": f"carry the beaker to the {colour} target area"}

    def _in_zone(self, sim, ctx) -> bool:
        z = sim.assets[ctx["zone"]]
        return resting_in_region(sim, ctx["obj"], ctx["zone_xy"], [z.params["half_x"], z.params["half_y"]], 0.0)

    def expert(self, m, ctx):
        yield from pick(m, ctx["obj"], lift=0.12)
        yield from place(m, ctx["obj"], ctx["zone_xy"], 0.0)

    def success(self, sim, ctx):
        return self._in_zone(sim, ctx)

    def progress(self, sim, ctx):
        if self.success(sim, ctx):
            return 1.0
        held = sim.fingers_touch(ctx["obj"])
        dist = np.linalg.norm(sim.body_pos(ctx["obj"])[:2] - np.asarray(ctx["zone_xy"]))
        if held and dist < 0.1:
            return 0.75
        if held:
            return 0.5
        grasp = sim.site_pos(sim.assets[ctx["obj"]].graspable_sites[0])
        return 0.25 if _near(sim, grasp, 0.05) else 0.0


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        PickUp("pick_up", GYM_IDS["pick_up"], "pick up the beaker", "L1 atomic (pick)", 160),
        PressButton("press_button", GYM_IDS["press_button"], "press the button", "L1 atomic (press)", 160),
        OpenDoor("open_door", GYM_IDS["open_door"], "open the door of the drying oven", "L1 atomic (open door)", 240),
        PourLiquid("pour_liquid", GYM_IDS["pour_liquid"], "pour the liquid into the other beaker",
                   "L1 atomic (pour)", 320),
        HeatBeaker("heat_beaker", GYM_IDS["heat_beaker"],
                   "place the beaker on the hot plate and turn the hot plate on", "L2 combined (pick, place, press)", 380),
        TransportBeaker("transport_beaker", GYM_IDS["transport_beaker"],
                        "carry the beaker to the target area", "L2 combined (pick, place)", 300),
    )
}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise LabVLAError(f"unknown LabUtopia task {name!r}; expected one of {list(TASKS)}")
    return TASKS[name]
