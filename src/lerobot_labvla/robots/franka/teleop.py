"""Teleoperators for the Franka: a SpaceMouse (USB HID) and a scripted one for tests.

LeRobot's own `keyboard_ee` and `gamepad` teleops already emit the keys `ee_delta` mode takes
(`delta_x/y/z`, `gripper`), so they drive the Franka unchanged; the SpaceMouse emits the same keys.
"""

from __future__ import annotations

import logging
import struct
import threading
from typing import Any

import numpy as np
from lerobot.teleoperators.teleoperator import Teleoperator

from lerobot_labvla.errors import LabVLAError
from lerobot_labvla.robots.franka.config_teleop import ScriptedTeleopConfig, SpaceMouseConfig
from lerobot_labvla.robots.franka.franka import EE_DELTA_KEYS, GRIPPER_CLOSE, GRIPPER_OPEN, GRIPPER_STAY, STATE_KEYS

logger = logging.getLogger(__name__)


class ScriptedTeleop(Teleoperator):
    """Deterministic joint or end-effector commands (see `ScriptedTeleopConfig`)."""

    config_class = ScriptedTeleopConfig
    name = "franka_scripted"

    def __init__(self, config: ScriptedTeleopConfig):
        super().__init__(config)
        self.config = config
        self._connected = False
        self._step = 0

    @property
    def action_features(self) -> dict[str, type]:
        return dict.fromkeys(STATE_KEYS if self.config.mode == "joint" else EE_DELTA_KEYS, float)

    @property
    def feedback_features(self) -> dict:
        return {}

    @property
    def is_connected(self) -> bool:
        return self._connected

    @property
    def is_calibrated(self) -> bool:
        return True

    def connect(self, calibrate: bool = True) -> None:
        self._connected = True

    def calibrate(self) -> None:
        pass

    def configure(self) -> None:
        pass

    def get_action(self) -> dict[str, float]:
        cfg = self.config
        k = self._step // cfg.steps_per_waypoint
        self._step += 1
        if cfg.mode == "joint":
            q = np.asarray(cfg.base) + np.asarray(cfg.waypoints[k % len(cfg.waypoints)])
            width = cfg.open_width if k % 2 == 0 else cfg.closed_width
            return dict(zip(STATE_KEYS, [*q.tolist(), width], strict=True))
        dx, dy = [(1.0, 0.0), (0.0, 1.0), (-1.0, 0.0), (0.0, -1.0)][k % 4]
        return {"delta_x": dx, "delta_y": dy, "delta_z": 0.0, "gripper": float(GRIPPER_OPEN if k % 2 else GRIPPER_CLOSE)}

    def send_feedback(self, feedback: dict[str, Any]) -> None:
        pass

    def disconnect(self) -> None:
        self._connected = False


def parse_spacemouse_report(report: bytes | list[int], state: dict[str, Any]) -> None:
    """Update `state` (`axes`: (6,) raw, `buttons`: int) from one SpaceMouse HID input report.

    Report 1 carries x, y, z (little-endian int16); on newer devices (13 bytes) also roll, pitch, yaw.
    Report 2 carries roll, pitch, yaw; report 3 the button bitmask.
    """
    data = bytes(report)
    if not data:
        return
    if data[0] == 1 and len(data) >= 7:
        n = 6 if len(data) >= 13 else 3
        state["axes"][:n] = struct.unpack(f"<{n}h", data[1 : 1 + 2 * n])
    elif data[0] == 2 and len(data) >= 7:
        state["axes"][3:6] = struct.unpack("<3h", data[1:7])
    elif data[0] == 3 and len(data) >= 2:
        state["buttons"] = int.from_bytes(data[1:3] if len(data) >= 3 else data[1:2], "little")


def spacemouse_action(state: dict[str, Any], config: SpaceMouseConfig) -> dict[str, float]:
    """Map a SpaceMouse state to LeRobot's end-effector teleop action (robot base frame axes)."""
    raw = np.asarray(state["axes"][:3], dtype=np.float64) / config.full_scale
    # HID axes: x right, y towards the user, z down; robot base: x forward, y left, z up.
    delta = np.array([-raw[1], -raw[0], -raw[2]]) * np.asarray(config.axis_signs)
    delta = np.where(np.abs(delta) < config.deadzone, 0.0, np.clip(delta, -1.0, 1.0))
    buttons = state["buttons"]
    grip = GRIPPER_CLOSE if buttons & 1 else GRIPPER_OPEN if buttons & 2 else GRIPPER_STAY
    return {"delta_x": float(delta[0]), "delta_y": float(delta[1]), "delta_z": float(delta[2]), "gripper": float(grip)}


class SpaceMouse(Teleoperator):
    """3Dconnexion SpaceMouse through hidapi; a reader thread keeps the latest state."""

    config_class = SpaceMouseConfig
    name = "spacemouse"

    def __init__(self, config: SpaceMouseConfig):
        super().__init__(config)
        self.config = config
        self._device = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._state: dict[str, Any] = {"axes": [0] * 6, "buttons": 0}

    @property
    def action_features(self) -> dict[str, type]:
        return dict.fromkeys(EE_DELTA_KEYS, float)

    @property
    def feedback_features(self) -> dict:
        return {}

    @property
    def is_connected(self) -> bool:
        return self._device is not None

    @property
    def is_calibrated(self) -> bool:
        return True

    def connect(self, calibrate: bool = True) -> None:
        if self._device is not None:
            return
        try:
            import hid
        except ImportError as e:
            raise LabVLAError(f"--teleop.type=spacemouse needs hidapi ({e}); pip install hidapi") from None
        found = [d for d in hid.enumerate(self.config.vendor_id, self.config.product_id or 0)]
        if not found:
            raise LabVLAError(
                f"no SpaceMouse found (USB vendor {self.config.vendor_id:#06x}); plug it in, check udev permissions "
                "on /dev/hidraw*, or set --teleop.vendor_id=0x046d for older Logitech-branded devices"
            )
        device = hid.device()
        device.open_path(found[0]["path"])
        device.set_nonblocking(False)
        self._device = device
        self._stop.clear()
        self._thread = threading.Thread(target=self._read_loop, name="spacemouse", daemon=True)
        self._thread.start()
        logger.info("SpaceMouse connected: %s", found[0].get("product_string"))

    def _read_loop(self) -> None:
        while not self._stop.is_set():
            report = self._device.read(64, 50)
            if report:
                with self._lock:
                    parse_spacemouse_report(report, self._state)

    def calibrate(self) -> None:
        pass

    def configure(self) -> None:
        pass

    def get_action(self) -> dict[str, float]:
        if self._device is None:
            raise LabVLAError("SpaceMouse is not connected; call connect() first")
        with self._lock:
            state = {"axes": list(self._state["axes"]), "buttons": self._state["buttons"]}
        return spacemouse_action(state, self.config)

    def send_feedback(self, feedback: dict[str, Any]) -> None:
        pass

    def disconnect(self) -> None:
        if self._device is None:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        self._device.close()
        self._device = None
