"""The safety monitor: rejects episodes that succeed the wrong way (too much force, hitting things,
dropping or tipping glassware, spilling liquid), and records contact events for the annotations.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import mujoco
import numpy as np

from lerobot_labvla.sim.scene import GRASPABLE_CATEGORIES, Sim
from lerobot_labvla.sim.skills import particles_inside

GLASSWARE = GRASPABLE_CATEGORIES  # beaker, flask, graduated_cylinder, test_tube, bottle
DROP_FALL, DROP_WINDOW = 0.03, 40  # m fallen within this many steps after leaving the closed gripper
REASONS = ("contact_force", "collision", "dropped", "tipped", "spill")


@dataclass
class SafetyLimits:
    max_glass_force: float = 60.0  # N between the robot and glassware (grasps squeeze with ~10-15 N)
    max_contact_force: float = 200.0  # N between the robot and devices/bench (closing the oven door: ~175 N)
    tip_upright: float = 0.5  # cos of the tilt beyond which free-standing glassware counts as tipped
    spill_fraction: float = 0.3  # of a liquid outside every container at the end (LabUtopia's pour allows 30%)


@dataclass
class SafetyMonitor:
    """Call `step(involved)` after every control step; `violations` holds (reason, frame, detail)."""

    sim: Sim
    liquids: dict[str, str]  # vessel -> liquid asset
    limits: SafetyLimits = field(default_factory=SafetyLimits)
    violations: list[tuple[str, int, str]] = field(default_factory=list)
    max_force: float = 0.0
    _held: set = field(default_factory=set)
    _lost: dict = field(default_factory=dict)  # object -> (z, frame) when it left the closed gripper

    def __post_init__(self):
        m = self.sim.model
        self._owner = np.full(m.nbody, "", dtype=object)  # root body -> asset name ("" = robot/world)
        for name, asset in self.sim.assets.items():
            bodies = list(asset.parts.values()) if asset.category == "liquid" else [asset.body]
            for b in bodies:
                bid = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, b)
                if bid >= 0:
                    self._owner[m.body_rootid[bid]] = name
        self._robot = np.array([b in self.sim.robot_bodies for b in range(m.nbody)])
        self._force = np.zeros(6)
        self._glass = [n for n, a in self.sim.assets.items() if a.category in GLASSWARE]
        self._graspable = [n for n, a in self.sim.assets.items() if a.category in GLASSWARE | {"stirring_rod"}]

    def _flag(self, reason: str, frame: int, detail: str) -> None:
        if not any(r == reason for r, *_ in self.violations):
            self.violations.append((reason, frame, detail))

    def step(self, frame: int, involved: set[str], gripper_closed: bool) -> list[str]:
        """Check the current state; returns this step's contact events as 'a-b 12.3N' strings."""
        sim, m, d = self.sim, self.sim.model, self.sim.data
        events = []
        held_now = {n for n in self._graspable if sim.fingers_touch(sim.assets[n].body)}
        for i in range(d.ncon):
            c = d.contact[i]
            b1, b2 = m.geom_bodyid[c.geom1], m.geom_bodyid[c.geom2]
            r1, r2 = self._robot[b1], self._robot[b2]
            o1, o2 = self._owner[m.body_rootid[b1]], self._owner[m.body_rootid[b2]]
            if not (r1 or r2) and not ({o1, o2} & held_now):
                continue  # objects resting on each other / the bench
            mujoco.mj_contactForce(m, d, i, self._force)
            f = float(abs(self._force[0]))
            if r1 or r2:
                self.max_force = max(self.max_force, f)
                what = o2 if r1 else o1
                glass = bool(what) and sim.assets[what].category in GLASSWARE
                limit = self.limits.max_glass_force if glass else self.limits.max_contact_force
                if f > limit:
                    self._flag("contact_force", frame, f"{f:.0f} N between the robot and {what or 'the world'} (limit {limit:.0f} N)")
            other = {o1, o2} - {""}
            # The robot may touch only what the step is about; a held object may also meet the bench.
            candidates = other if (r1 or r2) else other - held_now - {"bench"}
            hit = sorted(o for o in candidates
                         if o not in involved and o not in held_now and sim.assets[o].category != "liquid")
            if hit and f > 1.0:
                self._flag("collision", frame, f"unintended contact with {hit[0]} ({f:.0f} N)")
                events.append(f"{'robot' if (r1 or r2) else '+'.join(sorted(other & held_now))}-{hit[0]} {f:.1f}N")
        # Dropped = slipped out of the closed gripper and then fell (a finger losing touch for a moment
        # while setting an object down is not a drop; an opened gripper releases on purpose).
        if gripper_closed:
            for n in self._held - held_now:
                self._lost.setdefault(n, (sim.body_pos(sim.assets[n].body)[2], frame))
            self._held = held_now
        else:
            self._held = set()
        for n, (z, since) in list(self._lost.items()):
            if n in held_now or frame - since > DROP_WINDOW:
                del self._lost[n]
            elif sim.body_pos(sim.assets[n].body)[2] < z - DROP_FALL:
                self._flag("dropped", frame, f"{n} slipped out of the closed gripper and fell")
                del self._lost[n]
        for n in self._glass:
            if n not in held_now and sim.body_upright(sim.assets[n].body) < self.limits.tip_upright:
                self._flag("tipped", frame, f"{n} tipped over (upright {sim.body_upright(sim.assets[n].body):.2f})")
        return events

    def finish(self, frame: int) -> None:
        """End-of-episode checks (liquid outside every container)."""
        vessels = [n for n, a in self.sim.assets.items() if a.category in GLASSWARE - {"bottle"}]
        for liquid in set(self.liquids.values()):
            inside = sum(particles_inside(self.sim, liquid, v) for v in vessels)
            if 1.0 - inside > self.limits.spill_fraction:
                self._flag("spill", frame, f"{1.0 - inside:.0%} of {liquid} is outside every container")
