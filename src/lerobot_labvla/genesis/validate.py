"""Offline workflow validation: references, preconditions, reachability and re-pick risks.

Runs without simulating: it replays the steps on a symbolic state (what is held, which doors are
open, which devices are on, where each object stands) and reports every problem with the
file:line:column of the step that causes it and a fix.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field

import numpy as np

from lerobot_labvla.genesis.workflow import (
    BUTTON_DEVICES,
    CONTAINERS,
    DOOR_DEVICES,
    GRASPABLE,
    SURFACES,
    LoadedWorkflow,
    Location,
    Workflow,
)

# Top-down grasps and presses of the FR3 at bench height (shared/research/labutopia-sim.md: the
# arm reaches 0.855 m from its shoulder, 0.333 m above the base).
REACH_MIN, REACH_MAX = 0.28, 0.78
REACH_SLACK = {"cabinet": 0.1, "target_zone": 0.1}  # their handle / near edge is what the hand reaches
BENCH_X, BENCH_Y = (-0.25, 1.15), (-0.9, 0.9)
# Footprint radius (m) of each object type: two objects closer than the sum of theirs collide or
# leave no room for the fingers (glassware: 4.5 cm = radius + a finger).
FOOTPRINT = {"hot_plate": 0.12, "cabinet": 0.22, "button_panel": 0.1, "target_zone": 0.0}
GLASS_FOOTPRINT = 0.045

# LabUtopia asset categories -> workflow object types.
_CATEGORY_TYPES = {"bottle": "reagent_bottle"}


@dataclass
class ObjectInfo:
    type: str
    at: tuple[float, float] | None  # None: placed at random by a LabUtopia scene
    liquid: bool = False


@dataclass
class Issue:
    severity: str  # "error" | "warning"
    where: Location
    message: str
    hint: str = ""

    def __str__(self) -> str:
        return f"{self.where}: {self.severity}: {self.message}" + (f"; fix: {self.hint}" if self.hint else "")


def scene_objects(wf: Workflow) -> dict[str, ObjectInfo]:
    """Name -> type/position of every object the workflow's scene contains (bench excluded)."""
    if wf.scene.labutopia is None:
        return {o.name: ObjectInfo(o.type, o.at, o.contents is not None) for o in wf.scene.objects}
    from lerobot_labvla.envs.labutopia.splits import get_split
    from lerobot_labvla.envs.labutopia.tasks import get_task

    builder, ctx = get_task(wf.scene.labutopia).build(np.random.default_rng(0), get_split("id"))
    out = {}
    for name, asset in builder.assets.items():
        if asset.category in ("bench", "liquid"):
            continue
        out[name] = ObjectInfo(_CATEGORY_TYPES.get(asset.category, asset.category), None)
    if "liquid" in ctx and ctx.get("src") in out:
        out[ctx["src"]].liquid = True
    for role, name in task_roles(ctx, builder.assets).items():  # e.g. `device`: the panel this seed asks for
        out.setdefault(role, out[name])
    return out


def task_roles(ctx: dict, assets: dict) -> dict[str, str]:
    """A LabUtopia task's roles (ctx keys naming one of its objects), usable as object names in steps."""
    return {k: v for k, v in ctx.items() if isinstance(v, str) and v in assets and assets[v].category != "liquid"}


def _closest(name: str, known) -> str:
    near = difflib.get_close_matches(name, list(known), n=3, cutoff=0.4) or sorted(known)[:3]
    return ", ".join(near)


@dataclass
class _State:
    held: str | None = None
    held_since: int = -1
    doors_open: set = field(default_factory=set)
    devices_on: set = field(default_factory=set)
    on: dict = field(default_factory=dict)  # object -> what it stands on
    placed: set = field(default_factory=set)  # objects picked and put down again
    emptied: set = field(default_factory=set)


def validate(loaded: LoadedWorkflow) -> list[Issue]:
    """All problems of a schema-valid workflow, in file order (errors and warnings)."""
    wf, issues = loaded.workflow, []
    objects = scene_objects(wf)
    from lerobot_labvla.sim.robots import get_profile

    profile = get_profile(wf.robot)
    REACH_MIN, REACH_MAX = profile.reach  # noqa: N806 - the FR3's are the module constants

    def err(path, message, hint="", severity="error"):
        issues.append(Issue(severity, loaded.where(*path), message, hint))

    if wf.scene.labutopia is not None and wf.robot != "fr3":
        err(("robot",), f"LabUtopia scenes are the FR3's benchmark; robot {wf.robot!r} needs a scene with `objects:`",
            "use robot: fr3, or list the objects under scene.objects")

    # --- the scene ------------------------------------------------------------------------------
    seen: dict[str, int] = {}
    for i, o in enumerate(wf.scene.objects):
        if o.name in seen:
            err(("scene", "objects", i, "name"), f"object name {o.name!r} is used twice (also objects[{seen[o.name]}])",
                "give every object its own name")
        seen[o.name] = i
        x, y = o.at
        if not (BENCH_X[0] <= x <= BENCH_X[1] and BENCH_Y[0] <= y <= BENCH_Y[1]):
            err(("scene", "objects", i, "at"), f"{o.name} at ({x}, {y}) is off the bench "
                f"(x {BENCH_X[0]}..{BENCH_X[1]}, y {BENCH_Y[0]}..{BENCH_Y[1]} m)", "move it onto the bench")
        elif profile.bimanual:
            if not profile.reachable((x, y)):
                err(("scene", "objects", i, "at"), f"{o.name} at ({x}, {y}) is outside the reach of both {wf.robot} arms",
                    "move it between the arms")
        elif not REACH_MIN <= math.hypot(x, y) <= REACH_MAX + REACH_SLACK.get(o.type, 0.0):
            err(("scene", "objects", i, "at"), f"{o.name} at ({x}, {y}) is {math.hypot(x, y):.2f} m from the "
                f"{wf.robot} base, outside its reach {REACH_MIN}..{REACH_MAX} m",
                f"place it between {REACH_MIN} and {REACH_MAX} m from (0, 0), e.g. [0.5, {y:.2f}]")
        if o.contents is not None and o.type not in CONTAINERS:
            err(("scene", "objects", i, "contents"), f"{o.name} is a {o.type}, which cannot hold liquid",
                f"put contents in a container ({', '.join(sorted(CONTAINERS))})")
        for j, p in enumerate(wf.scene.objects[:i]):
            d = math.hypot(o.at[0] - p.at[0], o.at[1] - p.at[1])
            need = FOOTPRINT.get(o.type, GLASS_FOOTPRINT) + FOOTPRINT.get(p.type, GLASS_FOOTPRINT)
            if d < need and "target_zone" not in (o.type, p.type):
                err(("scene", "objects", i, "at"), f"{o.name} stands {d * 100:.0f} cm from {p.name} "
                    f"(< {need * 100:.0f} cm): they collide or leave no room for the fingers", "move them further apart")

    # --- the steps, replayed on a symbolic state -----------------------------------------------
    s = _State()

    def ref(i, field_name, name, kinds=None, what="object"):
        """Check that `name` exists (and is of one of `kinds`); returns its info or None."""
        path = ("steps", i, wf.steps[i].skill, field_name)
        if name not in objects:
            err(path, f"step {i + 1} ({wf.steps[i].skill}): unknown {what} {name!r}",
                f"use one of the scene's objects: {_closest(name, objects)}")
            return None
        if kinds is not None and objects[name].type not in kinds:
            err(path, f"step {i + 1} ({wf.steps[i].skill}): {name!r} is a {objects[name].type}, not a "
                f"{' / '.join(sorted(kinds))}", f"name one of: {', '.join(n for n, o in objects.items() if o.type in kinds) or 'none in this scene'}")
            return None
        return objects[name]

    def part(i, target, kinds, role):
        path = ("steps", i, wf.steps[i].skill, "target")
        dev, _, rest = target.partition(".")
        if rest != role:
            err(path, f"step {i + 1} ({wf.steps[i].skill}): target {target!r} should be <device>.{role}",
                f"write `target: {dev}.{role}`")
            return None
        return dev if ref(i, "target", dev, kinds, "device") else None

    arms = [arm.name for arm in profile.arms]
    for i, step in enumerate(wf.steps):
        skill, a = step.skill, step.args
        path = ("steps", i, skill)
        if profile.bimanual and step.arm not in arms:
            err(("steps", i, "arm") if step.arm else path, f"step {i + 1} ({skill}): robot {wf.robot} has two arms; "
                f"the step names {'arm ' + repr(step.arm) if step.arm else 'none'}", f"add `arm: {arms[0]}` (one of {', '.join(arms)})")
            continue
        if not profile.bimanual and step.arm not in (None, arms[0]):
            err(("steps", i, "arm"), f"step {i + 1} ({skill}): robot {wf.robot} has one arm; `arm: {step.arm}` names none",
                "remove `arm:`")
            continue
        if skill == "handover":
            if not profile.bimanual:
                err(path, f"step {i + 1} (handover): a hand-over needs two arms; robot {wf.robot} has one",
                    "use a bimanual robot (labvla-genesis robots)")
            elif a.to not in arms or a.to == step.arm:
                err(("steps", i, skill, "to"), f"step {i + 1} (handover): `to: {a.to}` must be the other arm",
                    f"write `to: {next(n for n in arms if n != step.arm)}`")
            elif s.held != a.object:
                err(path, f"step {i + 1} (handover): {a.object!r} is not in the {step.arm} hand",
                    f"add `- pick: {{object: {a.object}}}` with `arm: {step.arm}` before step {i + 1}")
            elif not (profile.reachable(a.at, step.arm) and profile.reachable(a.at, a.to)):
                err(("steps", i, skill, "at"), f"step {i + 1} (handover): ({a.at[0]}, {a.at[1]}) is not inside both arms' reach",
                    "choose a point between the arms")
            continue
        full_hand = (f"step {i + 1} ({skill}): the hand still holds {s.held!r} (picked at step {s.held_since + 1})",
                     f"add `- place: {{object: {s.held}, on: <surface>}}` before step {i + 1}")
        if skill == "pick":
            if ref(i, "object", a.object, GRASPABLE) is None:
                continue
            if s.held is not None:
                err(path, *full_hand)
                continue
            if s.on.get(a.object) in s.devices_on and objects[s.on[a.object]].type == "hot_plate":
                err(path, f"step {i + 1} (pick): re-pick risk: {a.object} stands on {s.on[a.object]}, which is "
                    "switched on (hot glassware)", "pick it before switching the hot plate on")
            elif a.object in s.placed:
                err(path, f"step {i + 1} (pick): re-pick risk: {a.object} is grasped a second time after being put "
                    "down; every re-grasp is a new chance to miss", "merge the two carries into one if you can",
                    severity="warning")
            s.held, s.held_since = a.object, i
            s.on.pop(a.object, None)
        elif skill == "place":
            if ref(i, "object", a.object, GRASPABLE) is None:
                continue
            if s.held != a.object:
                err(path, f"step {i + 1} (place): {a.object!r} is not in the hand"
                    + (f" (the hand holds {s.held!r})" if s.held else " (the hand is empty)"),
                    f"add `- pick: {{object: {a.object}}}` before step {i + 1}")
                continue
            if a.on is not None:
                target = ref(i, "on", a.on, SURFACES | DOOR_DEVICES)
                if target is None:
                    continue
                if target.type in DOOR_DEVICES and a.on not in s.doors_open:
                    err(("steps", i, skill, "on"), f"step {i + 1} (place): {a.on} is closed; cannot place into it",
                        f"add `- open: {{target: {a.on}.door}}` before picking {a.object} (the hand must be empty to open)")
                    continue
                if target.type in DOOR_DEVICES:
                    err(("steps", i, skill, "on"), f"step {i + 1} (place): placing inside a {target.type} is not "
                        "simulated yet; `generate` rejects these attempts", "place on a hot_plate / target_zone or at: [x, y]",
                        severity="warning")
                s.on[a.object] = a.on
            else:
                x, y = a.at
                if not (profile.reachable((x, y), step.arm) if profile.bimanual else REACH_MIN <= math.hypot(x, y) <= REACH_MAX):
                    err(("steps", i, skill, "at"), f"step {i + 1} (place): ({x}, {y}) is outside the reach "
                        f"{REACH_MIN}..{REACH_MAX} m of the {wf.robot}", "choose a point nearer the robot")
                s.on[a.object] = "bench"
            s.held = None
            s.placed.add(a.object)
        elif skill == "pour":
            src = ref(i, "from", a.from_, CONTAINERS)
            dst = ref(i, "to", a.to, CONTAINERS)
            if src is None or dst is None:
                continue
            if a.from_ == a.to:
                err(("steps", i, skill, "to"), f"step {i + 1} (pour): pours {a.to!r} into itself", "name another container")
            if s.held != a.from_:
                err(path, f"step {i + 1} (pour): {a.from_!r} is not held; pouring needs it in the hand",
                    f"add `- pick: {{object: {a.from_}}}` before step {i + 1}")
            if not src.liquid or a.from_ in s.emptied:
                err(("steps", i, skill, "from"), f"step {i + 1} (pour): {a.from_!r} holds no liquid"
                    + (" any more (poured out earlier)" if a.from_ in s.emptied else ""),
                    f"add `contents: {{liquid: 0.5}}` to {a.from_} in the scene")
            s.emptied.add(a.from_)
            dst.liquid = True
        elif skill in ("press", "pressZ"):
            dev = part(i, a.target, BUTTON_DEVICES, "button")
            if s.held is not None:
                err(path, *full_hand)
            if dev:
                s.devices_on.add(dev)
        elif skill in ("open", "close"):
            dev = part(i, a.target, DOOR_DEVICES, "door")
            if s.held is not None:
                err(path, *full_hand)
            if dev and skill == "open":
                if dev in s.doors_open:
                    err(path, f"step {i + 1} (open): {dev} is already open", "remove the step", severity="warning")
                s.doors_open.add(dev)
            elif dev:
                inside = [o for o, where in s.on.items() if where == dev]
                if inside:
                    err(path, f"step {i + 1} (close): re-pick risk: {', '.join(inside)} stay inside {dev}",
                        "take them out first if a later step needs them", severity="warning")
                s.doors_open.discard(dev)
        elif skill == "stir":
            ref(i, "object", a.object, CONTAINERS)
            if ref(i, "with", a.with_, {"stirring_rod"}) is not None and s.held != a.with_:
                err(path, f"step {i + 1} (stir): the rod {a.with_!r} is not held",
                    f"add `- pick: {{object: {a.with_}}}` before step {i + 1}")
        elif skill == "shake":
            if ref(i, "object", a.object, CONTAINERS | {"reagent_bottle"}) is not None and s.held != a.object:
                err(path, f"step {i + 1} (shake): {a.object!r} is not held", f"add `- pick: {{object: {a.object}}}` before step {i + 1}")
        elif skill == "move":
            x, y, z = a.to
            if not REACH_MIN <= math.hypot(x, y) <= REACH_MAX or not 0.02 <= z <= 0.6:
                err(("steps", i, skill, "to"), f"step {i + 1} (move): ({x}, {y}, {z}) is outside the reach of the "
                    f"{wf.robot} (xy {REACH_MIN}..{REACH_MAX} m from the base, z 0.02..0.6 m)", "choose a nearer point")
    issues.sort(key=lambda it: (it.where.line, it.where.column))
    return issues
