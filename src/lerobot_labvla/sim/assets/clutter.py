"""Bench clutter (distractors no workflow step names): petri dish, pipette-tip box, lab notebook,
wash bottle, sample vial, ice bucket (free bodies from primitives, like the glassware), and a shelf
(static) that other clutter stands on."""

from __future__ import annotations

import math

import mujoco

from lerobot_labvla.sim.assets.semantics import Asset

G = mujoco.mjtGeom
FRICTION = [0.9, 0.005, 1e-4]


def petri_dish(parent, name: str, pos, radius: float = 0.045, rgba=(0.85, 0.92, 0.95, 0.5),
               material: str = "polystyrene") -> Asset:
    """A closed dish: base and lid as two flat cylinders."""
    body = parent.add_body(name=name, pos=list(pos))
    body.add_freejoint(name=f"{name}_free")
    body.add_geom(type=G.mjGEOM_CYLINDER, size=[radius, 0.006, 0], pos=[0, 0, 0.006], rgba=list(rgba), mass=0.02,
                  friction=FRICTION)
    body.add_geom(type=G.mjGEOM_CYLINDER, size=[radius + 0.002, 0.002, 0], pos=[0, 0, 0.014], rgba=list(rgba),
                  mass=0.01, friction=FRICTION)
    return Asset(name, "petri_dish", name, material, params={"radius": radius, "height": 0.016})


def tip_box(parent, name: str, pos, size=(0.06, 0.04, 0.05), rgba=(0.2, 0.4, 0.85, 1.0), material: str = "plastic") -> Asset:
    """A pipette-tip box: a coloured base and a clear lid (half sizes `size`)."""
    body = parent.add_body(name=name, pos=list(pos))
    body.add_freejoint(name=f"{name}_free")
    hx, hy, hz = size
    body.add_geom(type=G.mjGEOM_BOX, size=[hx, hy, hz * 0.6], pos=[0, 0, hz * 0.6], rgba=list(rgba), mass=0.08,
                  friction=FRICTION)
    body.add_geom(type=G.mjGEOM_BOX, size=[hx, hy, hz * 0.4], pos=[0, 0, hz * 1.6], rgba=[0.9, 0.9, 0.9, 0.35],
                  mass=0.03, friction=FRICTION)
    return Asset(name, "tip_box", name, material, params={"radius": math.hypot(hx, hy), "height": 2 * hz})


def notebook(parent, name: str, pos, size=(0.105, 0.074), thickness: float = 0.008, rgba=(0.15, 0.2, 0.45, 1.0),
             material: str = "paper") -> Asset:
    """A closed lab notebook lying flat (A5 by default)."""
    body = parent.add_body(name=name, pos=list(pos))
    body.add_freejoint(name=f"{name}_free")
    body.add_geom(type=G.mjGEOM_BOX, size=[size[0], size[1], thickness / 2], pos=[0, 0, thickness / 2],
                  rgba=list(rgba), mass=0.15, friction=FRICTION)
    return Asset(name, "notebook", name, material, params={"radius": math.hypot(*size), "height": thickness})


def _capped(parent, name: str, pos, radius: float, height: float, rgba, cap_radius: float, cap_half: float, cap_rgba,
            mass: float):
    """A free cylinder body (80 % of `height`) with a cap cylinder of half height `cap_half` on top."""
    body = parent.add_body(name=name, pos=list(pos))
    body.add_freejoint(name=f"{name}_free")
    body.add_geom(type=G.mjGEOM_CYLINDER, size=[radius, height * 0.4, 0], pos=[0, 0, height * 0.4], rgba=list(rgba),
                  mass=mass, friction=FRICTION)
    body.add_geom(type=G.mjGEOM_CYLINDER, size=[cap_radius, cap_half, 0], pos=[0, 0, height * 0.8 + cap_half],
                  rgba=list(cap_rgba), mass=mass * 0.1)
    return body


def wash_bottle(parent, name: str, pos, radius: float = 0.03, height: float = 0.14, rgba=(0.95, 0.95, 0.9, 0.8),
                cap_rgba=(0.9, 0.2, 0.2, 1.0), material: str = "polyethylene") -> Asset:
    """A squeeze bottle with a coloured cap and a bent nozzle."""
    body = _capped(parent, name, pos, radius, height, rgba, radius * 0.5, height * 0.05, cap_rgba, 0.12)
    body.add_geom(type=G.mjGEOM_CAPSULE, fromto=[0, 0, height * 0.9, radius * 0.9, 0, height * 0.97],
                  size=[0.003, 0, 0], rgba=list(rgba), mass=0.002)
    return Asset(name, "wash_bottle", name, material, params={"radius": radius, "height": height})


def sample_vial(parent, name: str, pos, radius: float = 0.011, height: float = 0.05, rgba=(0.8, 0.9, 1.0, 0.5),
                cap_rgba=(0.1, 0.1, 0.1, 1.0), material: str = "glass") -> Asset:
    """A small screw-cap vial."""
    _capped(parent, name, pos, radius, height, rgba, radius * 1.05, height * 0.1, cap_rgba, 0.01)
    return Asset(name, "sample_vial", name, material, params={"radius": radius, "height": height})


def ice_bucket(parent, name: str, pos, radius: float = 0.07, height: float = 0.08, rgba=(0.95, 0.55, 0.15, 1.0),
               material: str = "foam") -> Asset:
    """A wide open bucket (solid-looking: a cylinder with a darker top disc)."""
    body = parent.add_body(name=name, pos=list(pos))
    body.add_freejoint(name=f"{name}_free")
    body.add_geom(type=G.mjGEOM_CYLINDER, size=[radius, height / 2, 0], pos=[0, 0, height / 2], rgba=list(rgba),
                  mass=0.3, friction=FRICTION)
    body.add_geom(type=G.mjGEOM_CYLINDER, size=[radius * 0.85, 0.001, 0], pos=[0, 0, height + 0.001],
                  rgba=[0.9, 0.95, 1.0, 1.0], contype=0, conaffinity=0)
    return Asset(name, "ice_bucket", name, material, params={"radius": radius, "height": height})


SHELF_BOARD = 0.012  # m, thickness of a shelf's top board


def shelf(parent, name: str, pos, width: float = 0.3, depth: float = 0.14, height: float = 0.2,
          rgba=(0.72, 0.55, 0.36, 1.0), material: str = "wood") -> Asset:
    """A bench-top shelf: two side panels and a board whose top is `height` + board above the bench (static;
    `params["top"]` is where things on it stand). Its long side runs along y."""
    body = parent.add_body(name=name, pos=list(pos))
    panel = 0.01
    for side in (-1, 1):
        body.add_geom(type=G.mjGEOM_BOX, size=[depth / 2, panel / 2, height / 2],
                      pos=[0, side * (width / 2 - panel / 2), height / 2], rgba=list(rgba), friction=FRICTION)
    body.add_geom(type=G.mjGEOM_BOX, size=[depth / 2, width / 2, SHELF_BOARD / 2], pos=[0, 0, height + SHELF_BOARD / 2],
                  rgba=list(rgba), friction=FRICTION)
    return Asset(name, "shelf", name, material, params={"radius": math.hypot(width, depth) / 2, "width": width,
                                                         "depth": depth, "height": height + SHELF_BOARD,
                                                         "top": height + SHELF_BOARD})
