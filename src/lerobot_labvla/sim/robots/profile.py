"""Robot profiles: what the sim core needs to know about an arm (or two), as data.

A profile names the joints, servos, gripper, TCP site and wrist camera of each arm inside the MjSpec
that its `build` function returns (one root body `base`, attached to the bench by `SceneBuilder`).
Skills and `ArmController` read only these names, so they run unchanged on every profile.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import mujoco
import numpy as np

from lerobot_labvla.errors import LabVLAError


@dataclass(frozen=True)
class ArmSpec:
    """One arm of a profile; every name is relative to the profile's spec (the scene adds `prefix`)."""

    name: str  # "main" for single-arm profiles, "left"/"right" for bimanual ones
    joints: tuple[str, ...]
    actuators: tuple[str, ...]  # position servos, one per joint, same order
    home: tuple[float, ...]  # rad; the TCP points straight down above the bench
    # (actuator, ctrl when closed, ctrl when open): the gripper command maps [0, 1] linearly onto these.
    gripper: tuple[tuple[str, float, float], ...]
    # (joint, qpos when closed, qpos when open) per finger; the width is the sum of |open side| travel.
    fingers: tuple[tuple[str, float, float], ...]
    finger_bodies: tuple[str, str]
    hand: str  # body the TCP site and the wrist camera sit on
    tcp: str = "tcp"
    wrist_camera: str = "wrist_cam"
    max_width: float = 0.08  # m between the fingers when fully open
    width_at_closed: float = 0.0  # m between the fingers at the closed end of the finger joints

    @property
    def dof(self) -> int:
        return len(self.joints)


@dataclass(frozen=True)
class RobotProfile:
    """A robot the sim can build: its arms, gripper, licence and how to build its MjSpec."""

    name: str
    title: str
    arms: tuple[ArmSpec, ...]
    gripper: str  # what closes the fingers, in words
    grip_force: float  # N, the most the gripper squeezes with
    licence: str  # of the model files we load, with where they come from
    package: str  # the pip distribution that ships the model files
    reach: tuple[float, float]  # m, horizontal distance of a top-down grasp from an arm's base
    build: Callable[[], mujoco.MjSpec] = field(repr=False, compare=False)
    mounts: tuple[tuple[float, float], ...] = ((0.0, 0.0),)  # xy of each arm's base relative to the profile base
    equalities: tuple[str, ...] = ()  # robot equality constraints that stay active through `Sim.reset`

    @property
    def bimanual(self) -> bool:
        return len(self.arms) > 1

    @property
    def prefix(self) -> str:
        return f"{self.name}/"

    @property
    def state_dim(self) -> int:
        """joint angles + gripper width, per arm."""
        return sum(a.dof + 1 for a in self.arms)

    @property
    def action_dim(self) -> int:
        """TCP delta (3 translation + 3 rotation) + gripper, per arm."""
        return 7 * len(self.arms)

    def arm(self, name: str | None = None) -> ArmSpec:
        """The arm called `name` (None: the first one)."""
        if name is None:
            return self.arms[0]
        for a in self.arms:
            if a.name == name:
                return a
        raise LabVLAError(f"robot {self.name!r} has no arm {name!r}; its arms: {', '.join(a.name for a in self.arms)}")

    def reachable(self, xy, arm: str | None = None) -> bool:
        """Can `arm` (None: any arm) grasp top-down at bench point `xy` (robot base frame, m)?"""
        arms = [self.arm(arm)] if arm is not None else list(self.arms)
        for a in arms:
            mx, my = self.mounts[self.arms.index(a)]
            if self.reach[0] <= math.hypot(xy[0] - mx, xy[1] - my) <= self.reach[1]:
                return True
        return False


def add_tcp_and_camera(body: mujoco.MjsBody, tcp_pos, cam_pos, cam_quat, fovy: float = 70.0) -> None:
    """The `tcp` site (between the fingertips) and the `wrist_cam` on a hand body."""
    body.add_site(name="tcp", pos=list(tcp_pos), size=[0.005] * 3, group=4)
    body.add_camera(name="wrist_cam", pos=list(cam_pos), quat=list(cam_quat), fovy=fovy)


def position_servos(spec: mujoco.MjSpec, joints, kp, prefix: str = "") -> None:
    """Replace whatever drives `joints` by position servos (kp, kv = kp/10), ctrl range = joint range."""
    for act in list(spec.actuators):
        if act.target in joints:
            spec.delete(act)
    for j, k in zip(joints, kp, strict=True):
        joint = spec.joint(j)
        a = spec.add_actuator(name=prefix + j, target=j, trntype=mujoco.mjtTrn.mjTRN_JOINT)
        a.set_to_position(kp=float(k), kv=float(k) / 10)
        lo, hi = joint.range
        if hi > lo:
            a.ctrlrange = [lo, hi]
            a.ctrllimited = mujoco.mjtLimited.mjLIMITED_TRUE
        a.forcerange = [-10 * k, 10 * k]


def low_poly(spec: mujoco.MjSpec, visual: Callable[[mujoco.MjsGeom], bool], rgba=(0.92, 0.92, 0.92, 1)) -> None:
    """Drop display-only meshes (they cost ~50x render time on a CPU renderer) and show the collision ones."""
    for geom in list(spec.geoms):
        if visual(geom):
            spec.delete(geom)
        else:
            geom.group = 0
            if geom.type == mujoco.mjtGeom.mjGEOM_MESH:
                geom.rgba = list(rgba)
    used = {g.meshname for g in spec.geoms}
    for mesh in list(spec.meshes):
        if mesh.name not in used:
            spec.delete(mesh)


def home_array(arm: ArmSpec) -> np.ndarray:
    return np.asarray(arm.home, dtype=np.float64)
