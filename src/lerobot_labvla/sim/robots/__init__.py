"""Robot profiles: MjSpec builders for arms that the scene attaches to the bench, by name.

    from lerobot_labvla.sim.robots import get_profile
    get_profile("ur5e").arms[0].dof   # 6

Model files come from pip wheels (franky-sim, robosuite, gym-aloha) and are found without importing
those packages; a missing wheel fails when the profile is built, with the pip command that fixes it.
"""

from __future__ import annotations

from lerobot_labvla.errors import LabVLAError
from lerobot_labvla.sim.robots.profile import ArmSpec, RobotProfile


def profiles() -> dict[str, RobotProfile]:
    """Every profile by name (cheap: nothing is loaded until a profile's `build()` runs)."""
    from lerobot_labvla.sim.robots.aloha import ALOHA
    from lerobot_labvla.sim.robots.fr3 import FR3
    from lerobot_labvla.sim.robots.robosuite_arms import KINOVA3, UR5E, XARM7

    return {p.name: p for p in (FR3, UR5E, XARM7, KINOVA3, ALOHA)}


def get_profile(name: str | RobotProfile) -> RobotProfile:
    if isinstance(name, RobotProfile):
        return name
    known = profiles()
    if name not in known:
        raise LabVLAError(f"unknown robot {name!r}; expected one of {', '.join(known)} (see `labvla-genesis robots`)")
    return known[name]


__all__ = ["ArmSpec", "RobotProfile", "get_profile", "profiles"]
