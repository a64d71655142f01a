"""Atomic skills (scripted motion generators) and the physical success checkers that judge them.

A skill is a generator over `Target`s (absolute TCP pose + gripper opening), closed-loop on the
sim state; `ArmController` (or an env's delta-action adapter) turns each target into servo commands.
"""

from lerobot_labvla.sim.skills.atomic import SKILLS, close_door, move, open_door, pick, place, pour, press
from lerobot_labvla.sim.skills.checkers import (
    button_pressed,
    door_angle,
    door_open,
    lifted_and_held,
    particles_inside,
    resting_in_region,
)
from lerobot_labvla.sim.skills.motion import Motion, Target

__all__ = [
    "SKILLS",
    "Motion",
    "Target",
    "button_pressed",
    "close_door",
    "door_angle",
    "door_open",
    "lifted_and_held",
    "move",
    "open_door",
    "particles_inside",
    "pick",
    "place",
    "pour",
    "press",
    "resting_in_region",
]
