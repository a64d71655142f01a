"""Procedural lab assets built with `mujoco.MjSpec` from parameters (no files, no downloads).

Every builder adds bodies under a parent and returns an `Asset`: the semantics (category, name,
material, graspable sites, volume, articulation) that skills, checkers and annotations read.
"""

from lerobot_labvla.sim.assets.devices import bench, button_panel, cabinet, hot_plate, target_zone
from lerobot_labvla.sim.assets.glassware import (
    beaker,
    flask,
    graduated_cylinder,
    reagent_bottle,
    test_tube,
    test_tube_rack,
)
from lerobot_labvla.sim.assets.liquid import particles
from lerobot_labvla.sim.assets.semantics import Asset

__all__ = [
    "Asset",
    "beaker",
    "bench",
    "button_panel",
    "cabinet",
    "flask",
    "graduated_cylinder",
    "hot_plate",
    "particles",
    "reagent_bottle",
    "target_zone",
    "test_tube",
    "test_tube_rack",
]
