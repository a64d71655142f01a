"""Franka FR3 + hand, from the MJCF and meshes that the `franky-sim` wheel ships (Apache-2.0).

The shipped XML points `meshdir` at a folder that does not exist, so the spec is loaded with
`MjSpec.from_file` and the mesh dir is fixed in code. Display meshes (372k vertices) are dropped
and the collision meshes are shown instead: a 224² frame costs ~2 ms instead of ~170 ms.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import mujoco
import numpy as np

from lerobot_labvla.errors import LabVLAError

ARM_JOINTS = tuple(f"fr3_joint{i}" for i in range(1, 8))
HOME_QPOS = np.array([0.0, -0.3, 0.0, -2.2, 0.0, 1.9, 0.7853], dtype=np.float64)
GRIPPER_MAX_WIDTH = 0.08  # m, both fingers fully open
TCP_OFFSET = 0.1034  # m from the hand origin to the point between the fingertips
# The shipped hand servo grips with ~3 N: a tilted beaker slips out. x10 keeps it through a pour.
GRIPPER_GAIN_SCALE = 10.0
PAD_CLASSES = tuple(f"fingertip_pad_collision_{i}" for i in range(1, 6))


def franky_sim_assets() -> Path:
    """The `assets/` folder of the installed franky-sim wheel (found without importing it)."""
    spec = importlib.util.find_spec("franky_sim")
    if spec is None or not spec.submodule_search_locations:
        raise LabVLAError(
            "the FR3 model comes from the `franky-sim` wheel, which is not installed; "
            'fix: pip install --no-deps "franky-sim==1.0.4"'
        )
    return Path(next(iter(spec.submodule_search_locations))) / "assets"


def fr3_spec() -> mujoco.MjSpec:
    """FR3 with a `tcp` site and a `wrist_cam`, low-poly, gravity-compensated, stronger gripper."""
    assets = franky_sim_assets()
    spec = mujoco.MjSpec.from_file(str(assets / "fr3.xml"))
    spec.meshdir = str(assets / "meshes")
    hand = spec.body("hand")
    hand.add_site(name="tcp", pos=[0, 0, TCP_OFFSET], size=[0.005] * 3, group=4)
    # Looks along the fingers from the back of the hand (checked in a render).
    hand.add_camera(name="wrist_cam", pos=[0.06, 0, 0.02], quat=[0, 0.7071, 0.7071, 0], fovy=70)
    for geom in list(spec.geoms):
        cls = geom.classname.name
        if cls.endswith("visual"):
            spec.delete(geom)
        elif "collision" in cls or "fingertip" in cls:
            geom.group = 0
            geom.rgba = [0.92, 0.92, 0.92, 1]
    used = {g.meshname for g in spec.geoms}
    for mesh in list(spec.meshes):
        if mesh.name not in used:
            spec.delete(mesh)
    for body in spec.bodies:
        body.gravcomp = 1.0  # position servos alone sag ~7 mm
    for act in spec.actuators:
        if act.name == "hand":
            act.gainprm[0] *= GRIPPER_GAIN_SCALE
            act.biasprm[1] *= GRIPPER_GAIN_SCALE
            act.biasprm[2] *= GRIPPER_GAIN_SCALE
    # Grip only with the flat rubber pads (the slanted finger mesh squeezes round objects out
    # sideways), stiff and grippy, with torsional/rolling friction (condim 6) so a held vessel
    # neither creeps nor spins; the scene uses elliptic cones + impratio 10 for the same reason.
    for geom in spec.geoms:
        if geom.classname.name in PAD_CLASSES[1:]:
            geom.contype = geom.conaffinity = 0  # tiny pads whose edges wedge round objects sideways
        elif geom.classname.name == PAD_CLASSES[0]:
            geom.friction = [2.0, 0.05, 0.001]
            geom.condim = 6
            geom.solref = [0.004, 1.0]
            geom.solimp = [0.95, 0.99, 0.001, 0.5, 2.0]
        elif geom.meshname == "finger_0":
            geom.contype = geom.conaffinity = 0
    for key in list(spec.keys):
        spec.delete(key)
    return spec


def _fr3_profile():
    from lerobot_labvla.sim.robots.profile import ArmSpec, RobotProfile

    arm = ArmSpec(name="main", joints=ARM_JOINTS, actuators=ARM_JOINTS, home=tuple(HOME_QPOS.tolist()),
                  gripper=(("hand", 0.0, 255.0),), fingers=(("finger_joint1", 0.0, 0.04), ("finger_joint2", 0.0, 0.04)),
                  finger_bodies=("left_finger", "right_finger"), hand="hand", max_width=GRIPPER_MAX_WIDTH)
    return RobotProfile(name="fr3", title="Franka Research 3 + Franka hand", arms=(arm,),
                        gripper="Franka hand, parallel jaw 0-80 mm, tendon servo", grip_force=140.0,
                        licence="Apache-2.0 (franky-sim; MJCF from MuJoCo Menagerie, meshes from franka_description)",
                        package="franky-sim", reach=(0.28, 0.78), build=fr3_spec)


FR3 = _fr3_profile()
