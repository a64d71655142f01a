"""stir: circle a held stirring rod's tip inside a container; the checker measures the tip's path."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from lerobot_labvla.sim.scene import Sim
from lerobot_labvla.sim.skills.atomic import CLEAR_Z
from lerobot_labvla.sim.skills.motion import Motion, Target

STEPS_PER_TURN = 48


@dataclass
class StirRecord:
    """What the stirring rod's tip did inside the vessel (filled in while the skill runs)."""

    swept: float = 0.0  # rad swept by the tip around the vessel axis while inside it
    inside_steps: int = 0
    vessel_start: np.ndarray | None = None
    _last_angle: float | None = field(default=None, repr=False)

    def update(self, sim: Sim, rod: str, vessel: str) -> None:
        v = sim.assets[vessel]
        tip = sim.site_pos(sim.assets[rod].parts["tip"])
        rel = (tip - sim.body_pos(vessel)) @ sim.data.body(vessel).xmat.reshape(3, 3)
        r_in = v.params["radius"] - v.params.get("wall", 0.004)
        inside = math.hypot(rel[0], rel[1]) < r_in and 0.0 < rel[2] < v.params["height"]
        angle = math.atan2(rel[1], rel[0])
        if inside:
            self.inside_steps += 1
            if self._last_angle is not None:
                self.swept += abs((angle - self._last_angle + math.pi) % (2 * math.pi) - math.pi)
            self._last_angle = angle
        else:
            self._last_angle = None


def stir(m: Motion, rod: str, vessel: str, turns: int = 2, record: StirRecord | None = None) -> Iterator[Target]:
    """With `rod` held, lower its tip into `vessel` and circle it `turns` times, then lift it out."""
    sim = m.sim
    record = record if record is not None else StirRecord()
    record.vessel_start = sim.body_pos(vessel)
    v = sim.assets[vessel]
    tip = sim.site_pos(sim.assets[rod].parts["tip"])
    tip_below_tcp = sim.tcp_pos[2] - tip[2]
    # The rod can sit off the TCP along the pads: steer the tip, not the TCP, round the vessel's axis.
    c = sim.body_pos(vessel) - np.array([tip[0] - sim.tcp_pos[0], tip[1] - sim.tcp_pos[1], 0.0])
    base_z = sim.body_pos(vessel)[2]
    above = base_z + v.params["height"] + 0.03 + tip_below_tcp
    low = base_z + 0.03 + tip_below_tcp
    radius = max(0.004, v.params["radius"] - v.params.get("wall", 0.004) - sim.assets[rod].params["radius"] - 0.005)
    yield from m.move([m.pos[0], m.pos[1], max(m.pos[2], above, CLEAR_Z)])
    yield from m.move([c[0], c[1], max(above, CLEAR_Z)])
    yield from m.move([c[0], c[1], low], speed=0.006)
    axis = sim.body_pos(vessel)
    for k in range(turns * STEPS_PER_TURN + 1):
        a = 2 * math.pi * k / STEPS_PER_TURN
        # Closed loop on the tip: aim the TCP so that the tip (wherever the grasp holds it) is on the circle.
        offset = sim.tcp_pos[:2] - sim.site_pos(sim.assets[rod].parts["tip"])[:2]
        goal = axis[:2] + radius * np.array([math.cos(a), math.sin(a)]) + offset
        m.pos = np.array([goal[0], goal[1], low])
        yield m.target()
        record.update(sim, rod, vessel)
    # Back to the axis (with the offset the grasp has now), then straight up, slowly: a tip dragged along
    # the wall levers the rod round in the grasp.
    offset = sim.tcp_pos[:2] - sim.site_pos(sim.assets[rod].parts["tip"])[:2]
    centre = axis[:2] + offset
    yield from m.move([centre[0], centre[1], low], speed=0.004)
    yield from m.move([centre[0], centre[1], max(above, CLEAR_Z)], speed=0.005)


def stirred(sim: Sim, rod: str, vessel: str, turns: int, record: StirRecord) -> bool:
    """The rod's tip swept >= 80% of `turns` full circles inside the vessel, which stayed put and upright."""
    moved = np.linalg.norm(sim.body_pos(vessel)[:2] - record.vessel_start[:2]) if record.vessel_start is not None else 1.0
    return bool(record.swept >= 0.8 * 2 * math.pi * turns and moved < 0.02 and sim.body_upright(vessel) > 0.95)
