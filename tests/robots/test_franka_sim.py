"""Our `franka` robot through franky + libfranka against franky-sim on loopback (no mock anywhere)."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest

import lerobot_labvla.plugin  # noqa: F401
from lerobot_labvla.errors import LabVLAError
from lerobot_labvla.robots.franka.config_franka import FrankaConfig
from lerobot_labvla.robots.franka.config_teleop import ScriptedTeleopConfig
from lerobot_labvla.robots.franka.franka import STATE_KEYS, Franka
from lerobot_labvla.robots.franka.safety import FrankaFaultError, FrankaSafetyError
from lerobot_labvla.robots.franka.teleop import ScriptedTeleop

SIM_START = np.array([0.0, 0.0, 0.0, -1.57, 0.0, 1.57, 0.785])  # franky-sim's initial joint angles


def make_robot(host: str, **overrides) -> Franka:
    kw = dict(ip=host, realtime=False, relative_dynamics_factor=0.5, max_joint_velocity=2.0, settle_timeout_s=0.0)
    kw.update(overrides)
    return Franka(FrankaConfig(**kw))


def joints(robot: Franka) -> np.ndarray:
    obs = robot.get_observation()
    return np.array([obs[k] for k in STATE_KEYS])


def stream(robot: Franka, actions, period: float = 0.05) -> None:
    for action in actions:
        t = time.perf_counter()
        robot.send_action(action)
        time.sleep(max(0.0, period - (time.perf_counter() - t)))


def settle(robot: Franka, target: np.ndarray, timeout_s: float = 8.0, tol: float = 0.01) -> np.ndarray:
    """Poll until the joints are within `tol` of `target` (the sim may run slower than real time)."""
    deadline = time.monotonic() + timeout_s
    while True:
        q = joints(robot)
        if np.max(np.abs(q[:7] - target[:7])) < tol or time.monotonic() > deadline:
            return q
        time.sleep(0.1)


def test_connect_observe_and_disconnect_are_idempotent(franky_sim):
    robot = make_robot(franky_sim())
    with pytest.raises(LabVLAError, match="not connected"):
        robot.get_observation()
    robot.connect()
    robot.connect()
    obs = robot.get_observation()
    assert list(obs) == STATE_KEYS
    np.testing.assert_allclose([obs[k] for k in STATE_KEYS[:7]], SIM_START, atol=1e-3)
    assert 0.0 < obs["gripper.pos"] <= 0.081  # the Franka Hand opens to 8 cm; franky-sim starts it half open
    robot.disconnect()
    robot.disconnect()
    assert not robot.is_connected
    robot.connect()  # and again after a disconnect
    assert robot.is_connected
    robot.disconnect()


def test_joint_commands_are_tracked_joint_by_joint(franky_sim):
    robot = make_robot(franky_sim(), max_relative_target=None)
    robot.connect()
    teleop = ScriptedTeleop(ScriptedTeleopConfig(steps_per_waypoint=1))
    for _ in range(3):  # waypoints 1..3 differ joint by joint; a swapped or mis-signed joint fails
        action = teleop.get_action()
        target = np.array([action[k] for k in STATE_KEYS])
        stream(robot, [action] * 5)
        q = settle(robot, target)
        np.testing.assert_allclose(q[:7], target[:7], atol=0.01)
        assert abs(q[7] - target[7]) < 0.005, (q[7], target[7])
    robot.disconnect()


def test_refused_commands_move_nothing(franky_sim):
    robot = make_robot(franky_sim())
    robot.connect()
    before = joints(robot)
    beyond = dict(zip(STATE_KEYS, [*SIM_START, 0.08], strict=True))
    beyond["joint_6.pos"] = 0.3  # below the FR3's joint 6 range (0.5445 rad)
    with pytest.raises(FrankaSafetyError, match=r"joint_6\.pos=0\.3000"):
        robot.send_action(beyond)
    leaning = dict(zip(STATE_KEYS, [*SIM_START, 0.08], strict=True))
    leaning["joint_2.pos"] = 0.1  # end effector 5.6 cm lower: below a floor set just under it
    low = make_robot(robot.config.ip, workspace_min=[0.15, -0.6, 0.5])
    low._robot, low._franky = robot._robot, robot._franky  # same connection, tighter box
    with pytest.raises(FrankaSafetyError, match="outside the workspace box"):
        low.send_action(leaning)
    low._robot = None
    time.sleep(0.5)
    np.testing.assert_allclose(joints(robot), before, atol=1e-3)
    robot.disconnect()


def test_max_relative_target_limits_one_step(franky_sim):
    robot = make_robot(franky_sim(), max_relative_target=0.05)
    robot.connect()
    far = dict(zip(STATE_KEYS, [*(SIM_START + [0.3, 0, 0, 0, 0, 0, 0]), 0.08], strict=True))
    sent = robot.send_action(far)
    assert sent["joint_1.pos"] == pytest.approx(0.05, abs=1e-3)
    q = settle(robot, np.array([sent[k] for k in STATE_KEYS]))
    assert q[0] == pytest.approx(0.05, abs=0.01)  # the arm went to the clipped target, not to 0.3
    robot.disconnect()


def test_ee_delta_steps_the_commanded_pose_and_stops_at_the_workspace_wall(franky_sim):
    robot = make_robot(franky_sim(), control_mode="ee_delta", ee_step_m=0.01)
    robot.connect()
    start = np.asarray(robot._robot.current_pose.end_effector_pose.translation)
    robot.workspace_wall = start[1] + 0.03
    robot.limits = robot.limits.__class__(
        robot.limits.joint_lower, robot.limits.joint_upper, None, robot.limits.workspace_min,
        np.array([robot.limits.workspace_max[0], start[1] + 0.03, robot.limits.workspace_max[2]]),
    )
    stream(robot, [{"delta_x": 1.0, "delta_y": 0.0, "delta_z": 0.0, "gripper": 1}] * 6)
    stream(robot, [{"delta_x": 0.0, "delta_y": 1.0, "delta_z": -0.5, "gripper": 0}] * 6)
    time.sleep(0.3)
    # libfranka's commanded pose (O_T_EE_c), as the robot side received it
    commanded = np.asarray(robot._robot.state.O_T_EE_c.translation)
    np.testing.assert_allclose(commanded, start + [0.06, 0.03, -0.03], atol=2e-3)
    moved = np.asarray(robot._robot.current_pose.end_effector_pose.translation) - start
    assert moved[0] > 0.03 and moved[1] > 0.01  # and the sim's arm followed
    robot.disconnect()


def test_one_reflex_is_recovered_automatically_and_motion_continues(franky_sim, caplog):
    # Other tests run CLIs in-process that leave the root logger at ERROR; this test reads a warning.
    caplog.set_level(logging.WARNING, logger="lerobot_labvla.robots.franka")
    robot = make_robot(franky_sim(reflex_after=0.3, reflexes=1))
    robot.connect()
    target = np.append(SIM_START + [0.1, 0.1, 0, -0.1, 0, 0, 0], 0.08)
    action = dict(zip(STATE_KEYS, target, strict=True))
    stream(robot, [action] * 60)
    assert robot.recoveries == 1
    assert "recovered (1 of 1 automatic recoveries used)" in caplog.text
    np.testing.assert_allclose(settle(robot, target)[:7], target[:7], atol=0.01)
    robot.disconnect()


def test_second_fault_raises_and_no_command_follows(franky_sim):
    robot = make_robot(franky_sim(reflex_after=0.3, reflexes=2))
    robot.connect()
    action = dict(zip(STATE_KEYS, np.append(SIM_START + [0.3, 0, 0, 0, 0, 0, 0], 0.08), strict=True))
    with pytest.raises(FrankaFaultError, match=r"automatic recovery already used 1/1 time\(s\)"):
        stream(robot, [action] * 200)
    assert robot.recoveries == 1
    time.sleep(1.0)  # franky-sim holds the last desired position, a little ahead of where the reflex hit
    stopped = joints(robot)
    with pytest.raises(FrankaFaultError, match="no command is sent"):
        robot.send_action(action)
    time.sleep(0.5)
    # the refused command sent nothing: the arm stays where it settled
    np.testing.assert_allclose(joints(robot)[:7], stopped[:7], atol=5e-3)
    robot.disconnect()
