"""A glass stirring rod with a square plastic handle, standing in a bench holder (a short tube fixed to the bench)."""

from __future__ import annotations

import math

import mujoco

from lerobot_labvla.sim.assets.semantics import Asset

G = mujoco.mjtGeom


def stirring_rod(parent, name: str, pos, length: float = 0.2, radius: float = 0.006, holder_height: float = 0.05,
                 rgba=(0.85, 0.92, 1.0, 0.7)) -> Asset:
    """A free rod (origin at its lower tip) standing in a fixed holder; `<name>_grasp` is 3 cm below its top."""
    holder = parent.add_body(name=f"{name}_holder", pos=list(pos))
    inner, wall, n = radius + 0.004, 0.004, 8
    half_width = (inner + wall) * math.tan(math.pi / n) + 0.001
    for i in range(n):
        a = 2 * math.pi * i / n
        holder.add_geom(type=G.mjGEOM_BOX, size=[wall / 2, half_width, holder_height / 2],
                        pos=[(inner + wall / 2) * math.cos(a), (inner + wall / 2) * math.sin(a), holder_height / 2],
                        quat=[math.cos(a / 2), 0, 0, math.sin(a / 2)], rgba=[0.3, 0.3, 0.35, 1])
    holder.add_geom(type=G.mjGEOM_CYLINDER, size=[inner + wall, 0.002, 0], pos=[0, 0, 0.002], rgba=[0.3, 0.3, 0.35, 1])
    rod = parent.add_body(name=name, pos=[pos[0], pos[1], pos[2] + 0.0045])
    rod.add_freejoint(name=f"{name}_free")
    rod.add_geom(type=G.mjGEOM_CAPSULE, fromto=[0, 0, radius, 0, 0, length - 0.07], size=[radius, 0, 0],
                 rgba=list(rgba), mass=0.015, friction=[1.0, 0.005, 1e-4])
    # A square handle: flat faces give the finger pads an area contact (a thin round rod spins out).
    rod.add_geom(type=G.mjGEOM_BOX, size=[0.008, 0.008, 0.035], pos=[0, 0, length - 0.035],
                 rgba=[0.2, 0.35, 0.6, 1], mass=0.01, friction=[1.2, 0.05, 1e-3])
    rod.add_site(name=f"{name}_grasp", pos=[0, 0, length - 0.03], size=[0.003] * 3, group=4)
    rod.add_site(name=f"{name}_tip", pos=[0, 0, 0.0], size=[0.003] * 3, group=4)
    return Asset(name, "stirring_rod", name, "glass", [f"{name}_grasp"],
                 parts={"tip": f"{name}_tip", "holder": f"{name}_holder"},
                 params={"length": length, "radius": radius, "holder_height": holder_height})
