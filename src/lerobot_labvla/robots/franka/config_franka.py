"""`--robot.type=franka`: the configuration LeRobot parses (registered at plugin import)."""

from __future__ import annotations

from dataclasses import dataclass, field

from lerobot.cameras import CameraConfig
from lerobot.robots.config import RobotConfig


@RobotConfig.register_subclass("franka")
@dataclass(kw_only=True)
class FrankaConfig(RobotConfig):
    """A Franka FR3 / Panda arm with the Franka Hand, driven through franky (libfranka).

    State and `joint` actions: `joint_1.pos` ... `joint_7.pos` [rad] + `gripper.pos` (finger opening
    width [m]), the 8-dim layout of LabUtopia and official LabVLA. `ee_delta` actions are LeRobot's
    end-effector teleop keys (`delta_x/y/z` in [-1, 1] x `ee_step_m`, `gripper` 0 close / 1 stay / 2 open).
    """

    ip: str = "172.16.0.2"  # the FCI address set in Desk
    control_mode: str = "joint"  # "joint" | "ee_delta"
    arm: str = "fr3"  # "fr3" | "panda": selects the joint limits
    cameras: dict[str, CameraConfig] = field(default_factory=dict)

    # Safety (README "Franka: safety defaults"). Radians per step for joints, like LeRobot's arms.
    max_relative_target: float | dict[str, float] | None = 0.1
    relative_dynamics_factor: float = 0.1  # scales franky's velocity / acceleration / jerk limits, (0, 1]
    max_joint_velocity: float = 1.0  # rad/s, every joint (also capped by the datasheet limit)
    joint_limit_margin: float = 0.05  # rad kept free at both ends of every joint range
    workspace_min: list[float] = field(default_factory=lambda: [0.15, -0.6, 0.02])  # m, base frame
    workspace_max: list[float] = field(default_factory=lambda: [0.85, 0.6, 0.9])
    max_automatic_recoveries: int = 1  # per connection; the next fault raises FrankaFaultError
    collision_torque_threshold: float = 20.0  # Nm, libfranka's reflex threshold (franky's default)
    collision_force_threshold: float = 30.0  # N

    ee_step_m: float = 0.01  # end-effector step per unit of teleop delta, per control step
    use_gripper: bool = True
    gripper_speed: float = 0.1  # m/s
    gripper_deadband_m: float = 0.002  # smaller width changes are not sent (the hand moves in 0.1 mm steps)

    # libfranka wants a PREEMPT_RT kernel; false runs anyway (franky-sim, or tests on loopback).
    realtime: bool = True
    # On disconnect, wait this long for the last target to be reached before stopping (0 = stop now).
    settle_timeout_s: float = 10.0

    def __post_init__(self):
        super().__post_init__()
        if self.control_mode not in ("joint", "ee_delta"):
            raise ValueError(f"--robot.control_mode={self.control_mode!r}: expected 'joint' or 'ee_delta'")
        if not 0.0 < self.relative_dynamics_factor <= 1.0:
            raise ValueError(
                f"--robot.relative_dynamics_factor={self.relative_dynamics_factor}: expected a value in (0, 1]"
            )
        if self.max_joint_velocity <= 0:
            raise ValueError(f"--robot.max_joint_velocity={self.max_joint_velocity}: expected a positive rad/s")
        if self.max_automatic_recoveries < 0:
            raise ValueError(f"--robot.max_automatic_recoveries={self.max_automatic_recoveries}: expected >= 0")
