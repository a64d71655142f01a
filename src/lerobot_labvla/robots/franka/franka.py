"""`Franka`: a LeRobot `Robot` on franky-control (libfranka), for `lerobot-record` and `lerobot-rollout`.

Commands stream at the recording rate as franky motions that replace each other without stopping
(`return_when_finished=False`): franky's trajectory generator plans from the current state to the
new target within the velocity / acceleration / jerk limits scaled by the relative dynamics factor,
and libfranka sends the setpoints at 1 kHz. Every target first passes `SafetyLimits`.

Faults: libfranka reports a reflex or control error as `franky.ControlException` on the next call
(`poll_motion` / `move`). The robot then refuses commands until it is recovered: the first fault of
a connection is recovered automatically (`recover_from_errors`, the command of that step is
dropped), any further one raises `FrankaFaultError`. Nothing is sent between a fault and its recovery.
"""

from __future__ import annotations

import logging
import time
from functools import cached_property
from typing import Any

import numpy as np
from lerobot.cameras import make_cameras_from_configs
from lerobot.robots.robot import Robot

from lerobot_labvla.errors import LabVLAError
from lerobot_labvla.robots.franka.config_franka import FrankaConfig
from lerobot_labvla.robots.franka.safety import JOINT_VELOCITY_LIMITS, FrankaFaultError, SafetyLimits

logger = logging.getLogger(__name__)

JOINT_KEYS = [f"joint_{i}.pos" for i in range(1, 8)]
STATE_KEYS = [*JOINT_KEYS, "gripper.pos"]
EE_DELTA_KEYS = ["delta_x", "delta_y", "delta_z", "gripper"]  # LeRobot's keyboard_ee / gamepad teleops
GRIPPER_CLOSE, GRIPPER_STAY, GRIPPER_OPEN = 0, 1, 2  # their gripper convention
_PARKED_GRIPPERS: list = []  # see Franka._release_gripper


def _import_franky():
    try:
        import franky
    except ImportError as e:
        raise LabVLAError(
            f"--robot.type=franka needs franky-control ({e}); install it with pip install 'lerobot_policy_labvla[franka]'"
        ) from None
    return franky


class Franka(Robot):
    """Franka FR3 / Panda + Franka Hand through franky; see the module docstring for the control model."""

    config_class = FrankaConfig
    name = "franka"

    def __init__(self, config: FrankaConfig):
        super().__init__(config)
        self.config = config
        self.cameras = make_cameras_from_configs(config.cameras)
        self.limits = SafetyLimits.build(
            config.arm,
            config.joint_limit_margin,
            config.max_relative_target if config.control_mode == "joint" else None,
            STATE_KEYS,
            config.workspace_min,
            config.workspace_max,
        )
        self._franky = None
        self._robot = None
        self._gripper = None
        self._gripper_future = None
        self._gripper_target: float | None = None
        self._gripper_pending: float | None = None
        self._max_width = 0.08
        self._faulted = False
        self.recoveries = 0
        self._planner_errors = 0
        self._motion_kind: str | None = None  # "joint" | "cartesian" while a streamed motion runs
        self._ee_target: np.ndarray | None = None
        self._ee_quaternion: np.ndarray | None = None

    # --- features --------------------------------------------------------------------------
    @cached_property
    def _cameras_ft(self) -> dict[str, tuple]:
        return {name: (cfg.height, cfg.width, 3) for name, cfg in self.config.cameras.items()}

    @property
    def observation_features(self) -> dict[str, type | tuple]:
        return {**dict.fromkeys(STATE_KEYS, float), **self._cameras_ft}

    @property
    def action_features(self) -> dict[str, type]:
        keys = STATE_KEYS if self.config.control_mode == "joint" else EE_DELTA_KEYS
        return dict.fromkeys(keys, float)

    @property
    def is_connected(self) -> bool:
        return self._robot is not None and all(cam.is_connected for cam in self.cameras.values())

    @property
    def is_calibrated(self) -> bool:
        return True  # the arm's encoders are absolute; nothing to calibrate

    def calibrate(self) -> None:
        pass

    # --- connection ------------------------------------------------------------------------
    def connect(self, calibrate: bool = True) -> None:
        """Connect arm, hand and cameras; a second call is a no-op. Never moves the robot."""
        if self.is_connected:
            return
        franky = self._franky = _import_franky()
        cfg = self.config
        if self._robot is None:
            realtime = franky.RealtimeConfig.Enforce if cfg.realtime else franky.RealtimeConfig.Ignore
            try:
                robot = franky.Robot(
                    cfg.ip,
                    relative_dynamics_factor=cfg.relative_dynamics_factor,
                    default_torque_threshold=cfg.collision_torque_threshold,
                    default_force_threshold=cfg.collision_force_threshold,
                    realtime_config=realtime,
                )
            except franky.Exception as e:
                hint = (
                    "run on a PREEMPT_RT kernel or pass --robot.realtime=false"
                    if isinstance(e, franky.RealtimeException)
                    else "check the cable, that FCI is activated in Desk, and --robot.ip"
                )
                raise LabVLAError(f"cannot connect to the Franka at {cfg.ip}: {e}; {hint}") from None
            # franky's own ceiling (the Panda datasheet) may be below the FR3's; never ask for more than either.
            ceiling = np.minimum(JOINT_VELOCITY_LIMITS[cfg.arm], np.asarray(robot.joint_velocity_limit.max))
            vmax = np.minimum(cfg.max_joint_velocity, ceiling)
            robot.joint_velocity_limit.set(vmax.tolist())
            if robot.has_errors:
                # A fault left over from an earlier session: clearing it moves nothing.
                logger.warning("Franka at %s reports errors from before; running automatic error recovery", cfg.ip)
                if not robot.recover_from_errors():
                    raise FrankaFaultError(
                        f"the Franka at {cfg.ip} is in an error state that automatic recovery cannot clear; "
                        "unlock the joints / release the stop in Desk and connect again"
                    )
            self._robot = robot
            if cfg.use_gripper:
                try:
                    self._gripper = franky.Gripper(cfg.ip)
                    self._max_width = float(self._gripper.max_width) or self._max_width
                except franky.Exception as e:
                    self._robot = None
                    raise LabVLAError(
                        f"cannot reach the Franka Hand at {cfg.ip}: {e}; pass --robot.use_gripper=false for an arm "
                        "without the hand"
                    ) from None
            self._faulted = False
            self.recoveries = 0
        for cam in self.cameras.values():
            if not cam.is_connected:
                cam.connect()
        logger.info("Franka at %s connected (%s mode, dynamics factor %.2f)", cfg.ip, cfg.control_mode, cfg.relative_dynamics_factor)

    def configure(self) -> None:
        pass

    def disconnect(self) -> None:
        """Let the last target settle (up to `settle_timeout_s`), stop, and release everything; idempotent."""
        robot = self._robot
        if robot is not None:
            try:
                if self._motion_kind is not None and not self._faulted:
                    self._finish_motion(robot, self.config.settle_timeout_s)
                if self._motion_kind is not None or robot.poll_motion():
                    robot.stop()
            except (self._franky.Exception, LabVLAError) as e:
                logger.warning("Franka at %s on disconnect: %s", self.config.ip, e)
            finally:
                self._robot = None
            self._release_gripper()
        self._motion_kind = None
        self._gripper = self._gripper_future = None
        self._gripper_target = self._gripper_pending = None
        for cam in self.cameras.values():
            if cam.is_connected:
                cam.disconnect()

    # --- observation -----------------------------------------------------------------------
    def _require_connected(self) -> None:
        if self._robot is None:
            raise LabVLAError(f"{self} is not connected; call connect() first")

    def _gripper_width(self) -> float:
        return float(self._gripper.width) if self._gripper is not None else 0.0

    def get_observation(self) -> dict[str, Any]:
        """Joint angles [rad], gripper width [m], and the latest frame of each camera (uint8 HWC)."""
        self._require_connected()
        q = np.asarray(self._robot.current_joint_positions, dtype=np.float64)
        obs: dict[str, Any] = {k: float(v) for k, v in zip(JOINT_KEYS, q, strict=True)}
        obs["gripper.pos"] = self._gripper_width()
        for name, cam in self.cameras.items():
            obs[name] = cam.read_latest()
        return obs

    # --- action ----------------------------------------------------------------------------
    def send_action(self, action: dict[str, Any]) -> dict[str, Any]:
        """Check `action` against the safety limits and stream it; returns what was actually commanded."""
        self._require_connected()
        if self._faulted:
            raise FrankaFaultError(
                f"the Franka at {self.config.ip} faulted and was not recovered; no command is sent until it is "
                "(clear the error in Desk, then reconnect)"
            )
        if not self._check_fault():
            return self._hold_action()
        q = np.asarray(self._robot.current_joint_positions, dtype=np.float64)
        current = np.append(q, self._gripper_width())
        if all(k in action for k in STATE_KEYS):  # joint targets (also rollout's return to the start pose)
            target = np.array([float(action[k]) for k in STATE_KEYS])
            target = self.limits.check_joint_target(target, current)
            self._check_joint_workspace(target[:7])
            self._stream_joint(target[:7])
            self._command_gripper(target[7])
            return dict(zip(STATE_KEYS, target.tolist(), strict=True))
        if self.config.control_mode == "ee_delta" and all(k in action for k in EE_DELTA_KEYS[:3]):
            return self._send_ee_delta(action)
        raise LabVLAError(
            f"franka ({self.config.control_mode} mode) got action keys {sorted(action)}; expected "
            f"{STATE_KEYS if self.config.control_mode == 'joint' else EE_DELTA_KEYS}"
        )

    def _send_ee_delta(self, action: dict[str, Any]) -> dict[str, Any]:
        franky = self._franky
        delta = np.clip([float(action[k]) for k in EE_DELTA_KEYS[:3]], -1.0, 1.0)
        if self._motion_kind != "cartesian" or self._ee_target is None:
            pose = self._robot.current_pose.end_effector_pose
            self._ee_target = np.asarray(pose.translation, dtype=np.float64)
            self._ee_quaternion = np.asarray(pose.quaternion, dtype=np.float64)
        target = self.limits.check_ee_position(self._ee_target + delta * self.config.ee_step_m, clip=True)
        if self._motion_kind == "joint":
            self._finish_motion(self._robot, 2.0)
        motion = franky.CartesianMotion(
            franky.RobotPose(franky.Affine(target, self._ee_quaternion)), return_when_finished=False
        )
        self._move(motion, "cartesian")
        self._ee_target = target
        grip = int(round(float(action.get("gripper", GRIPPER_STAY))))
        if grip == GRIPPER_CLOSE:
            self._command_gripper(0.0)
        elif grip == GRIPPER_OPEN:
            self._command_gripper(self._max_width)
        return {"delta_x": float(delta[0]), "delta_y": float(delta[1]), "delta_z": float(delta[2]), "gripper": grip}

    def _stream_joint(self, q_target: np.ndarray) -> None:
        franky = self._franky
        if self._motion_kind == "cartesian":
            self._finish_motion(self._robot, 2.0)
        self._move(franky.JointMotion(franky.JointState(q_target), return_when_finished=False), "joint")

    def _move(self, motion, kind: str) -> None:
        try:
            self._robot.move(motion, asynchronous=True)
            self._motion_kind = kind
            self._planner_errors = 0
        except self._franky.ControlException as e:
            self._on_fault(e)
        except RuntimeError as e:
            self._on_planner_error(e)

    def _finish_motion(self, robot, timeout_s: float) -> None:
        """End a streamed motion at its last target: replace it with one that returns when reached."""
        franky = self._franky
        if self._motion_kind == "cartesian" and self._ee_target is not None:
            motion = franky.CartesianMotion(franky.RobotPose(franky.Affine(self._ee_target, self._ee_quaternion)))
        else:
            motion = franky.JointMotion(franky.JointState(robot.state.q_d))
        self._motion_kind = None
        self._ee_target = None
        if timeout_s <= 0:
            return
        try:
            robot.move(motion, asynchronous=True)
            if not robot.join_motion(timeout_s):
                logger.warning("Franka did not reach its last target within %.1f s; stopping", timeout_s)
        except franky.ControlException as e:
            self._on_fault(e)

    def _check_joint_workspace(self, q_target: np.ndarray) -> None:
        franky = self._franky
        state = self._robot.state
        pose = self._robot.model.pose(franky.Frame.EndEffector, q_target, state.F_T_EE, state.EE_T_K)
        self.limits.check_ee_position(np.asarray(pose.translation), clip=False)

    def _command_gripper(self, width: float) -> None:
        """Move the hand to `width` [m] without blocking; while it moves, only the latest target is kept."""
        if self._gripper is None:
            return
        width = float(np.clip(width, 0.0, self._max_width))
        busy = self._gripper_future is not None and not self._gripper_future.wait(0.0)
        if busy:
            self._gripper_pending = width
            return
        if self._gripper_pending is not None:
            width, self._gripper_pending = self._gripper_pending, None
        if self._gripper_target is not None and abs(width - self._gripper_target) < self.config.gripper_deadband_m:
            return
        self._gripper_future = self._gripper.move_async(width, self.config.gripper_speed)
        self._gripper_target = width

    def _wait_gripper(self, timeout_s: float) -> bool:
        """Give a running hand move `timeout_s` to finish (polled: never blocks longer); True when idle."""
        deadline = time.monotonic() + timeout_s
        while self._gripper_future is not None and not self._gripper_future.wait(0.0):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def _release_gripper(self) -> None:
        """Drop the hand connection only once no move is pending.

        franky 2.0 crashes the process (or hangs) when a `Gripper` is destroyed with a move future
        outstanding, so a move still running after 2 s is stopped, and if even that does not finish
        it, the object is parked for the life of the process instead of destroyed.
        """
        if self._gripper is None or self._wait_gripper(2.0):
            return
        logger.warning("Franka Hand still moving 2 s after disconnect; stopping it")
        try:
            self._gripper.stop()
        except self._franky.Exception as e:
            logger.warning("Franka Hand stop: %s", e)
        if not self._wait_gripper(5.0):
            _PARKED_GRIPPERS.append((self._gripper, self._gripper_future))

    def _hold_action(self) -> dict[str, Any]:
        if self.config.control_mode == "ee_delta":
            return {"delta_x": 0.0, "delta_y": 0.0, "delta_z": 0.0, "gripper": GRIPPER_STAY}
        obs = self.get_observation()
        return {k: obs[k] for k in STATE_KEYS}

    # --- faults ----------------------------------------------------------------------------
    def _check_fault(self) -> bool:
        """Raise a fault reported since the last command into `_on_fault`; True when commands may flow."""
        try:
            self._robot.poll_motion()
        except self._franky.ControlException as e:
            self._on_fault(e)
            return False
        except RuntimeError as e:
            self._on_planner_error(e)
            return False
        return True

    def _on_planner_error(self, exc: Exception) -> None:
        """franky's trajectory planner gave up on a target: that motion ended, the arm holds; retry next step."""
        self._motion_kind = None
        self._ee_target = None
        self._planner_errors += 1
        if self._planner_errors >= 3:
            raise FrankaFaultError(
                f"franky's motion planner failed {self._planner_errors} times in a row ({exc}); the Franka at "
                f"{self.config.ip} holds its pose. Check the targets (units, continuity) and reconnect"
            ) from None
        logger.warning("Franka motion planner failed (%s); the arm holds and this step's command was dropped", exc)

    def _on_fault(self, exc: Exception) -> None:
        """Recover the first fault of this connection automatically; raise on any later one."""
        self._faulted = True
        self._motion_kind = None
        self._ee_target = None
        ip = self.config.ip
        if self.recoveries >= self.config.max_automatic_recoveries:
            raise FrankaFaultError(
                f"the Franka at {ip} faulted: {exc}; automatic recovery already used "
                f"{self.recoveries}/{self.config.max_automatic_recoveries} time(s) on this connection, so it stays "
                "stopped. Check the robot and its surroundings, clear the error in Desk, then reconnect"
            ) from None
        logger.warning("Franka at %s faulted (%s); running automatic error recovery", ip, exc)
        try:
            ok = self._robot.recover_from_errors()
        except self._franky.Exception as e:
            ok, exc = False, e
        if not ok:
            raise FrankaFaultError(
                f"the Franka at {ip} faulted ({exc}) and automatic recovery failed; clear the error in Desk, "
                "then reconnect"
            ) from None
        self.recoveries += 1
        self._faulted = False
        logger.warning(
            "Franka at %s recovered (%d of %d automatic recoveries used); this step's command was dropped",
            ip, self.recoveries, self.config.max_automatic_recoveries,
        )
