"""Liquid as small low-friction spheres: cheap, pourable and countable (<= 30 stay stable)."""

from __future__ import annotations

import mujoco

from lerobot_labvla.sim.assets.semantics import Asset

G = mujoco.mjtGeom
MAX_PARTICLES = 30  # more destabilize contact at our step size (shared/research/labutopia-sim.md)


def particles(parent, name: str, base_pos, inner_radius: float, count: int = 30, radius: float = 0.006,
              rgba=(0.2, 0.45, 0.95, 1)) -> Asset:
    """`count` free spheres stacked 2x2 per layer above `base_pos` (inside a vessel's inner radius)."""
    if not 0 < count <= MAX_PARTICLES:
        raise ValueError(f"particle count {count} out of range; expected 1..{MAX_PARTICLES}")
    off = min(radius * 1.3, inner_radius - radius - 0.002)
    bodies = []
    for i in range(count):
        layer, k = divmod(i, 4)
        dx, dy = (off if k in (1, 2) else -off), (off if k >= 2 else -off)
        body = parent.add_body(name=f"{name}{i}",
                               pos=[base_pos[0] + dx, base_pos[1] + dy, base_pos[2] + radius + 0.001 + layer * 2.05 * radius])
        body.add_freejoint()
        body.add_geom(type=G.mjGEOM_SPHERE, size=[radius, 0, 0], mass=0.002, condim=1, friction=[0.05, 0.005, 1e-4],
                      solref=[0.01, 1], rgba=list(rgba))
        bodies.append(f"{name}{i}")
    return Asset(name, "liquid", bodies[0], "water", volume_ml=round(count * 4.19 * radius**3 * 1e6, 1),
                 parts={f"p{i}": b for i, b in enumerate(bodies)}, params={"count": count, "radius": radius})
