"""shake: move a held container side to side; the checker counts strokes and spilled liquid."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from lerobot_labvla.sim.scene import Sim
from lerobot_labvla.sim.skills.motion import Motion, Target


@dataclass
class ShakeRecord:
    """The held object's lateral track during the skill (filled in while it runs)."""

    y: list[float] = field(default_factory=list)
    held_steps: int = 0
    steps: int = 0

    def update(self, sim: Sim, obj: str) -> None:
        self.y.append(float(sim.body_pos(obj)[1]))
        self.steps += 1
        self.held_steps += int(sim.fingers_touch(obj))

    def strokes(self, amplitude: float) -> int:
        """Full back-and-forth cycles whose excursions each reach >= 60% of `amplitude` from the centre."""
        if not self.y:
            return 0
        y = np.asarray(self.y) - np.median(self.y)
        side, half = 0, 0
        for v in y:
            s = 1 if v > 0.6 * amplitude else -1 if v < -0.6 * amplitude else 0
            if s and s != side:
                half, side = half + 1, s
        return half // 2


def shake(m: Motion, obj: str, amplitude: float = 0.03, count: int = 3, record: ShakeRecord | None = None) -> Iterator[Target]:
    """Shake the held `obj` `count` times along world y by +-`amplitude` m, at carrying height."""
    sim = m.sim
    record = record if record is not None else ShakeRecord()
    centre = m.pos.copy()
    fast, m.speed = m.speed, 0.01
    for _ in range(count):
        for side in (1.0, -1.0):
            goal = centre + [0.0, side * amplitude, 0.0]
            for t in m.move(goal, tol=0.012, max_steps=25):
                yield t
                record.update(sim, obj)
    for t in m.move(centre, max_steps=25):
        yield t
        record.update(sim, obj)
    yield from m.hold(5)
    m.speed = fast


def shaken(sim: Sim, obj: str, amplitude: float, count: int, record: ShakeRecord, liquid: str | None = None,
           liquid_before: float = 1.0, vessel_inside=None) -> bool:
    """`count` strokes of >= 60% amplitude, held all along, and (with liquid) <= 10% of it lost."""
    ok = record.strokes(amplitude) >= count and record.held_steps >= 0.95 * max(record.steps, 1)
    if liquid is not None and vessel_inside is not None:
        ok = ok and vessel_inside() >= liquid_before - 0.1
    return bool(ok)
