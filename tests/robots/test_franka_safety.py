"""Safety limits, configs and teleop mappings, without a robot."""

from __future__ import annotations

import struct
from types import SimpleNamespace

import numpy as np
import pytest

import lerobot_labvla.plugin  # noqa: F401  (registers franka / spacemouse / franka_scripted)
from lerobot_labvla.robots.franka.config_franka import FrankaConfig
from lerobot_labvla.robots.franka.config_teleop import ScriptedTeleopConfig, SpaceMouseConfig
from lerobot_labvla.robots.franka.franka import EE_DELTA_KEYS, STATE_KEYS, Franka
from lerobot_labvla.robots.franka.safety import JOINT_LIMITS, FrankaSafetyError, SafetyLimits
from lerobot_labvla.robots.franka.teleop import ScriptedTeleop, parse_spacemouse_report, spacemouse_action

HOME = np.array([0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785, 0.08])


def limits(max_relative_target=0.1) -> SafetyLimits:
    return SafetyLimits.build("fr3", 0.05, max_relative_target, STATE_KEYS, [0.15, -0.6, 0.02], [0.85, 0.6, 0.9])


def test_joint_target_beyond_the_limit_is_refused_and_names_the_joint():
    target = HOME.copy()
    target[3] = JOINT_LIMITS["fr3"][1][3] - 0.01  # inside the hardware range, inside the 5 cm margin
    with pytest.raises(FrankaSafetyError, match=r"joint_4\.pos=-0\.16.*outside the allowed range"):
        limits().check_joint_target(target, HOME)
    target[3] = -2.0
    target[5] = JOINT_LIMITS["fr3"][0][5]  # joint 6's lower limit is 0.5445 on the FR3, not negative
    with pytest.raises(FrankaSafetyError, match=r"joint_6\.pos"):
        limits().check_joint_target(target, HOME)


def test_non_finite_target_is_refused():
    target = HOME.copy()
    target[2] = np.nan
    with pytest.raises(FrankaSafetyError, match="non-finite"):
        limits().check_joint_target(target, HOME)


def test_max_relative_target_clips_each_joint_step_but_not_the_gripper():
    target = HOME + np.array([0.3, -0.02, 0.0, 0.0, 0.0, -0.5, 0.0, -0.08])
    out = limits(0.1).check_joint_target(target, HOME)
    np.testing.assert_allclose(out - HOME, [0.1, -0.02, 0, 0, 0, -0.1, 0, -0.08])
    per_joint = limits({"joint_1": 0.05}).check_joint_target(target, HOME)
    np.testing.assert_allclose(per_joint - HOME, [0.05, -0.02, 0, 0, 0, -0.5, 0, -0.08])
    np.testing.assert_allclose(limits(None).check_joint_target(target, HOME), target)


def test_workspace_box_clips_teleop_targets_and_refuses_joint_targets():
    lim = limits()
    np.testing.assert_allclose(lim.check_ee_position([1.2, 0.0, -0.1], clip=True), [0.85, 0.0, 0.02])
    np.testing.assert_allclose(lim.check_ee_position([0.5, 0.1, 0.3], clip=False), [0.5, 0.1, 0.3])
    with pytest.raises(FrankaSafetyError, match="outside the workspace box"):
        lim.check_ee_position([0.5, 0.1, 0.0], clip=False)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"control_mode": "cartesian"}, "control_mode='cartesian'"),
        ({"relative_dynamics_factor": 0.0}, "relative_dynamics_factor=0.0"),
        ({"max_joint_velocity": -1.0}, "max_joint_velocity"),
    ],
)
def test_bad_config_values_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FrankaConfig(**kwargs)


def test_bad_workspace_and_arm_are_named():
    with pytest.raises(ValueError, match="workspace box"):
        Franka(FrankaConfig(workspace_min=[0.5, 0.0, 0.0], workspace_max=[0.4, 1.0, 1.0]))
    with pytest.raises(ValueError, match="--robot.arm='ur5'"):
        Franka(FrankaConfig(arm="ur5"))


def test_features_follow_lerobot_conventions_and_the_labutopia_layout():
    robot = Franka(FrankaConfig())
    assert list(robot.observation_features) == [f"joint_{i}.pos" for i in range(1, 8)] + ["gripper.pos"]
    assert list(robot.action_features) == list(robot.observation_features)  # 8-dim state = 8-dim action
    assert robot.cameras == {} and not robot.is_connected
    ee = Franka(FrankaConfig(control_mode="ee_delta"))
    assert list(ee.action_features) == EE_DELTA_KEYS


def test_lerobot_keyboard_ee_and_gamepad_teleops_emit_the_ee_delta_keys():
    from lerobot.teleoperators.gamepad.configuration_gamepad import GamepadTeleopConfig
    from lerobot.teleoperators.gamepad.teleop_gamepad import GamepadTeleop
    from lerobot.teleoperators.keyboard.configuration_keyboard import KeyboardEndEffectorTeleopConfig
    from lerobot.teleoperators.keyboard.teleop_keyboard import KeyboardEndEffectorTeleop

    # Their constructors need pynput / a gamepad; the property only reads the config, so read it unbound.
    robot = Franka(FrankaConfig(control_mode="ee_delta"))
    for cls, cfg in ((KeyboardEndEffectorTeleop, KeyboardEndEffectorTeleopConfig), (GamepadTeleop, GamepadTeleopConfig)):
        features = cls.action_features.fget(SimpleNamespace(config=cfg(use_gripper=True)))
        assert list(features["names"]) == list(robot.action_features)


def test_scripted_teleop_holds_each_waypoint_and_alternates_the_gripper():
    cfg = ScriptedTeleopConfig(steps_per_waypoint=3)
    teleop = ScriptedTeleop(cfg)
    actions = [teleop.get_action() for _ in range(7)]
    assert list(actions[0]) == STATE_KEYS
    q = np.array([[a[k] for k in STATE_KEYS] for a in actions])
    np.testing.assert_allclose(q[0, :7], np.add(cfg.base, cfg.waypoints[0]))
    np.testing.assert_allclose(q[3, :7], np.add(cfg.base, cfg.waypoints[1]))
    assert (q[0] == q[2]).all() and not (q[2] == q[3]).all()
    assert q[0, 7] == cfg.open_width and q[3, 7] == cfg.closed_width and q[6, 7] == cfg.open_width


def test_spacemouse_reports_map_to_robot_frame_deltas_and_buttons():
    cfg = SpaceMouseConfig()
    state = {"axes": [0] * 6, "buttons": 0}
    # pushing the cap away from the user (HID -y) moves the robot forward (+x); pressing it down (+z) moves it down
    parse_spacemouse_report(bytes([1]) + struct.pack("<6h", 0, -350, 175, 10, 20, 30), state)
    assert state["axes"] == [0, -350, 175, 10, 20, 30]
    act = spacemouse_action(state, cfg)
    assert act["delta_x"] == pytest.approx(1.0) and act["delta_y"] == 0.0 and act["delta_z"] == pytest.approx(-0.5)
    assert act["gripper"] == 1.0  # no button: stay
    parse_spacemouse_report(bytes([3, 1, 0]), state)
    assert spacemouse_action(state, cfg)["gripper"] == 0.0  # left button closes
    parse_spacemouse_report(bytes([3, 2, 0]), state)
    assert spacemouse_action(state, cfg)["gripper"] == 2.0  # right button opens
    parse_spacemouse_report(bytes([1]) + struct.pack("<3h", 10, 10, 10), state)  # old 7-byte report, inside deadzone
    act = spacemouse_action(state, cfg)
    assert (act["delta_x"], act["delta_y"], act["delta_z"]) == (0.0, 0.0, 0.0)
    assert state["axes"][3:] == [10, 20, 30]  # rotation untouched by a translation-only report
