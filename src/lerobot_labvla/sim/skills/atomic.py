"""pick, place, pour, press, open, close, move: each a generator of `Target`s over a `Motion`.

Skills read positions from the sim at the moment they need them (closed loop), so they work on
any layout and object size a scene recipe produces.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from lerobot_labvla.sim.control import axis_angle_quat, quat_mul
from lerobot_labvla.sim.skills.motion import TOP_DOWN, Motion, Target

CLEAR_Z = 0.22  # TCP height for carrying things across the bench (m above the bench top)
CARRY_SPEED = 0.008  # m per control step while carrying a held object sideways
LIFT_OFF = 0.02  # m lifted slowly right after a grasp (see pick)


def move(m: Motion, pos, quat=None) -> Iterator[Target]:
    """Free-space move of the TCP."""
    yield from m.move(pos, quat)


def pick(m: Motion, obj: str, lift: float = 0.15, yaw: float = 0.0) -> Iterator[Target]:
    """Top-down grasp at the object's grasp site (fingers closing along world y rotated by `yaw`), then lift."""
    sim = m.sim
    grasp = sim.site_pos(sim.assets[obj].graspable_sites[0])
    quat = quat_mul(axis_angle_quat(np.array([0.0, 0.0, yaw])), TOP_DOWN)
    yield from m.grip(1.0, steps=1)
    yield from m.move([grasp[0], grasp[1], max(grasp[2] + 0.12, CLEAR_Z)], quat)
    grasp = sim.site_pos(sim.assets[obj].graspable_sites[0])
    yield from m.move([grasp[0], grasp[1], grasp[2] + 0.03], speed=0.008)
    yield from m.move(grasp, speed=0.004, tol=0.005, max_steps=40)
    yield from m.grip(0.0, steps=10)
    # Lift off gently, then at carry speed: starting at 8 mm per control step saturated the FR3's 12 Nm wrist
    # servos for a few steps, the hand pitched and the beaker pivoted between the pads (RoboGenesis
    # pick-and-place on the FR3: 9 of 50 rollouts lost it; 1 with this start).
    yield from m.move(m.pos + [0, 0, LIFT_OFF], speed=0.002)
    yield from m.move(m.pos + [0, 0, lift - LIFT_OFF], speed=0.008)


def place(m: Motion, obj: str, xy, surface_z: float = 0.0) -> Iterator[Target]:
    """Carry a held object above `xy`, lower it onto a surface at `surface_z`, release, retreat."""
    sim = m.sim
    # Keep the offset between the TCP and the object's base that the grasp produced.
    offset = m.sim.tcp_pos - sim.body_pos(obj)
    up = max(m.pos[2], CLEAR_Z)
    yield from m.move([m.pos[0], m.pos[1], up])
    # Carried slower than free moves: a held vessel pivots in the pads when the arm jerks.
    yield from m.move([xy[0] + offset[0], xy[1] + offset[1], up], speed=CARRY_SPEED, max_steps=200)
    yield from m.move([xy[0] + offset[0], xy[1] + offset[1], surface_z + offset[2] + 0.03], speed=0.008)
    yield from m.move([xy[0] + offset[0], xy[1] + offset[1], surface_z + offset[2] + 0.004], speed=0.003,
                      max_steps=30)
    yield from m.grip(1.0, steps=10)
    yield from m.move(m.pos + [0, 0, 0.12], speed=0.008)


def pour(m: Motion, src: str, dst: str, tilt: float = 2.1) -> Iterator[Target]:
    """With `src` held (picked with `yaw=PI/2`), bring its lip over `dst`, roll it about world x, hold, roll back.

    With the fingers closing along x, the mouth turns towards +y/-y, away from the fingers, and the
    FR3 wrist can roll there over most of the bench (pitching about y runs joint 6 into its limit).
    Pouring towards +y is the well-conditioned direction.
    """
    sim = m.sim
    d = sim.body_pos(dst)
    a_src, a_dst = sim.assets[src], sim.assets[dst]
    side = 1.0 if d[1] >= sim.body_pos(src)[1] else -1.0
    tcp_above_base = sim.tcp_pos[2] - sim.body_pos(src)[2]
    rim_above_tcp = a_src.params["height"] - tcp_above_base
    # Rolling by `tilt` puts the lip about (radius*|cos| + rim*sin) sideways of the TCP.
    lip = a_src.params["radius"] * abs(math.cos(tilt)) + rim_above_tcp * math.sin(tilt)
    z = a_dst.params["height"] + tcp_above_base + 0.015  # the upright source clears the target's rim
    # Particles leave the lip with some speed: aim the lip at the near half of the target.
    pose = np.array([d[0], d[1] - side * (lip + 0.35 * a_dst.params["radius"]), z])
    yield from m.move([m.pos[0], m.pos[1], max(m.pos[2], CLEAR_Z)])
    yield from m.move([pose[0], pose[1], max(m.pos[2], z + 0.03)])
    yield from m.move(pose)
    upright = m.quat.copy()
    tilted = quat_mul(axis_angle_quat(np.array([-side * tilt, 0.0, 0.0])), upright)
    fast, m.angular_speed = m.angular_speed, 0.035
    yield from m.move(pose, tilted, max_steps=100)
    yield from m.hold(25)
    yield from m.move(pose, upright, max_steps=100)
    m.angular_speed = fast


def press(m: Motion, device: str, depth: float = 1.0) -> Iterator[Target]:
    """Push the device's button straight down with closed fingers until its latch fires, then retreat."""
    sim = m.sim
    a = sim.assets[device]
    top = sim.site_pos(a.graspable_sites[0])
    yield from m.grip(0.0, steps=1)
    yield from m.move([top[0], top[1], max(top[2] + 0.12, CLEAR_Z)], TOP_DOWN)
    yield from m.move([top[0], top[1], top[2] + 0.02], speed=0.008)
    bottom = top[2] - depth * a.params["travel"] - 0.004
    for _ in range(40):
        m.pos = np.array([top[0], top[1], max(m.pos[2] - 0.003, bottom)])
        yield m.target()
        if sim.device_on.get(device, False):
            break
    yield from m.hold(3)
    yield from m.move([top[0], top[1], top[2] + 0.10], speed=0.01)


def _door_base_yaw(sim, cabinet: str) -> float:
    """World yaw of the door's frame at hinge angle 0 (the cabinet may stand turned on the bench)."""
    a = sim.assets[cabinet]
    mat = sim.data.body(a.parts["door"]).xmat
    return math.atan2(mat[3], mat[0]) - sim.joint_qpos(a.articulation["door"])


def open_door(m: Motion, cabinet: str, angle: float = 1.25) -> Iterator[Target]:
    """Hook the closed fingertips behind the bar handle and pull it round the hinge to `angle` rad."""
    sim = m.sim
    a = sim.assets[cabinet]
    hinge_joint = a.articulation["door"]
    door_body = sim.data.body(a.parts["door"])
    hook = sim.site_pos(a.graspable_sites[0])
    base = _door_base_yaw(sim, cabinet)

    def along_door(theta: float) -> np.ndarray:
        # Top-down, the hand's long side parallel to the door: the palm stays clear of its top edge.
        return quat_mul(axis_angle_quat(np.array([0.0, 0.0, base + theta])), TOP_DOWN)

    yield from m.grip(0.0, steps=1)
    yield from m.move([hook[0], hook[1], max(hook[2] + 0.15, CLEAR_Z + 0.05)], along_door(0.0))
    # Only the fingertip pads (1.7 cm tall, centred on the TCP) collide: put them level with the bar.
    yield from m.move([hook[0], hook[1], hook[2] - 0.003], speed=0.008)
    # Pull along the arc: aim a little ahead of the current angle, in the door's hinge frame.
    hinge = door_body.xpos.copy()
    local = np.array([a.params["hook_x"] - 0.01, a.params["handle_y"]])
    history: list[float] = []
    for _ in range(150):
        theta = sim.joint_qpos(hinge_joint)
        history.append(theta)
        if theta >= angle or (len(history) > 15 and theta - history[-15] < 0.01):  # reached, or stalled
            break
        ahead = min(theta + 0.25, angle + 0.1)
        c, s = math.cos(base + ahead), math.sin(base + ahead)
        xy = hinge[:2] + np.array([c * local[0] - s * local[1], s * local[0] + c * local[1]])
        step = xy - m.pos[:2]
        n = np.linalg.norm(step)
        if n > 0.01:
            step *= 0.01 / n
        m.pos = np.array([m.pos[0] + step[0], m.pos[1] + step[1], hook[2] - 0.003])
        m.quat = along_door(theta)
        yield m.target()
    yield from m.hold(3)
    yield from m.move(m.pos + [0, 0, 0.12], speed=0.01)


def close_door(m: Motion, cabinet: str, angle: float = 0.1) -> Iterator[Target]:
    """Push the open door shut from its outer face near the free edge."""
    sim = m.sim
    a = sim.assets[cabinet]
    hinge_joint = a.articulation["door"]
    hinge = sim.data.body(a.parts["door"]).xpos.copy()
    base = _door_base_yaw(sim, cabinet)
    radius = a.params["handle_y"] - 0.03
    z = a.params["handle_height"] - 0.05
    yield from m.grip(0.0, steps=1)

    def on_arc(theta: float, out: float) -> np.ndarray:
        # A point `out` in front of the door's outer face (-x of the door frame) at `radius` from the hinge.
        c, s = math.cos(base + theta), math.sin(base + theta)
        lx, ly = -0.012 - out, radius
        return hinge[:2] + np.array([c * lx - s * ly, s * lx + c * ly])

    theta = sim.joint_qpos(hinge_joint)
    # Come in from outside the swept area, beyond the free edge, then push back round the hinge.
    start = on_arc(theta + 0.35, 0.04)
    yield from m.move([start[0], start[1], CLEAR_Z + 0.05], TOP_DOWN)
    yield from m.move([start[0], start[1], z], speed=0.01)
    for _ in range(150):
        theta = sim.joint_qpos(hinge_joint)
        if theta <= angle:
            break
        xy = on_arc(max(theta - 0.25, -0.1), 0.0)
        step = xy - m.pos[:2]
        n = np.linalg.norm(step)
        if n > 0.01:
            step *= 0.01 / n
        m.pos = np.array([m.pos[0] + step[0], m.pos[1] + step[1], z])
        yield m.target()
    yield from m.move(m.pos + [-0.05, 0, 0.1], speed=0.01)


SKILLS = {"pick": pick, "place": place, "pour": pour, "press": press, "open": open_door, "close": close_door,
          "move": move}
