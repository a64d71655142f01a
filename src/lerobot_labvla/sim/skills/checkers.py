"""Physical success predicates, evaluated on the sim state (each can fail: nothing is assumed)."""

from __future__ import annotations

import numpy as np

from lerobot_labvla.sim.scene import Sim


def lifted_and_held(sim: Sim, obj: str, start_z: float, height: float = 0.08) -> bool:
    """`obj` is at least `height` above where it started and both fingers touch it."""
    return bool(sim.body_pos(obj)[2] - start_z >= height and sim.fingers_touch(obj))


def resting_in_region(sim: Sim, obj: str, center, half_size, z: float, z_tol: float = 0.01,
                      upright: float = 0.95, released: bool = True) -> bool:
    """`obj`'s base is inside the xy box `center ± half_size` at height `z`, upright, still, not grasped."""
    p = sim.body_pos(obj)
    inside = bool(np.all(np.abs(p[:2] - np.asarray(center[:2])) <= np.asarray(half_size)))
    still = float(np.linalg.norm(sim.data.body(obj).cvel[3:])) < 0.05
    free = not sim.fingers_touch(obj) if released else True
    return inside and abs(p[2] - z) <= z_tol and sim.body_upright(obj) >= upright and still and free


def particles_inside(sim: Sim, liquid: str, vessel: str) -> float:
    """Fraction of `liquid`'s particles inside `vessel`'s inner cylinder (vessel frame)."""
    asset, v = sim.assets[liquid], sim.assets[vessel]
    ids = [sim.model.body(b).id for b in asset.parts.values()]
    pos = sim.data.xpos[ids]
    rel = (pos - sim.body_pos(vessel)) @ sim.data.body(vessel).xmat.reshape(3, 3)
    r_in = v.params["radius"] - v.params.get("wall", 0.004)
    inside = (np.hypot(rel[:, 0], rel[:, 1]) < r_in) & (rel[:, 2] > 0) & (rel[:, 2] < v.params["height"])
    return float(inside.mean())


def button_pressed(sim: Sim, device: str) -> bool:
    """The device's push button has latched it on (its travel passed the latch threshold)."""
    return bool(sim.device_on.get(device, False))


def door_angle(sim: Sim, cabinet: str) -> float:
    return sim.joint_qpos(sim.assets[cabinet].articulation["door"])


def door_open(sim: Sim, cabinet: str, angle: float = 1.0) -> bool:
    """The door is open at least `angle` rad (default 57 degrees)."""
    return door_angle(sim, cabinet) >= angle
