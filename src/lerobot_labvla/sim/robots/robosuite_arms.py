"""UR5e, xArm7 and Kinova Gen3 arms from the MJCF + meshes in the `robosuite` wheel (MIT), each with the Franka hand.

robosuite drives its arms with torque motors and its own controllers; we keep only the kinematic
tree, inertias and collision meshes, and put position servos on the joints (the sim core's control
model, like the FR3's). The hand is the FR3's Franka hand from franky-sim (Apache-2.0), mounted on
the arm's flange (`right_hand`): its finger pads are what the skills' grasps were tuned on, and
robosuite's own Robotiq 2F-85 is a closed four-bar linkage that its controllers drive by a
different convention. The hand therefore keeps its tuned grip on every arm.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import mujoco

from lerobot_labvla.errors import LabVLAError
from lerobot_labvla.sim.robots.fr3 import fr3_spec
from lerobot_labvla.sim.robots.profile import ArmSpec, RobotProfile, low_poly, position_servos

LICENCE = "MIT (robosuite, ARISE Initiative); Franka hand: Apache-2.0 (franky-sim / MuJoCo Menagerie)"
HAND = "hand/"  # prefix of the attached Franka hand's names


def robosuite_robots() -> Path:
    """`robosuite/models/assets/robots` of the installed wheel (found without importing robosuite)."""
    spec = importlib.util.find_spec("robosuite")
    if spec is None or not spec.submodule_search_locations:
        raise LabVLAError("the UR5e / xArm7 / Kinova Gen3 models come from the `robosuite` wheel, which is not installed; "
                          'fix: pip install --no-deps "robosuite==1.5.2"')
    return Path(next(iter(spec.submodule_search_locations))) / "models" / "assets" / "robots"


def _arm_with_hand(folder: str, joints: tuple[str, ...], kp: tuple[float, ...]) -> mujoco.MjSpec:
    path = robosuite_robots() / folder
    spec = mujoco.MjSpec.from_file(str(path / "robot.xml"))
    spec.meshdir = str(path)
    spec.compiler.degree = False
    # The scene's (and the attached Franka hand's) integrator: a mismatch makes every attach log a conflict.
    spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    # robosuite marks display meshes as group 1 without contacts; the rest are collision meshes.
    low_poly(spec, lambda g: g.group == 1 and g.contype == 0 and g.conaffinity == 0)
    for cam in list(spec.cameras):  # robosuite's robotview / eye_in_hand; ours is the hand's wrist_cam
        spec.delete(cam)
    for site in list(spec.sites):
        spec.delete(site)
    for j in joints:
        joint = spec.joint(j)
        joint.armature = max(joint.armature, 0.1)  # light wrist links + stiff servos need rotor inertia at dt 5 ms
        joint.damping[0] = max(joint.damping[0], 1.0)
    position_servos(spec, joints, kp)
    hand = fr3_spec().body("hand")
    spec.body("right_hand").add_frame().attach_body(hand, HAND, "")
    for body in spec.bodies:
        body.gravcomp = 1.0
    # A robosuite root is `base` with the arm's own base link below it: keep that name for SceneBuilder.
    return spec


def _arm(joints, home) -> ArmSpec:
    return ArmSpec(name="main", joints=joints, actuators=joints, home=home,
                   gripper=((HAND + "hand", 0.0, 255.0),),
                   fingers=((HAND + "finger_joint1", 0.0, 0.04), (HAND + "finger_joint2", 0.0, 0.04)),
                   finger_bodies=(HAND + "left_finger", HAND + "right_finger"), hand=HAND + "hand",
                   tcp=HAND + "tcp", wrist_camera=HAND + "wrist_cam")


UR5E_JOINTS = ("shoulder_pan_joint", "shoulder_lift_joint", "elbow_joint", "wrist_1_joint", "wrist_2_joint", "wrist_3_joint")
XARM7_JOINTS = tuple(f"joint{i}" for i in range(1, 8))
KINOVA3_JOINTS = tuple(f"Actuator{i}" for i in range(1, 8))
KP6 = (4500.0, 4500.0, 3500.0, 2000.0, 2000.0, 2000.0)
KP7 = (4500.0, 4500.0, 3500.0, 3500.0, 2000.0, 2000.0, 2000.0)

# Home poses: the TCP straight down at about (0.45, 0, 0.30) m, found once with ArmController.ik (60 iterations).
UR5E = RobotProfile(
    name="ur5e", title="Universal Robots UR5e + Franka hand", licence=LICENCE, package="robosuite",
    arms=(_arm(UR5E_JOINTS, (-0.302, -1.716, 1.653, -1.507, -1.571, -1.088)),),
    gripper="Franka hand, parallel jaw 0-80 mm, tendon servo", grip_force=140.0, reach=(0.25, 0.80),
    build=lambda: _arm_with_hand("ur5e", UR5E_JOINTS, KP6))
XARM7 = RobotProfile(
    name="xarm7", title="UFACTORY xArm7 + Franka hand", licence=LICENCE, package="robosuite",
    arms=(_arm(XARM7_JOINTS, (0.097, -0.1, -0.092, 1.296, -0.009, 1.396, -2.348)),),
    gripper="Franka hand, parallel jaw 0-80 mm, tendon servo", grip_force=140.0, reach=(0.25, 0.66),
    build=lambda: _arm_with_hand("xarm7", XARM7_JOINTS, KP7))
KINOVA3 = RobotProfile(
    name="kinova3", title="Kinova Gen3 (7-DoF) + Franka hand", licence=LICENCE, package="robosuite",
    arms=(_arm(KINOVA3_JOINTS, (-0.092, 0.326, 3.284, -1.263, -0.045, -1.555, 0.829)),),
    gripper="Franka hand, parallel jaw 0-80 mm, tendon servo", grip_force=140.0, reach=(0.25, 0.78),
    build=lambda: _arm_with_hand("kinova3", KINOVA3_JOINTS, KP7))
