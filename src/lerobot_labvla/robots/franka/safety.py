"""Franka safety limits, checked on every command before it reaches libfranka (numpy only).

Joint targets outside the arm's joint range (minus a margin) or non-finite values are refused
with an error: they mean wrong units or a broken policy, and clipping would hide that. Steps
larger than `max_relative_target` are clipped, as LeRobot's other arms do. End-effector targets
must lie inside the workspace box: `ee_delta` targets are clipped onto it (a teleoperator pushing
into a wall stops at the wall); joint targets whose end effector would leave it are refused.
Velocity is bounded by franky's trajectory generator (joint velocity limit x relative dynamics
factor), which runs on this computer before any setpoint is sent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lerobot_labvla.errors import LabVLAError

# Joint position limits [rad] from Franka's datasheets (FR3: "Franka Research 3 robot and interface
# specifications"; Panda: libfranka's "Robot and interface specifications").
JOINT_LIMITS = {
    "fr3": (
        (-2.7437, -1.7837, -2.9007, -3.0421, -2.8065, 0.5445, -3.0159),
        (2.7437, 1.7837, 2.9007, -0.1518, 2.8065, 4.5169, 3.0159),
    ),
    "panda": (
        (-2.8973, -1.7628, -2.8973, -3.0718, -2.8973, -0.0175, -2.8973),
        (2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973),
    ),
}
# Joint velocity limits [rad/s] (datasheets); the configured limit may only be lower.
JOINT_VELOCITY_LIMITS = {
    "fr3": (2.62, 2.62, 2.62, 2.62, 5.26, 4.18, 5.26),
    "panda": (2.175, 2.175, 2.175, 2.175, 2.61, 2.61, 2.61),
}


class FrankaSafetyError(LabVLAError):
    """A command was refused by the safety limits; nothing was sent to the robot."""


class FrankaFaultError(LabVLAError):
    """The robot faulted (libfranka reflex / control exception) and is not recovered."""


@dataclass(frozen=True)
class SafetyLimits:
    """The limits every command passes before it is sent (see the module docstring)."""

    joint_lower: np.ndarray  # (7,) rad, margin already applied
    joint_upper: np.ndarray  # (7,)
    max_relative_target: np.ndarray | None  # (8,) per step (7 joints [rad] + gripper [m]); None = no cap
    workspace_min: np.ndarray  # (3,) m, robot base frame
    workspace_max: np.ndarray  # (3,)

    @classmethod
    def build(
        cls,
        arm: str,
        joint_margin: float,
        max_relative_target: float | dict[str, float] | None,
        names: list[str],
        workspace_min: list[float],
        workspace_max: list[float],
    ) -> SafetyLimits:
        if arm not in JOINT_LIMITS:
            raise LabVLAError(f"--robot.arm={arm!r}: expected one of {sorted(JOINT_LIMITS)}")
        lo, hi = (np.asarray(v, dtype=np.float64) for v in JOINT_LIMITS[arm])
        if not 0.0 <= joint_margin < 0.5:
            raise LabVLAError(f"--robot.joint_limit_margin={joint_margin}: expected a value in [0, 0.5) rad")
        wmin, wmax = np.asarray(workspace_min, dtype=np.float64), np.asarray(workspace_max, dtype=np.float64)
        if wmin.shape != (3,) or wmax.shape != (3,) or not np.all(wmin < wmax):
            raise LabVLAError(
                f"workspace box min={workspace_min} max={workspace_max}: expected two [x, y, z] lists in metres "
                "with min < max on every axis"
            )
        cap = None
        if isinstance(max_relative_target, dict):
            unknown = set(max_relative_target) - {n.removesuffix(".pos") for n in names} - set(names)
            if unknown:
                raise LabVLAError(
                    f"--robot.max_relative_target has unknown keys {sorted(unknown)}; expected some of {names}"
                )
            cap = np.array(
                [max_relative_target.get(n, max_relative_target.get(n.removesuffix(".pos"), np.inf)) for n in names]
            )
        elif max_relative_target is not None:
            if max_relative_target <= 0:
                raise LabVLAError(f"--robot.max_relative_target={max_relative_target}: expected a positive value")
            cap = np.full(len(names), float(max_relative_target))
            cap[-1] = np.inf  # the gripper moves at its own speed; a joint cap in rad means nothing for metres
        return cls(lo + joint_margin, hi - joint_margin, cap, wmin, wmax)

    def check_joint_target(self, target: np.ndarray, current: np.ndarray) -> np.ndarray:
        """Refuse non-finite or out-of-range targets, then clip the step. (8,) -> (8,), gripper last."""
        target = np.asarray(target, dtype=np.float64)
        if not np.all(np.isfinite(target)):
            raise FrankaSafetyError(f"refused a non-finite joint target {target.tolist()}; nothing was sent")
        bad = np.flatnonzero((target[:7] < self.joint_lower) | (target[:7] > self.joint_upper))
        if bad.size:
            i = int(bad[0])
            raise FrankaSafetyError(
                f"refused joint_{i + 1}.pos={target[i]:.4f} rad: outside the allowed range "
                f"[{self.joint_lower[i]:.4f}, {self.joint_upper[i]:.4f}] (joint limit minus margin); nothing was sent. "
                "Actions must be absolute joint angles in radians"
            )
        if self.max_relative_target is None:
            return target
        step = np.clip(target - current, -self.max_relative_target, self.max_relative_target)
        return current + step

    def check_ee_position(self, position: np.ndarray, *, clip: bool) -> np.ndarray:
        """Clip an end-effector position (3,) into the workspace box, or refuse it when `clip` is False."""
        position = np.asarray(position, dtype=np.float64)
        if not np.all(np.isfinite(position)):
            raise FrankaSafetyError(f"refused a non-finite end-effector target {position.tolist()}; nothing was sent")
        inside = np.all(position >= self.workspace_min) and np.all(position <= self.workspace_max)
        if inside or clip:
            return np.clip(position, self.workspace_min, self.workspace_max)
        raise FrankaSafetyError(
            f"refused a target whose end effector would be at {np.round(position, 4).tolist()} m, outside the "
            f"workspace box min={self.workspace_min.tolist()} max={self.workspace_max.tolist()}; nothing was sent "
            "(widen --robot.workspace_min/--robot.workspace_max if the box is too small)"
        )
