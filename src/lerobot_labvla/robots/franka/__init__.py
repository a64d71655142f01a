"""Franka FR3 / Panda for LeRobot: `--robot.type=franka`, `--teleop.type=spacemouse | franka_scripted`.

Only the configs are imported here (LeRobot's registries need them before parsing flags); the
robot and teleop classes are found by LeRobot from the config module names, and import franky
lazily, on connect.
"""

from lerobot_labvla.robots.franka.config_franka import FrankaConfig
from lerobot_labvla.robots.franka.config_teleop import ScriptedTeleopConfig, SpaceMouseConfig

__all__ = ["FrankaConfig", "ScriptedTeleopConfig", "SpaceMouseConfig"]
