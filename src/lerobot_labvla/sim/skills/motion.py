"""A motion cursor: smooth, speed-limited TCP targets that skills compose."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from lerobot_labvla.sim.control import axis_angle_quat, quat_error, quat_mul
from lerobot_labvla.sim.scene import Sim

TOP_DOWN = np.array([0.0, 1.0, 0.0, 0.0])  # TCP z down, fingers closing along world y


@dataclass
class Target:
    """One control-step target: TCP position (m), orientation (w, x, y, z), gripper opening in [0, 1]."""

    pos: np.ndarray
    quat: np.ndarray
    gripper: float


class Motion:
    """Holds the current target and yields speed-limited steps towards new ones."""

    def __init__(self, sim: Sim, speed: float = 0.012, angular_speed: float = 0.06):
        self.sim = sim
        self.pos, self.quat, self.gripper = sim.tcp_pos, sim.tcp_quat, 1.0
        self.speed, self.angular_speed = speed, angular_speed

    def target(self) -> Target:
        return Target(self.pos.copy(), self.quat.copy(), self.gripper)

    def move(self, pos, quat=None, speed: float | None = None, tol: float = 0.008,
             max_steps: int = 120) -> Iterator[Target]:
        """Straight line to `pos` (and slerp-like turn to `quat`), then wait until the TCP is within `tol`."""
        goal_pos = np.asarray(pos, float)
        goal_quat = self.quat if quat is None else np.asarray(quat, float)
        speed = speed or self.speed
        for _ in range(max_steps):
            d = goal_pos - self.pos
            n = np.linalg.norm(d)
            self.pos = goal_pos.copy() if n <= speed else self.pos + d * (speed / n)
            rot = quat_error(goal_quat, self.quat)
            a = np.linalg.norm(rot)
            if a <= self.angular_speed:
                self.quat = goal_quat.copy()
            else:
                self.quat = quat_mul(axis_angle_quat(rot * (self.angular_speed / a)), self.quat)
            yield self.target()
            if n <= speed and a <= self.angular_speed and np.linalg.norm(self.sim.tcp_pos - goal_pos) < tol:
                return

    def grip(self, opening: float, steps: int = 12) -> Iterator[Target]:
        """Command the gripper and hold the pose for `steps` control steps."""
        self.gripper = float(opening)
        for _ in range(steps):
            yield self.target()

    def hold(self, steps: int) -> Iterator[Target]:
        for _ in range(steps):
            yield self.target()
