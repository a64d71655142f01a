"""ALOHA: two ViperX 300 S arms facing each other across the bench, from the MJCF + meshes in the `gym-aloha` wheel (Apache-2.0).

gym-aloha's arm file (`vx300s_left.xml`) is an include fragment with its meshes in a sibling
include; we read both, drop the `vx300s_left/` name prefix, and attach the arm twice (`left/`,
`right/`). Changes to the shipped model, and why:
- joint friction (30-60 N m of frictionloss, tuned for gym-aloha's own low-gain servos) removed and
  gravity compensated, so position servos track at the sim core's gains;
- one force-limited position servo (at most GRIP_FORCE N) drives both fingers, mirrored;
- a `hand` frame with the TCP site between the fingertips and a `wrist_cam`, oriented as the FR3's
  (z along the approach, y the closing axis), so top-down skills run unchanged.
"""

from __future__ import annotations

import importlib.util
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import mujoco

from lerobot_labvla.errors import LabVLAError
from lerobot_labvla.sim.robots.profile import ArmSpec, RobotProfile, position_servos

JOINTS = ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate")
KP = (1500.0, 2500.0, 1500.0, 400.0, 400.0, 300.0)
FINGER_RANGE = (0.021, 0.057)  # m, the shipped slide range of each finger (closed .. open)
GRIP_FORCE = 25.0  # N, the servo's force limit
PAD = 0.003  # m, pad thickness
PAD_FACE = 0.0224  # m, the finger mesh's inner face from the finger joint axis (measured on the mesh)
TCP_X = 0.144  # m from the gripper link origin along the approach axis: 1 cm inside the fingertips
# The arms stand on the bench's long edges at x = MOUNT_X, facing each other along y (the ALOHA layout).
MOUNT_X, MOUNT_Y = 0.42, 0.46
# TCP straight down 0.21 m out from the base, 0.20 m over the bench, fingers closing along world y.
HOME = {"left": (0.0, -0.425, 0.492, 0.0, 1.503, 1.571), "right": (0.0, -0.425, 0.492, 0.0, 1.503, -1.571)}


def gym_aloha_assets() -> Path:
    spec = importlib.util.find_spec("gym_aloha")
    if spec is None or not spec.submodule_search_locations:
        raise LabVLAError('the ALOHA ViperX model comes from the `gym-aloha` wheel, which is not installed; '
                          'fix: pip install --no-deps "gym-aloha==0.1.5"')
    return Path(next(iter(spec.submodule_search_locations))) / "assets"


def vx300s_spec() -> mujoco.MjSpec:
    """One ViperX 300 S (names without prefix), its base body `vx300s` at the origin facing +x."""
    assets = gym_aloha_assets()
    deps = ET.fromstring((assets / "vx300s_dependencies.xml").read_text())
    arm = (assets / "vx300s_left.xml").read_text().replace("vx300s_left/", "")
    body = ET.fromstring(arm).find("body")
    body.set("name", "vx300s")
    body.set("pos", "0 0 0")
    root = ET.Element("mujoco", model="vx300s")
    ET.SubElement(root, "compiler", angle="radian", meshdir=str(assets))
    root.append(deps.find("asset"))
    ET.SubElement(root, "worldbody").append(body)
    spec = mujoco.MjSpec.from_string(ET.tostring(root, encoding="unicode"))
    spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    for cam in list(spec.cameras):
        spec.delete(cam)
    for site in list(spec.sites):
        spec.delete(site)
    for j in spec.joints:
        j.frictionloss = 0.0
        j.armature = 0.05
        j.damping[0] = 0.5 if j.type == mujoco.mjtJoint.mjJNT_SLIDE else 2.0
    position_servos(spec, JOINTS, KP)
    # One servo drives both fingers, mirrored by a joint equality (as the real gripper's single motor): two
    # independent force-limited fingers let a held object float along the closing axis when the arm accelerates.
    eq = spec.add_equality(type=mujoco.mjtEq.mjEQ_JOINT, name="finger_mirror", name1="right_finger", name2="left_finger")
    eq.data[:5] = [0.0, -1.0, 0.0, 0.0, 0.0]
    eq.solref = [0.004, 1.0]  # stiff: a soft mirror lets the driven finger shove the object sideways
    a = spec.add_actuator(name="gripper", target="left_finger", trntype=mujoco.mjtTrn.mjTRN_JOINT)
    a.set_to_position(kp=1000.0, kv=100.0)  # closes at < 0.5 m/s: faster pads tunnel through a 4 mm glass wall
    a.forcerange = [-GRIP_FORCE, GRIP_FORCE]
    a.forcelimited = mujoco.mjtLimited.mjLIMITED_TRUE
    for g in spec.geoms:
        g.rgba = [0.15, 0.15, 0.15, 1] if "finger" not in g.name else [0.85, 0.85, 0.85, 1]
        if "finger" in g.name:  # MuJoCo collides the convex hull of these L-shaped meshes: it swallows thin walls
            g.contype = g.conaffinity = 0
    # Flat rubber pads on the fingers' inner faces at the TCP (what grips, as on the FR3 hand).
    for finger, side in (("left_finger_link", 1.0), ("right_finger_link", -1.0)):
        spec.body(finger).add_geom(name=f"{finger}_pad", type=mujoco.mjtGeom.mjGEOM_BOX, size=[0.012, PAD / 2, 0.01],
                                   pos=[TCP_X - 0.0687, -side * (PAD_FACE + PAD / 2), 0], rgba=[0.2, 0.2, 0.2, 1],
                                   friction=[2.0, 0.05, 0.001], condim=6, solref=[0.004, 1.0],
                                   solimp=[0.95, 0.99, 0.001, 0.5, 2.0], mass=0.005)
    for b in spec.bodies:
        b.gravcomp = 1.0
    # The hand frame: z along the approach (gripper x), y the closing axis (as the FR3 hand).
    hand = spec.body("gripper_link").add_body(name="hand", quat=[math.cos(math.pi / 4), 0, math.sin(math.pi / 4), 0])
    hand.add_site(name="tcp", pos=[0, 0, TCP_X], size=[0.005] * 3, group=4)
    hand.add_camera(name="wrist_cam", pos=[0.07, 0, 0.0], quat=[0, 0.7071, 0.7071, 0], fovy=75)
    return spec


def aloha_spec() -> mujoco.MjSpec:
    """Both arms under one `base` body: left at (MOUNT_X, +MOUNT_Y) facing -y, right at (MOUNT_X, -MOUNT_Y) facing +y."""
    spec = mujoco.MjSpec()
    spec.compiler.degree = False
    spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST  # the scene's: no attach conflict
    base = spec.worldbody.add_body(name="base")
    for side, y, yaw in (("left", MOUNT_Y, -math.pi / 2), ("right", -MOUNT_Y, math.pi / 2)):
        frame = base.add_frame(pos=[MOUNT_X, y, 0.0], quat=[math.cos(yaw / 2), 0, 0, math.sin(yaw / 2)])
        frame.attach_body(vx300s_spec().body("vx300s"), f"{side}/", "")
    return spec


def _arm(side: str) -> ArmSpec:
    p = f"{side}/"
    return ArmSpec(name=side, joints=tuple(p + j for j in JOINTS), actuators=tuple(p + j for j in JOINTS), home=HOME[side],
                   gripper=((p + "gripper", FINGER_RANGE[0] - 0.01, FINGER_RANGE[1]),),
                   fingers=((p + "left_finger", FINGER_RANGE[0], FINGER_RANGE[1]),
                            (p + "right_finger", -FINGER_RANGE[0], -FINGER_RANGE[1])),
                   finger_bodies=(p + "left_finger_link", p + "right_finger_link"), hand=p + "hand", tcp=p + "tcp",
                   wrist_camera=p + "wrist_cam", max_width=0.069 - 2 * PAD,
                   width_at_closed=-0.003 - 2 * PAD)  # pad gap, measured on the finger meshes


ALOHA = RobotProfile(
    name="aloha", title="ALOHA bimanual: two Trossen ViperX 300 S", arms=(_arm("left"), _arm("right")),
    gripper="ViperX parallel fingers 0-63 mm, one force-limited servo", grip_force=GRIP_FORCE,
    licence="Apache-2.0 (the gym-aloha wheel's licence, which covers the ALOHA sim MJCF + ViperX meshes it ships)",
    package="gym-aloha", reach=(0.15, 0.55), build=aloha_spec,
    mounts=((MOUNT_X, MOUNT_Y), (MOUNT_X, -MOUNT_Y)), equalities=("left/finger_mirror", "right/finger_mirror"))
