"""Robot layouts: names, kinds and limits of the dimensions of state/action vectors.

`lerobot` knows only what `meta/info.json` says (feature `names`); `robointer_droid` maps the
DROID-style Franka layout (7 joint positions, 1 gripper position, 6 cartesian pose values) to
named dimensions with the Franka Panda's joint limits, so scan/stats can check ranges.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lerobot_labvla.errors import LabVLAError


@dataclass(frozen=True)
class Dim:
    """One dimension of a vector feature."""

    name: str
    kind: str = "other"  # joint | gripper | cartesian | other
    low: float | None = None
    high: float | None = None


# Franka Emika Panda joint limits [rad] (Franka "Robot and interface specifications"), as in DROID.
PANDA_JOINT_LIMITS = (
    (-2.8973, 2.8973),
    (-1.7628, 1.7628),
    (-2.8973, 2.8973),
    (-3.0718, -0.0698),
    (-2.8973, 2.8973),
    (-0.0175, 3.7525),
    (-2.8973, 2.8973),
)
_JOINTS = tuple(Dim(f"joint_{i}", "joint", lo, hi) for i, (lo, hi) in enumerate(PANDA_JOINT_LIMITS))
# DROID stores the gripper as a normalized opening in [0, 1].
_GRIPPER = (Dim("gripper", "gripper", 0.0, 1.0),)
# Cartesian end-effector pose in the robot base frame: position [m] within the arm's reach
# (0.855 m, rounded up), orientation as euler angles [rad].
_CARTESIAN = tuple(Dim(n, "cartesian", -1.2, 1.2) for n in ("x", "y", "z")) + tuple(
    Dim(n, "cartesian", -math.pi, math.pi) for n in ("roll", "pitch", "yaw")
)
# Flat DROID vectors, keyed by size: joints (7), joints+gripper (8), joints+gripper+cartesian (14).
_DROID_BY_SIZE = {7: _JOINTS, 8: _JOINTS + _GRIPPER, 14: _JOINTS + _GRIPPER + _CARTESIAN}
# DROID's split features (`observation.state.joint_position`, `action.gripper_position`, ...).
_DROID_BY_SUFFIX = {"joint_position": _JOINTS, "gripper_position": _GRIPPER, "cartesian_position": _CARTESIAN}

SCHEMAS = ("lerobot", "robointer_droid")


def check_schema(name: str) -> str:
    if name not in SCHEMAS:
        raise LabVLAError(f"unknown --schema {name!r}; choose one of {', '.join(SCHEMAS)}")
    return name


def feature_dims(schema: str, key: str, names: list[str]) -> list[Dim]:
    """The named dimensions of feature `key` (whose LeRobot dim names are `names`) under `schema`."""
    check_schema(schema)
    if schema == "robointer_droid" and (key.startswith("observation.state") or key.startswith("action")):
        for suffix, dims in _DROID_BY_SUFFIX.items():
            if key.endswith(suffix) and len(dims) == len(names):
                return list(dims)
        if key in ("observation.state", "action") and len(names) in _DROID_BY_SIZE:
            return list(_DROID_BY_SIZE[len(names)])
    return [Dim(n, "gripper" if "gripper" in n.lower() else "other") for n in names]


def has_limits(dims: list[Dim]) -> bool:
    return any(d.low is not None or d.high is not None for d in dims)
