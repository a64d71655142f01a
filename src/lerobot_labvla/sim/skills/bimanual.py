"""Two-arm skills: each yields `{arm: Target}` per control step, one target for every arm it moves.

A single-arm skill runs on one arm's `Motion` (a `Motion` over `sim.for_arm(name)`); an arm that no
skill is moving holds its last target. `handover` is the two-arm step: the giver holds the object
top-down, the taker closes on its lower part from the side, then the giver lets go and backs off.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from lerobot_labvla.sim.control import ArmController, axis_angle_quat, quat_mul
from lerobot_labvla.sim.scene import Sim
from lerobot_labvla.sim.skills.motion import TOP_DOWN, Motion, Target

# m above the object's base where the taker's pads close: below the giver's pads (a top-down grasp at half height of
# a >= 14 cm object), and high enough that the taker's gripper housing (3.5 cm under a side-pointing ViperX TCP)
# clears the bench when it sets the object down.
SIDE_GRASP_HEIGHT = 0.045


def side_quat(direction: np.ndarray) -> np.ndarray:
    """TCP pointing horizontally along `direction` (xy), fingers closing horizontally across it."""
    yaw = math.atan2(direction[1], direction[0])
    # TOP_DOWN points z down with fingers along world y; pitch it up by 90 deg about y to point along +x, then yaw.
    along_x = quat_mul(axis_angle_quat(np.array([0.0, -math.pi / 2, 0.0])), TOP_DOWN)
    return quat_mul(axis_angle_quat(np.array([0.0, 0.0, yaw])), along_x)


def _alone(name: str, gen: Iterator[Target], others: dict[str, Motion]) -> Iterator[dict[str, Target]]:
    """Run one arm's targets while every other arm holds its current target."""
    for t in gen:
        yield {name: t, **{k: m.target() for k, m in others.items()}}


def handover(giver: tuple[str, Motion], taker: tuple[str, Motion], obj: str, at, height: float = 0.13) -> Iterator[dict[str, Target]]:
    """Pass held `obj` from `giver` to `taker` at bench point `at` (xy), its base `height` m above the bench."""
    (g, mg), (t, mt) = giver, taker
    sim = mg.sim
    offset = sim.tcp_pos - sim.body_pos(obj)  # the giver's grasp: TCP relative to the object's base
    goal = np.array([at[0], at[1], height]) + offset
    yield from _alone(g, mg.move([mg.pos[0], mg.pos[1], max(mg.pos[2], goal[2])], speed=0.008), {t: mt})
    yield from _alone(g, mg.move(goal, speed=0.008, max_steps=200), {t: mt})
    yield from _alone(g, mg.hold(10), {t: mt})
    base = sim.body_pos(obj)
    grasp = base + np.array([0.0, 0.0, SIDE_GRASP_HEIGHT])
    # The taker comes in from its own side, horizontally, fingers open.
    approach = grasp[:2] - mt.sim.tcp_pos[:2]
    approach[:] = approach / max(np.linalg.norm(approach), 1e-9)
    # The fingers are symmetric: of the two hand rolls that grasp alike, take the one whose joints keep off their
    # limits (a wrist parked at a limit cannot turn back when the object is set down).
    ctl = ArmController(mt.sim, iterations=60)
    flips = [side_quat(approach), quat_mul(side_quat(approach), np.array([0.0, 0.0, 0.0, 1.0]))]

    def margin(q: np.ndarray) -> float:
        sol = ctl.ik(grasp, q, mt.sim.arm_qpos)
        return float(np.min(np.minimum(sol - ctl.q_lo, ctl.q_hi - sol)))

    quat = max(flips, key=margin)
    before = np.array([*(grasp[:2] - 0.12 * approach), grasp[2]])
    yield from _alone(t, mt.grip(1.0, steps=1), {g: mg})
    yield from _alone(t, mt.move(before, quat, max_steps=200), {g: mg})
    yield from _alone(t, mt.move(grasp, speed=0.005, tol=0.005, max_steps=60), {g: mg})
    yield from _alone(t, mt.grip(0.0, steps=15), {g: mg})
    yield from _alone(g, mg.grip(1.0, steps=15), {t: mt})
    yield from _alone(g, mg.move(mg.pos + [0.0, 0.0, 0.05], speed=0.008), {t: mt})
    # Back off towards the giver's own side, out of the way of whatever the taker does next with the object.
    away = approach * 0.15  # `approach` points from the taker towards the giver
    yield from _alone(g, mg.move(mg.pos + [away[0], away[1], 0.05]), {t: mt})


def handed_over(taker: Sim, giver: Sim, obj: str, min_height: float = 0.05) -> bool:
    """Only the taker's fingers hold `obj`, which is off the bench by at least `min_height`."""
    giver_touch = np.isin(giver._bodies_touching(obj), giver._fingers).any()
    return bool(taker.fingers_touch(obj) and not giver_touch and taker.body_pos(obj)[2] >= min_height)
