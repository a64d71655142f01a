"""Teleoperator configs for recording with `--robot.type=franka` (registered at plugin import)."""

from __future__ import annotations

from dataclasses import dataclass, field

from lerobot.teleoperators.config import TeleoperatorConfig


@TeleoperatorConfig.register_subclass("spacemouse")
@dataclass(kw_only=True)
class SpaceMouseConfig(TeleoperatorConfig):
    """A 3Dconnexion SpaceMouse (USB HID) driving `--robot.control_mode=ee_delta`.

    Emits LeRobot's end-effector teleop keys (`delta_x/y/z` in [-1, 1], `gripper` 0 close / 1 stay /
    2 open; left button closes, right button opens), like `keyboard_ee` and `gamepad`.
    """

    vendor_id: int = 0x256F  # 3Dconnexion; older devices use 0x046D (Logitech)
    product_id: int | None = None  # None = the first 3Dconnexion device found
    deadzone: float = 0.05  # fraction of full scale ignored around rest
    full_scale: float = 350.0  # raw axis value read as 1.0
    axis_signs: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0])  # flip an axis for your mounting


@TeleoperatorConfig.register_subclass("franka_scripted")
@dataclass(kw_only=True)
class ScriptedTeleopConfig(TeleoperatorConfig):
    """A deterministic teleoperator for tests and benchmarks: no device, same actions every run.

    `joint` mode: holds each of `waypoints` (joint offsets [rad] added to `base`) for
    `steps_per_waypoint` calls, with the gripper alternating between open and `closed_width`.
    `ee_delta` mode: cycles +x, +y, -x, -y end-effector steps with the same hold length.
    """

    mode: str = "joint"  # "joint" | "ee_delta"
    # franky-sim's start pose; a real arm starts at your own home pose (set --teleop.base).
    base: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0, -1.57, 0.0, 1.57, 0.785])
    waypoints: list[list[float]] = field(
        default_factory=lambda: [
            [0.15, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            [0.15, 0.15, 0.0, -0.15, 0.0, 0.1, 0.0],
            [-0.1, 0.1, 0.1, -0.1, 0.1, 0.1, 0.2],
            [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        ]
    )
    steps_per_waypoint: int = 20
    open_width: float = 0.08
    closed_width: float = 0.02

    def __post_init__(self):
        if self.mode not in ("joint", "ee_delta"):
            raise ValueError(f"--teleop.mode={self.mode!r}: expected 'joint' or 'ee_delta'")
        if len(self.base) != 7 or any(len(w) != 7 for w in self.waypoints) or not self.waypoints:
            raise ValueError("--teleop.base and every --teleop.waypoints entry must have 7 joint values [rad]")
        if self.steps_per_waypoint < 1:
            raise ValueError(f"--teleop.steps_per_waypoint={self.steps_per_waypoint}: expected >= 1")
