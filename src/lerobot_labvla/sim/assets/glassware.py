"""Glassware from primitives: open vessels are a disc plus thin wall boxes around a circle."""

from __future__ import annotations

import math

import mujoco

from lerobot_labvla.sim.assets.semantics import Asset

G = mujoco.mjtGeom
GLASS_FRICTION = [1.0, 0.005, 0.0001]


def _open_vessel(body, radius: float, height: float, wall: float, n: int, rgba, mass: float) -> None:
    body.add_geom(type=G.mjGEOM_CYLINDER, size=[radius, wall / 2, 0], pos=[0, 0, wall / 2], rgba=rgba,
                  mass=mass * 0.3, friction=GLASS_FRICTION)
    half_width = radius * math.tan(math.pi / n) + wall / 2
    for i in range(n):
        a = 2 * math.pi * i / n
        body.add_geom(type=G.mjGEOM_BOX, size=[wall / 2, half_width, height / 2],
                      pos=[(radius - wall / 2) * math.cos(a), (radius - wall / 2) * math.sin(a), height / 2],
                      quat=[math.cos(a / 2), 0, 0, math.sin(a / 2)], rgba=rgba, mass=mass * 0.7 / n,
                      friction=GLASS_FRICTION)


def beaker(parent, name: str, pos, radius: float = 0.03, height: float = 0.10, wall: float = 0.004,
           rgba=(0.7, 0.85, 1.0, 0.45), sides: int = 8, mass: float = 0.08) -> Asset:
    """A free open cylinder; `<name>_grasp` sits on its axis 2.2 cm below the rim.

    Gripping that high keeps the palm of the hand clear of the mouth, so a tilted beaker can pour.
    """
    body = parent.add_body(name=name, pos=list(pos))
    body.add_freejoint(name=f"{name}_free")
    _open_vessel(body, radius, height, wall, sides, list(rgba), mass)
    body.add_site(name=f"{name}_grasp", pos=[0, 0, height - 0.022], size=[0.004] * 3, group=4)
    body.add_site(name=f"{name}_rim", pos=[0, 0, height], size=[0.004] * 3, group=4)
    volume = math.pi * (radius - wall) ** 2 * (height - wall) * 1e6
    return Asset(name, "beaker", name, "glass", [f"{name}_grasp"], round(volume, 1),
                 params={"radius": radius, "height": height, "wall": wall})


def graduated_cylinder(parent, name: str, pos, radius: float = 0.016, height: float = 0.2,
                       rgba=(0.8, 0.9, 1.0, 0.45)) -> Asset:
    """A tall narrow open vessel on a wider foot."""
    body = parent.add_body(name=name, pos=list(pos))
    body.add_freejoint(name=f"{name}_free")
    body.add_geom(type=G.mjGEOM_CYLINDER, size=[radius * 2.2, 0.004, 0], pos=[0, 0, 0.004], rgba=list(rgba), mass=0.04)
    inner = body.add_body(name=f"{name}_tube", pos=[0, 0, 0.008])
    _open_vessel(inner, radius, height, 0.003, 12, list(rgba), 0.06)
    body.add_site(name=f"{name}_grasp", pos=[0, 0, 0.6 * height], size=[0.004] * 3, group=4)
    volume = math.pi * (radius - 0.003) ** 2 * height * 1e6
    return Asset(name, "graduated_cylinder", name, "glass", [f"{name}_grasp"], round(volume, 1),
                 params={"radius": radius, "height": height})


def flask(parent, name: str, pos, radius: float = 0.045, neck_radius: float = 0.014, height: float = 0.14,
          rgba=(0.75, 0.9, 1.0, 0.45)) -> Asset:
    """An Erlenmeyer flask: a solid cone body (liquid is not poured into it) and an open-looking neck."""
    body = parent.add_body(name=name, pos=list(pos))
    body.add_freejoint(name=f"{name}_free")
    cone_h = 0.65 * height
    for k in range(4):  # stacked cylinders approximate the cone
        r = radius - (radius - neck_radius) * k / 4
        body.add_geom(type=G.mjGEOM_CYLINDER, size=[r, cone_h / 8, 0], pos=[0, 0, cone_h / 8 * (2 * k + 1)],
                      rgba=list(rgba), mass=0.03, friction=GLASS_FRICTION)
    neck_h = height - cone_h
    body.add_geom(type=G.mjGEOM_CYLINDER, size=[neck_radius, neck_h / 2, 0], pos=[0, 0, cone_h + neck_h / 2],
                  rgba=list(rgba), mass=0.02, friction=GLASS_FRICTION)
    body.add_site(name=f"{name}_grasp", pos=[0, 0, cone_h + neck_h / 2], size=[0.004] * 3, group=4)
    volume = math.pi * radius**2 * cone_h / 3 * 1e6
    return Asset(name, "flask", name, "glass", [f"{name}_grasp"], round(volume, 1),
                 params={"radius": radius, "height": height, "neck_radius": neck_radius})


def test_tube(parent, name: str, pos, radius: float = 0.008, height: float = 0.12,
              rgba=(0.85, 0.95, 1.0, 0.5)) -> Asset:
    """A free test tube (capsule-bottomed cylinder)."""
    body = parent.add_body(name=name, pos=list(pos))
    body.add_freejoint(name=f"{name}_free")
    body.add_geom(type=G.mjGEOM_CAPSULE, size=[radius, height / 2 - radius, 0], pos=[0, 0, height / 2],
                  rgba=list(rgba), mass=0.015, friction=GLASS_FRICTION)
    body.add_site(name=f"{name}_grasp", pos=[0, 0, 0.75 * height], size=[0.003] * 3, group=4)
    return Asset(name, "test_tube", name, "glass", [f"{name}_grasp"], round(math.pi * radius**2 * height * 1e6, 1),
                 params={"radius": radius, "height": height})


def test_tube_rack(parent, name: str, pos, slots: int = 4, pitch: float = 0.03, hole: float = 0.011,
                   rgba=(0.95, 0.95, 0.95, 1)) -> Asset:
    """A fixed rack: two plates with `slots` square holes each (built from bars) on end posts."""
    body = parent.add_body(name=name, pos=list(pos))
    length = slots * pitch
    for z in (0.005, 0.07):
        for side in (-1, 1):
            body.add_geom(type=G.mjGEOM_BOX, size=[length / 2, 0.004, 0.004],
                          pos=[0, side * (hole + 0.004), z], rgba=list(rgba))
        for k in range(slots + 1):
            body.add_geom(type=G.mjGEOM_BOX, size=[0.004, hole + 0.008, 0.004],
                          pos=[-length / 2 + k * pitch, 0, z], rgba=list(rgba))
    for side in (-1, 1):
        body.add_geom(type=G.mjGEOM_BOX, size=[0.004, hole + 0.008, 0.037], pos=[side * length / 2, 0, 0.037],
                      rgba=list(rgba))
    sites = []
    for k in range(slots):
        site = f"{name}_slot{k}"
        body.add_site(name=site, pos=[-length / 2 + (k + 0.5) * pitch, 0, 0.07], size=[0.003] * 3, group=4)
        sites.append(site)
    return Asset(name, "rack", name, "plastic", [], 0.0, params={"slots": slots, "pitch": pitch})


def reagent_bottle(parent, name: str, pos, radius: float = 0.03, height: float = 0.12,
                   rgba=(0.45, 0.3, 0.15, 0.9)) -> Asset:
    """A closed amber bottle with a cap (solid; grasped around the body)."""
    body = parent.add_body(name=name, pos=list(pos))
    body.add_freejoint(name=f"{name}_free")
    body.add_geom(type=G.mjGEOM_CYLINDER, size=[radius, height * 0.4, 0], pos=[0, 0, height * 0.4],
                  rgba=list(rgba), mass=0.25, friction=GLASS_FRICTION)
    body.add_geom(type=G.mjGEOM_CYLINDER, size=[radius * 0.45, height * 0.1, 0], pos=[0, 0, height * 0.9],
                  rgba=[0.1, 0.1, 0.1, 1], mass=0.02)
    body.add_site(name=f"{name}_grasp", pos=[0, 0, height * 0.5], size=[0.004] * 3, group=4)
    return Asset(name, "bottle", name, "glass", [f"{name}_grasp"], round(math.pi * radius**2 * height * 0.8e6, 1),
                 params={"radius": radius, "height": height})
