"""pressZ: a vertical press to a commanded depth of a push button's travel, force-limited by the servo lead."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from lerobot_labvla.sim.scene import Sim
from lerobot_labvla.sim.skills.atomic import CLEAR_Z
from lerobot_labvla.sim.skills.motion import TOP_DOWN, Motion, Target


@dataclass
class PressRecord:
    max_fraction: float = 0.0
    max_drift: float = 0.0  # lateral TCP drift (m) while in contact depth
    top: np.ndarray | None = None


def press_z(m: Motion, device: str, depth: float = 0.8, record: PressRecord | None = None) -> Iterator[Target]:
    """Push the device's button straight down (world -z) until `depth` of its travel, hold, release."""
    sim = m.sim
    record = record if record is not None else PressRecord()
    a = sim.assets[device]
    top = sim.site_pos(a.graspable_sites[0])
    record.top = top
    yield from m.grip(0.0, steps=1)
    yield from m.move([top[0], top[1], max(top[2] + 0.12, CLEAR_Z)], TOP_DOWN)
    yield from m.move([top[0], top[1], top[2] + 0.02], speed=0.008)
    bottom = top[2] - a.params["travel"] - 0.006
    for _ in range(60):
        m.pos = np.array([top[0], top[1], max(m.pos[2] - 0.002, bottom)])
        yield m.target()
        frac = sim.button_fraction(device)
        record.max_fraction = max(record.max_fraction, frac)
        if frac > 0.05:
            record.max_drift = max(record.max_drift, float(np.linalg.norm(sim.tcp_pos[:2] - top[:2])))
        if frac >= depth:
            break
    yield from m.hold(4)
    yield from m.move([top[0], top[1], top[2] + 0.10], speed=0.01)


def pressed_to(sim: Sim, device: str, depth: float, record: PressRecord) -> bool:
    """The button travelled >= 90% of `depth`, the press stayed vertical (< 6 mm drift), and it came back up."""
    return bool(record.max_fraction >= 0.9 * depth and record.max_drift < 0.006 and sim.button_fraction(device) < 0.3)
