"""Lab furniture and devices: bench, button panel, hot plate, cabinet (drying oven) with a door."""

from __future__ import annotations

import math

import mujoco

from lerobot_labvla.sim.assets.semantics import Asset

G, J = mujoco.mjtGeom, mujoco.mjtJoint
INDICATOR_OFF = (0.25, 0.05, 0.05, 1.0)
INDICATOR_ON = (1.0, 0.15, 0.05, 1.0)


def bench(parent, name: str = "bench", size=(0.7, 0.9), height: float = 0.8, center=(0.45, 0.0),
          rgba=(0.55, 0.6, 0.62, 1)) -> Asset:
    """A fixed bench whose top surface is the plane z = 0."""
    body = parent.add_body(name=name, pos=[center[0], center[1], -height / 2])
    body.add_geom(type=G.mjGEOM_BOX, size=[size[0], size[1], height / 2], rgba=list(rgba), friction=[0.8, 0.005, 1e-4])
    return Asset(name, "bench", name, "epoxy resin")


def _yaw_quat(yaw: float) -> list[float]:
    """Body orientation for a rotation of `yaw` rad about the world z axis."""
    return [math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)]


def _push_button(parent, name: str, pos, radius: float, travel: float, stiffness: float, rgba) -> str:
    """A spring-returned cap standing on the surface at `pos`; returns the joint name (0 = up, -travel = bottomed).

    The cap rests `travel` + 1 mm above the surface, so it never touches its housing (bodies welded to
    the world are not filtered as parent/child contacts).
    """
    cap = parent.add_body(name=name, pos=[pos[0], pos[1], pos[2] + travel + 0.001])
    joint = f"{name}_slide"
    cap.add_joint(name=joint, type=J.mjJNT_SLIDE, axis=[0, 0, 1], range=[-travel, 0], stiffness=stiffness,
                  springref=0.0, damping=1.0)
    cap.add_geom(name=f"{name}_cap", type=G.mjGEOM_CYLINDER, size=[radius, 0.008, 0], pos=[0, 0, 0.008],
                 rgba=list(rgba), mass=0.02, friction=[1.0, 0.005, 1e-4])
    cap.add_site(name=f"{name}_top", pos=[0, 0, 0.016], size=[0.003] * 3, group=4)
    return joint


def button_panel(parent, name: str, pos, radius: float = 0.02, travel: float = 0.01,
                 rgba=(0.1, 0.55, 0.15, 1), housing_rgba=(0.85, 0.85, 0.8, 1), yaw: float = 0.0) -> Asset:
    """A bench push-button box (turned `yaw` rad about z) with an indicator lamp that a device latch turns on."""
    body = parent.add_body(name=name, pos=list(pos), quat=_yaw_quat(yaw))
    body.add_geom(type=G.mjGEOM_BOX, size=[0.05, 0.08, 0.02], pos=[0, 0, 0.02], rgba=list(housing_rgba), mass=1.0)
    joint = _push_button(body, f"{name}_button", [0, -0.02, 0.04], radius, travel, 300.0, rgba)
    body.add_geom(name=f"{name}_indicator", type=G.mjGEOM_CYLINDER, size=[0.01, 0.003, 0], pos=[0, 0.05, 0.042],
                  rgba=list(INDICATOR_OFF), contype=0, conaffinity=0)
    return Asset(name, "button_panel", name, "plastic", [f"{name}_button_top"],
                 articulation={"button": joint}, parts={"indicator": f"{name}_indicator", "button": f"{name}_button"},
                 params={"travel": travel, "radius": radius})


def hot_plate(parent, name: str, pos, plate_radius: float = 0.075, travel: float = 0.01,
              rgba=(0.9, 0.9, 0.88, 1), plate_rgba=(0.3, 0.3, 0.32, 1), yaw: float = 0.0) -> Asset:
    """A hot plate (turned `yaw` rad about z): heating disc at the back, push button and lamp at the front (-x)."""
    body = parent.add_body(name=name, pos=list(pos), quat=_yaw_quat(yaw))
    body.add_geom(type=G.mjGEOM_BOX, size=[0.14, 0.095, 0.03], pos=[0, 0, 0.03], rgba=list(rgba), mass=2.0)
    body.add_geom(name=f"{name}_plate", type=G.mjGEOM_CYLINDER, size=[plate_radius, 0.003, 0], pos=[0.04, 0, 0.063],
                  rgba=list(plate_rgba), friction=[1.0, 0.005, 1e-4])
    body.add_site(name=f"{name}_plate_center", pos=[0.04, 0, 0.066], size=[0.004] * 3, group=4)
    joint = _push_button(body, f"{name}_button", [-0.105, 0.045, 0.06], 0.016, travel, 300.0,
                         (0.8, 0.1, 0.1, 1))
    body.add_geom(name=f"{name}_indicator", type=G.mjGEOM_CYLINDER, size=[0.009, 0.003, 0], pos=[-0.105, -0.05, 0.062],
                  rgba=list(INDICATOR_OFF), contype=0, conaffinity=0)
    return Asset(name, "hot_plate", name, "ceramic/steel", [f"{name}_button_top"],
                 articulation={"button": joint},
                 parts={"indicator": f"{name}_indicator", "plate": f"{name}_plate_center", "button": f"{name}_button"},
                 params={"travel": travel, "plate_radius": plate_radius, "plate_height": 0.066})


def cabinet(parent, name: str, pos, width: float = 0.3, depth: float = 0.25, height: float = 0.26,
            wall: float = 0.012, handle_height: float = 0.2, rgba=(0.92, 0.92, 0.9, 1),
            door_rgba=(0.8, 0.82, 0.85, 1), yaw: float = 0.0) -> Asset:
    """A drying-oven-like cabinet open towards -x (of its frame, turned `yaw` rad about z), door hinged on
    its -y edge, bar handle on the +y edge.

    The door frame origin is the hinge; at angle 0 the door's inner face is the plane x = 0 of that
    frame and the handle bar (along y) stands `handle_gap` in front of it, so fingers fit behind it.
    """
    body = parent.add_body(name=name, pos=list(pos), quat=_yaw_quat(yaw))
    hw, hd, hh = width / 2, depth / 2, height / 2
    for size, p in [([wall / 2, hw, hh], [hd - wall / 2, 0, hh]), ([hd, wall / 2, hh], [0, -hw + wall / 2, hh]),
                    ([hd, wall / 2, hh], [0, hw - wall / 2, hh]), ([hd, hw, wall / 2], [0, 0, wall / 2]),
                    ([hd, hw, wall / 2], [0, 0, height - wall / 2])]:
        body.add_geom(type=G.mjGEOM_BOX, size=size, pos=p, rgba=list(rgba), mass=1.0)
    # Hinge just in front of the opening; 3 mm gaps keep the door from rubbing the frame or bench.
    door = body.add_body(name=f"{name}_door", pos=[-hd - 0.003, -hw, 0.004])
    joint = f"{name}_hinge"
    door.add_joint(name=joint, type=J.mjJNT_HINGE, axis=[0, 0, 1], range=[0, math.radians(115)], damping=0.3,
                   frictionloss=0.05)
    door_h = height - 0.008
    door.add_geom(type=G.mjGEOM_BOX, size=[wall / 2, hw, door_h / 2], pos=[-wall / 2, hw, door_h / 2],
                  rgba=list(door_rgba), mass=0.6)
    handle_gap, bar_r, bar_len = 0.06, 0.007, 0.09
    handle_y = width - 0.065
    bar_x = -wall - handle_gap - bar_r
    door.add_geom(name=f"{name}_handle", type=G.mjGEOM_CAPSULE, size=[bar_r, bar_len / 2, 0],
                  pos=[bar_x, handle_y, handle_height], quat=[0.7071, 0.7071, 0, 0], rgba=[0.2, 0.2, 0.2, 1], mass=0.05)
    for side in (-1, 1):
        door.add_geom(type=G.mjGEOM_BOX, size=[(handle_gap + bar_r) / 2, 0.006, 0.006],
                      pos=[-wall - (handle_gap + bar_r) / 2, handle_y + side * bar_len / 2, handle_height],
                      rgba=[0.2, 0.2, 0.2, 1], mass=0.02)
    # Where a hook (closed fingertips) goes: behind the bar, in the door frame.
    door.add_site(name=f"{name}_hook", pos=[-wall - handle_gap / 2, handle_y, handle_height], size=[0.004] * 3, group=4)
    return Asset(name, "cabinet", name, "steel", [f"{name}_hook"], articulation={"door": joint},
                 parts={"door": f"{name}_door", "handle": f"{name}_handle", "hook": f"{name}_hook"},
                 params={"width": width, "depth": depth, "height": height, "handle_y": handle_y,
                         "hook_x": -wall - handle_gap / 2, "handle_height": handle_height})


def target_zone(parent, name: str, pos, half_size=(0.06, 0.06), rgba=(0.1, 0.7, 0.2, 0.6)) -> Asset:
    """A painted rectangle on the bench (visual only) that marks where something must be placed."""
    body = parent.add_body(name=name, pos=list(pos))
    body.add_geom(type=G.mjGEOM_BOX, size=[half_size[0], half_size[1], 0.0005], pos=[0, 0, 0.0005],
                  rgba=list(rgba), contype=0, conaffinity=0)
    return Asset(name, "target_zone", name, "paint", params={"half_x": half_size[0], "half_y": half_size[1]})
