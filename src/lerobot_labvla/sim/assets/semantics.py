"""What an asset is, in the words that skills, success checkers and annotations use."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Asset:
    """Semantics of one object in a scene; `body` is the MuJoCo body name of its root."""

    name: str
    category: str  # beaker, flask, graduated_cylinder, test_tube, rack, bottle, hot_plate, cabinet, ...
    body: str
    material: str = "glass"
    graspable_sites: list[str] = field(default_factory=list)
    volume_ml: float = 0.0
    articulation: dict[str, str] = field(default_factory=dict)  # role -> joint name ("door" -> hinge)
    parts: dict[str, str] = field(default_factory=dict)  # role -> geom/site/body name ("indicator" -> geom)
    params: dict[str, float] = field(default_factory=dict)  # sizes a skill needs (radius, height, ...)
