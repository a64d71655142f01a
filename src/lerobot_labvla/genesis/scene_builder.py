"""Greedy scene layout on the bench and the named validation checks a built scene must pass.

`plan_scene` places a workflow's objects (largest first, near their nominal spots, within reach,
footprints apart) and then clutter distractors (off the planned carry paths); `check_plan` and
`check_sim` judge the result with ten named checks (`CHECKS`), so a rejected scene says why:

    no_interpenetration   no two bodies overlap by > 2 mm at rest
    stable_after_settling free objects move < 5 mm and stay upright in 0.3 s with the robot at home
    targets_in_reach      every object a step acts on is inside the robot's reach
    graspable_side_free   a picked object has room for both open fingers on some axis
    path_clearance        nothing taller than the carry height stands along a carry path
    articulations_free    doors swing and buttons press through their whole range without hitting anything
    targets_visible       every target is seen (ray-cast, inside the frustum) by at least one fixed camera
    inside_bench_bounds   every footprint lies on the bench top and off the robot's base
    liquid_contained      every particle of a filled vessel is still inside it after settling
    no_clutter_on_path    no distractor footprint touches a carry path corridor

With `randomize: {clutter: {shelf: p}}` a shelf (static) may stand at the back of the bench with 1-2 of the
distractors on its top board; the checks judge those at their height (on the shelf's top, not off its edge;
their top against the carry height; stable, visible-through and interpenetration as anything else).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import mujoco
import numpy as np

from lerobot_labvla.genesis import assets as L

CHECKS = ("no_interpenetration", "stable_after_settling", "targets_in_reach", "graspable_side_free", "path_clearance",
          "articulations_free", "targets_visible", "inside_bench_bounds", "liquid_contained", "no_clutter_on_path")
BENCH = ((-0.25, 1.15), (-0.9, 0.9))  # x, y of the bench top (sim.assets.bench defaults)
BASE_CLEARANCE = 0.15  # m around the robot base (0, 0) kept free
CLUTTER_REGION = ((0.25, 0.95), (-0.65, 0.65))
SHELF_REGION = ((0.82, 1.02), (-0.55, 0.55))  # the back of the bench, past where the skills work
# Where the skills work reliably (measured: grasps at x < 0.45 m slip in carry; LabUtopia keeps x >= 0.44): a layout
# move never takes an object whose nominal spot is inside this box out of it.
SKILL_BOX = ((0.47, 0.75), (-0.35, 0.35))
CARRY_HEIGHT = 0.10  # the bottom of a carried object (picks lift 12 cm) stays above this
ARM_CLEARANCE = 0.12  # clutter keeps this far (edge to edge) from objects a step acts on: the arm works around them
FINGER_REACH = 0.022  # m beyond an object's radius where an open finger sits
FINGER_PAD = 0.012
PENETRATION = 0.002
SETTLE_STEPS = 6  # control periods (0.05 s each): 0.3 s
FIXED_VIEWS = ("front", "side")


@dataclass
class Placement:
    name: str
    variant: L.Variant
    xy: tuple[float, float]
    yaw: float = 0.0
    clutter: bool = False
    rgba: tuple | None = None
    material: str | None = None
    z: float = 0.0  # where its base stands: 0 on the bench, a shelf's top on a shelf
    on: str | None = None  # the shelf it stands on

    @property
    def footprint(self) -> float:
        return self.variant.footprint

    @property
    def height(self) -> float:
        return self.variant.height


@dataclass
class Segment:
    """A carry path on the bench: `carried` moves from `a` to `b` (xy), `radius` its footprint."""

    carried: str
    a: tuple[float, float]
    b: tuple[float, float]
    radius: float
    involved: frozenset[str]


@dataclass
class ScenePlan:
    placements: list[Placement]
    targets: list[str]  # objects the steps act on
    points: list[tuple[float, float]]  # bench points the steps name (place at: [x, y])
    segments: list[Segment] = field(default_factory=list)
    robot: str = "fr3"

    def get(self, name: str) -> Placement:
        return next(p for p in self.placements if p.name == name)


# --- geometry ---------------------------------------------------------------------------------------
def _seg_dist(p, a, b) -> float:
    p, a, b = (np.asarray(v, float) for v in (p, a, b))
    ab = b - a
    t = 0.0 if not ab.any() else float(np.clip((p - a) @ ab / (ab @ ab), 0.0, 1.0))
    return float(np.linalg.norm(p - (a + t * ab)))


def _overlaps(xy, radius: float, others: list[Placement], gap: float) -> bool:
    return any(math.hypot(xy[0] - o.xy[0], xy[1] - o.xy[1]) < radius + o.footprint + gap for o in others)


def _in_box(xy, box=SKILL_BOX) -> bool:
    return box[0][0] <= xy[0] <= box[0][1] and box[1][0] <= xy[1] <= box[1][1]


def _on_bench(xy, radius: float) -> bool:
    (x0, x1), (y0, y1) = BENCH
    return (x0 + radius <= xy[0] <= x1 - radius and y0 + radius <= xy[1] <= y1 - radius
            and math.hypot(*xy) >= BASE_CLEARANCE + radius)


def in_reach(robot: str, xy, slack: float = 0.0) -> bool:
    """Top-down reach of `robot` at bench point `xy`; `slack` m of the point's far side may stick out
    (a cabinet's handle or a zone's near edge is what the hand goes to)."""
    d = math.hypot(*xy)
    if slack and d > slack:
        xy = (xy[0] * (1 - slack / d), xy[1] * (1 - slack / d))
    try:
        from lerobot_labvla.sim.robots import get_profile

        return bool(get_profile(robot).reachable(xy))
    except ImportError:  # profiles not installed: the FR3 ring the workflow validator uses
        from lerobot_labvla.genesis.validate import REACH_MAX, REACH_MIN

        return REACH_MIN <= math.hypot(*xy) <= REACH_MAX


def _reach_slack(p: Placement) -> float:
    from lerobot_labvla.genesis.validate import REACH_SLACK

    return REACH_SLACK.get(p.variant.family.name, 0.0)


# --- planning ---------------------------------------------------------------------------------------
def step_targets(wf) -> tuple[list[str], list[tuple[float, float]]]:
    """Objects the steps act on (in order, once each) and the bench points they name."""
    names, points = [], []
    for s in wf.steps:
        for k, v in s.args.model_dump(by_alias=True).items():
            if isinstance(v, str) and k != "instruction":
                head = v.split(".")[0]
                if head not in names:
                    names.append(head)
            elif k == "at" and v is not None:
                points.append(tuple(v))
    return names, points


def carry_segments(wf, plan: ScenePlan) -> list[Segment]:
    """The carry paths the steps imply: pick -> place destination, a pour's source to its target, a rod to its vessel."""
    pos = {p.name: p.xy for p in plan.placements}
    out = []
    for s in wf.steps:
        a = s.args
        if s.skill == "place":
            dest = tuple(a.at) if a.at is not None else pos.get(a.on)
            if a.object in pos and dest is not None:
                out.append(Segment(a.object, pos[a.object], dest, plan.get(a.object).footprint,
                                   frozenset({a.object, a.on or ""})))
                pos[a.object] = dest
        elif s.skill == "pour" and a.from_ in pos and a.to in pos:
            out.append(Segment(a.from_, pos[a.from_], pos[a.to], plan.get(a.from_).footprint, frozenset({a.from_, a.to})))
        elif s.skill == "stir" and a.with_ in pos and a.object in pos:
            out.append(Segment(a.with_, pos[a.with_], pos[a.object], 0.02, frozenset({a.with_, a.object})))
    return out


def _on_path(xy, radius: float, segments: list[Segment], gap: float, skip: str = "") -> bool:
    return any(skip not in s.involved and _seg_dist(xy, s.a, s.b) < radius + s.radius + gap for s in segments)


def plan_scene(wf, rz, layout_rng: np.random.Generator, jitter_rng: np.random.Generator,
               clutter_rng: np.random.Generator, tries: int = 40) -> ScenePlan:
    """Greedy placement: the workflow's objects (largest first) near their nominal spots, then clutter."""
    targets, points = step_targets(wf)
    jitter = wf.scene.jitter if rz.jitter.xy is None else rz.jitter.xy
    objs = sorted(wf.scene.objects, key=lambda o: -L.for_object(o).footprint)
    placed: list[Placement] = []
    keep_out: list[Placement] = []  # where doors swing: nothing else goes there
    for o in objs:
        v = L.for_object(o)
        yaw = float(jitter_rng.uniform(-rz.jitter.yaw, rz.jitter.yaw)) if v.family.yaw and rz.jitter.yaw else 0.0
        gap = 0.04 if v.family.role == "glassware" else 0.015
        first = None
        for k in range(tries):
            dx, dy = 0.0, 0.0
            if rz.layout.radius:
                ang, rad = layout_rng.uniform(0, 2 * math.pi), rz.layout.radius * math.sqrt(layout_rng.random())
                dx, dy = rad * math.cos(ang), rad * math.sin(ang)
            j = jitter_rng.uniform(-jitter, jitter, 2) if jitter else (0.0, 0.0)
            xy = (o.at[0] + dx + float(j[0]), o.at[1] + dy + float(j[1]))
            first = first or xy
            p = Placement(o.name, v, xy, yaw)
            if (_on_bench(xy, v.footprint) and not _overlaps(xy, v.footprint, placed + keep_out, gap)
                    and (not _in_box(o.at) or _in_box(xy))
                    and (o.name not in targets or in_reach(wf.robot, xy, _reach_slack(p)))):
                break
        else:
            xy = first  # nothing valid: keep the nominal + jitter spot, validation will say why
        placed.append(Placement(o.name, v, xy, yaw))
        keep_out += door_swing(placed[-1])
    plan = ScenePlan(placed, targets, points, robot=wf.robot)
    plan.segments = carry_segments(wf, plan)
    lo, hi = rz.clutter.count
    used = {o.type for o in wf.scene.objects}
    pool = [v for v in L.variants() if v.family.role == "clutter" and v.family.name not in used]
    for i in range(int(clutter_rng.integers(lo, hi + 1)) if hi > 0 else 0):
        v = pool[int(clutter_rng.integers(len(pool)))]
        (x0, x1), (y0, y1) = CLUTTER_REGION
        for _ in range(tries):
            xy = (float(clutter_rng.uniform(x0, x1)), float(clutter_rng.uniform(y0, y1)))
            if _clutter_fits(xy, v, plan, keep_out, placed, targets, points):
                plan.placements.append(Placement(f"clutter_{i}", v, xy, clutter=True))
                break
    if rz.clutter.shelf and clutter_rng.random() < rz.clutter.shelf:  # no draw at all without shelves
        _place_shelf(plan, pool, keep_out, placed, targets, points, clutter_rng, tries)
    return plan


def _clutter_fits(xy, v, plan: ScenePlan, keep_out: list, placed: list, targets: list, points: list) -> bool:
    """A distractor (or shelf) of variant `v` at `xy`: on the bench, clear of what is placed and of the keep-out
    zones, off the carry paths, an arm's clearance from the step targets, 8 cm from every point a step acts on."""
    return (_on_bench(xy, v.footprint) and not _overlaps(xy, v.footprint, plan.placements + keep_out, 0.03)
            and not _on_path(xy, v.footprint, plan.segments, 0.04)
            and not _overlaps(xy, v.footprint, [p for p in placed if p.name in targets], ARM_CLEARANCE)
            and not any(math.hypot(xy[0] - q[0], xy[1] - q[1]) < v.footprint + 0.08 for q in points))


def _place_shelf(plan: ScenePlan, pool: list, keep_out: list, placed: list, targets: list, points: list,
                 rng: np.random.Generator, tries: int) -> None:
    """A shelf at the back of the bench, off the carry paths, with 1-2 distractors that fit on its top board."""
    shelves = L.variants("shelf")
    v = shelves[int(rng.integers(len(shelves)))]
    (x0, x1), (y0, y1) = SHELF_REGION
    for _ in range(tries):
        xy = (float(rng.uniform(x0, x1)), float(rng.uniform(y0, y1)))
        if _clutter_fits(xy, v, plan, keep_out, placed, targets, points):
            break
    else:
        return
    shelf = Placement(f"shelf_{len(plan.placements)}", v, xy, clutter=True)
    plan.placements.append(shelf)
    half_x, half_y = v.kwargs.get("depth", 0.14) / 2, v.kwargs["width"] / 2 - 0.01
    small = [c for c in pool if c.footprint <= half_x - 0.005]
    on_top: list[Placement] = []
    for _ in range(int(rng.integers(1, 3)) if small else 0):
        c = small[int(rng.integers(len(small)))]
        for _ in range(tries):
            dy = float(rng.uniform(-(half_y - c.footprint), half_y - c.footprint))
            spot = (xy[0], xy[1] + dy)
            if not _overlaps(spot, c.footprint, on_top, 0.01):
                on_top.append(Placement(f"clutter_{len(plan.placements) + len(on_top)}", c, spot, clutter=True,
                                        z=shelf.height, on=shelf.name))
                break
    plan.placements += on_top


def on_its_shelf(p: Placement, shelf: Placement) -> bool:
    """Whether `p`'s footprint lies on `shelf`'s top board (the shelf's long side runs along y)."""
    half_x, half_y = shelf.variant.kwargs.get("depth", 0.14) / 2, shelf.variant.kwargs["width"] / 2
    return abs(p.xy[0] - shelf.xy[0]) <= half_x and abs(p.xy[1] - shelf.xy[1]) + p.footprint <= half_y


def door_swing(p: Placement) -> list[Placement]:
    """Discs covering the sector a cabinet's door (and its handle) sweeps from closed to fully open (none for
    other objects). The hinge is on the front (-x) face's -y edge; opening turns the door from +y towards -x."""
    if p.variant.family.name != "cabinet":
        return []
    w, d = p.variant.kwargs.get("width", 0.3), p.variant.kwargs.get("depth", 0.25)
    c, s = math.cos(p.yaw), math.sin(p.yaw)
    hinge = (-d / 2, -w / 2)
    discs = []
    for a in np.radians((20, 60, 100)):
        lx, ly = hinge[0] - 0.5 * w * math.sin(a), hinge[1] + 0.5 * w * math.cos(a)
        xy = (p.xy[0] + c * lx - s * ly, p.xy[1] + s * lx + c * ly)
        swing = L.Variant(L.FAMILIES["target_zone"], "door_swing", {"half_size": (w / 2 / math.sqrt(2) + 0.045,) * 2})
        discs.append(Placement(f"{p.name}_door_swing", swing, xy))
    return discs


# --- checks on the plan (geometry) ------------------------------------------------------------------
def check_plan(plan: ScenePlan) -> dict[str, str]:
    """Failed geometric checks -> why (empty: all passed)."""
    fails: dict[str, list[str]] = {}
    by_name = {p.name: p for p in plan.placements}
    for p in plan.placements:
        if p.on is not None:
            if p.on not in by_name or not on_its_shelf(p, by_name[p.on]):
                fails.setdefault("inside_bench_bounds", []).append(f"{p.name} off {p.on}'s top")
        elif not _on_bench(p.xy, p.footprint):
            fails.setdefault("inside_bench_bounds", []).append(f"{p.name} at ({p.xy[0]:.2f}, {p.xy[1]:.2f})")
    for name in plan.targets:
        p = by_name.get(name)
        if p is not None and not in_reach(plan.robot, p.xy, _reach_slack(p)):
            fails.setdefault("targets_in_reach", []).append(f"{name} at {math.hypot(*p.xy):.2f} m")
    for xy in plan.points:
        if not in_reach(plan.robot, xy):
            fails.setdefault("targets_in_reach", []).append(f"point ({xy[0]:.2f}, {xy[1]:.2f})")
    grasped = {s.carried for s in plan.segments} | {n for n in plan.targets if by_name.get(n) is not None
                                                     and by_name[n].variant.family.role == "glassware"}
    for name in grasped:
        p = by_name.get(name)
        if p is None or p.variant.family.name == "stirring_rod":  # a rod is grasped above its holder
            continue
        others = [o for o in plan.placements if o.name != name and o.height > 0.01]
        r = p.footprint + FINGER_REACH
        free = False
        for yaw in np.linspace(0, math.pi, 4, endpoint=False):
            fingers = [(p.xy[0] + s * r * math.cos(yaw), p.xy[1] + s * r * math.sin(yaw)) for s in (-1, 1)]
            if not any(_overlaps(f, FINGER_PAD, others, 0.0) for f in fingers):
                free = True
                break
        if not free:
            fails.setdefault("graspable_side_free", []).append(name)
    for s in plan.segments:
        for o in plan.placements:
            if o.name in s.involved or o.name == s.carried:
                continue
            near = _seg_dist(o.xy, s.a, s.b) < o.footprint + s.radius + 0.01
            if near and o.z + o.height > CARRY_HEIGHT:
                fails.setdefault("path_clearance", []).append(f"{o.name} on {s.carried}'s path")
            if o.clutter and _seg_dist(o.xy, s.a, s.b) < o.footprint + s.radius + 0.03:
                fails.setdefault("no_clutter_on_path", []).append(f"{o.name} on {s.carried}'s path")
    return {k: "; ".join(v) for k, v in fails.items()}


# --- checks on the compiled scene (physics, rendering geometry) --------------------------------------
def _roots(model, body_names) -> set[int]:
    return {int(model.body_rootid[model.body(b).id]) for b in body_names}


def check_sim(sim, plan: ScenePlan, liquids: dict[str, str]) -> dict[str, str]:
    """Failed physics checks -> why, on a freshly reset `Sim` (this steps it: build a new one to run episodes)."""
    m, d = sim.model, sim.data
    fails: dict[str, str] = {}
    mujoco.mj_forward(m, d)
    world = {0}
    deep = []
    for c in d.contact[:d.ncon]:
        r1, r2 = (int(m.body_rootid[m.geom_bodyid[g]]) for g in (c.geom1, c.geom2))
        if r1 != r2 and not ({r1, r2} & world) and c.dist < -PENETRATION:
            deep.append(f"{m.body(r1).name}/{m.body(r2).name} {-c.dist * 1000:.0f} mm")
    if deep:
        fails["no_interpenetration"] = "; ".join(sorted(set(deep))[:4])
    blocked = _articulation_hits(sim)
    if blocked:
        fails["articulations_free"] = "; ".join(blocked)
    hidden = [t for t in plan.targets if t in sim.assets and not _visible(sim, t, liquids.get(t))]
    if hidden:
        fails["targets_visible"] = ", ".join(hidden)
    free = [p.name for p in plan.placements if p.name in sim.assets and m.body(sim.assets[p.name].body).jntnum
            and m.jnt_type[m.body(sim.assets[p.name].body).jntadr] == mujoco.mjtJoint.mjJNT_FREE]
    start = {n: sim.body_pos(sim.assets[n].body) for n in free}
    home = sim.arm_qpos
    for _ in range(SETTLE_STEPS):
        sim.step(home)
    moved = [f"{n} {np.linalg.norm(sim.body_pos(sim.assets[n].body) - start[n]) * 1000:.0f} mm" for n in free
             if np.linalg.norm(sim.body_pos(sim.assets[n].body) - start[n]) > 0.005
             or sim.body_upright(sim.assets[n].body) < 0.96]
    if moved:
        fails["stable_after_settling"] = "; ".join(moved)
    from lerobot_labvla.sim.skills import particles_inside

    spilled = [f"{v} keeps {particles_inside(sim, liq, v):.0%}" for v, liq in liquids.items()
               if particles_inside(sim, liq, v) < 1.0]
    if spilled:
        fails["liquid_contained"] = "; ".join(spilled)
    return fails


def _articulation_hits(sim) -> list[str]:
    """Doors swung through their range and buttons pushed to the bottom: what their moving part hits."""
    m, d = sim.model, sim.data
    qpos = d.qpos.copy()
    out = []
    for name, asset in sim.assets.items():
        for role, joint in asset.articulation.items():
            j = m.joint(joint)
            moving = int(j.bodyid[0])
            lo, hi = m.jnt_range[j.id]
            for q in np.linspace(lo, hi, 6):
                d.qpos[:] = qpos
                d.qpos[m.jnt_qposadr[j.id]] = q
                mujoco.mj_forward(m, d)
                hit = _hits(m, d, moving, {int(m.body_rootid[moving])})
                if hit:
                    out.append(f"{name} {role} hits {hit} at {q:.2f}")
                    break
    d.qpos[:] = qpos
    mujoco.mj_forward(m, d)
    return out


def _hits(m, d, body: int, own_roots: set[int]) -> str:
    for c in d.contact[:d.ncon]:
        b1, b2 = int(m.geom_bodyid[c.geom1]), int(m.geom_bodyid[c.geom2])
        if body in (b1, b2) and c.dist < -PENETRATION:
            other = b2 if b1 == body else b1
            if int(m.body_rootid[other]) not in own_roots:
                return m.body(int(m.body_rootid[other])).name or "world"
    return ""


def _visible(sim, target: str, liquid: str | None) -> bool:
    """Some point of `target` (centre, grasp sites) inside a fixed camera's frustum with a clear line of sight."""
    m, d = sim.model, sim.data
    asset = sim.assets[target]
    own = _roots(m, [asset.body]) | (_roots(m, sim.assets[liquid].parts.values()) if liquid else set())
    base = sim.body_pos(asset.body)
    pts = [base + [0, 0, 0.5 * asset.params.get("height", 0.05)]] + [sim.site_pos(s) for s in asset.graspable_sites]
    groups = np.array([1, 1, 1, 0, 0, 0], np.uint8)  # what cameras render by default (not collision-only geoms)
    geom = np.zeros(1, np.int32)
    for view in FIXED_VIEWS:
        cam = m.camera(view).id
        pos, rot = d.cam_xpos[cam], d.cam_xmat[cam].reshape(3, 3)
        half = math.tan(math.radians(m.cam_fovy[cam]) / 2)
        for p in pts:
            rel = rot.T @ (p - pos)
            if rel[2] >= 0 or abs(rel[0]) > -rel[2] * half or abs(rel[1]) > -rel[2] * half:
                continue
            vec = (p - pos) / np.linalg.norm(p - pos)
            dist = mujoco.mj_ray(m, d, pos, vec, groups, 1, -1, geom)
            if dist >= 0 and geom[0] >= 0 and int(m.body_rootid[m.geom_bodyid[geom[0]]]) in own:
                return True
    return False
