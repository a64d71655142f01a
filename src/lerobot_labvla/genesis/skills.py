"""Workflow steps -> the sim's atomic skills, each judged by its physical success checker.

`WorkflowTask` is a LabUtopia `Task` whose scene, expert and success rule come from a workflow, so
the env's own observation and action path records the data (genesis/runner.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lerobot_labvla.envs.labutopia.tasks import POUR_FRACTION, Task, get_task
from lerobot_labvla.genesis.randomize import build_scene
from lerobot_labvla.genesis.workflow import Step, Workflow
from lerobot_labvla.sim.scene import Sim
from lerobot_labvla.sim.skills import (
    Motion,
    Target,
    button_pressed,
    close_door,
    door_angle,
    door_open,
    lifted_and_held,
    move,
    open_door,
    particles_inside,
    pick,
    place,
    pour,
    press,
    resting_in_region,
)
from lerobot_labvla.sim.robots import get_profile
from lerobot_labvla.sim.skills.bimanual import _alone, handed_over, handover
from lerobot_labvla.sim.skills.press_z import PressRecord, press_z, pressed_to
from lerobot_labvla.sim.skills.shake import ShakeRecord, shake, shaken
from lerobot_labvla.sim.skills.stir import StirRecord, stir, stirred

# Control-step budget per skill (20 Hz), for the episode length when the workflow gives none.
BUDGET = {"pick": 150, "place": 170, "pour": 260, "press": 120, "pressZ": 140, "open": 230, "close": 220,
          "move": 90, "stir": 200, "shake": 80, "handover": 330}  # + 50 per stir turn, 40 per shake
LIFT = 0.05  # a pick counts once the object is this far up and held by both fingers


def episode_budget(wf: Workflow) -> int:
    if wf.max_steps:
        return wf.max_steps
    base = get_task(wf.scene.labutopia).episode_length if wf.scene.labutopia else 0
    extra = sum(50 * s.stir.turns if s.skill == "stir" else 40 * s.shake.count if s.skill == "shake" else 0
                for s in wf.steps)
    return max(base, sum(BUDGET[s.skill] for s in wf.steps) + extra + 40)


@dataclass
class StepResult:
    index: int
    skill: str
    ok: bool
    explanation: str
    start: int = 0  # frame where the step started
    end: int = 0


def _place_target(sim: Sim, step: Step) -> tuple[np.ndarray, float, np.ndarray]:
    """(xy, surface z, half size of the accepted xy box) of a place step."""
    a = step.place
    if a.at is not None:
        return np.asarray(a.at, float), 0.0, np.array([0.03, 0.03])
    target = sim.assets[a.on]
    obj_r = sim.assets[a.object].params.get("radius", 0.03)
    if target.category == "hot_plate":
        c = sim.site_pos(target.parts["plate"])
        half = (target.params["plate_radius"] - 0.6 * obj_r) / math.sqrt(2)
        return c[:2], float(c[2]), np.array([half, half])
    if target.category == "target_zone":
        p = sim.body_pos(target.body)
        return p[:2], 0.0, np.array([target.params["half_x"], target.params["half_y"]])
    raise NotImplementedError(f"placing on a {target.category} is not simulated yet (hot_plate, target_zone, or at: [x, y])")


def _pour_yaw(sim: Sim, steps: list[Step], i: int, obj: str) -> float:
    """Fingers along x when a later step pours from `obj`, so the mouth can roll towards the target."""
    for later in steps[i + 1:]:
        if later.skill == "pour" and later.pour.from_ == obj:
            plus_y = sim.body_pos(later.pour.to)[1] >= sim.body_pos(obj)[1]
            return math.pi / 2 if plus_y else -math.pi / 2
        if later.skill in ("place",) and later.place.object == obj:
            break
    return 0.0


def resolve_roles(step: Step, roles: dict[str, str]) -> Step:
    """The step with LabUtopia role names (`device`, `obj`, ...) replaced by this episode's object names."""
    if not roles:
        return step

    def sub(v):
        if isinstance(v, str):
            head, dot, tail = v.partition(".")
            return roles.get(head, head) + dot + tail
        return v

    data = step.model_dump(by_alias=True, exclude_none=True)
    data[step.skill] = {k: sub(v) for k, v in data[step.skill].items()}
    return Step.model_validate(data)


@dataclass(frozen=True)
class WorkflowTask(Task):
    """A LabUtopia `Task` built from a workflow: its scene, its steps as the expert, all checkers as success."""

    workflow: Any = None

    @property
    def robot(self) -> str:
        """The workflow's robot profile (the env builds and drives it)."""
        return self.workflow.robot

    @classmethod
    def from_workflow(cls, wf: Workflow) -> WorkflowTask:
        return cls(name=wf.name, gym_id="", instruction=wf.instruction, level="workflow",
                   episode_length=episode_budget(wf), workflow=wf)

    def build(self, rng, split):
        builder, ctx = build_scene(self.workflow, rng, split)
        ctx.update(results=[], step=0, target=None, failed=None, frame=0, base=self.workflow.scene.labutopia)
        return builder, ctx

    # --- the expert: one skill after another, each checked when it ends -------------------------
    def expert(self, m: Motion, ctx: dict) -> Iterator[Target | dict[str, Target]]:
        """Targets of `m`'s arm; on a bimanual robot `{arm: Target}` for every arm (`ctx["target"]`: the step arm's)."""
        wf: Workflow = self.workflow
        arms = [a.name for a in get_profile(wf.robot).arms]
        bimanual = len(arms) > 1
        motions = {a: m if a == m.sim.arm_name else Motion(m.sim.for_arm(a)) for a in arms} if bimanual else {}
        for i, step in enumerate(wf.steps):
            step = resolve_roles(step, ctx["roles"])
            ctx["step"], ctx["current"] = i, step
            start = ctx["frame"]
            if bimanual:
                gen, check = self._skill(motions[step.arm], step, i, ctx, motions)
                if step.skill != "handover":
                    gen = _alone(step.arm, gen, {a: mo for a, mo in motions.items() if a != step.arm})
            else:
                gen, check = self._skill(m, step, i, ctx)
            for target in gen:
                ctx["target"] = target[step.arm] if bimanual else target
                yield target
            ok, why = check()
            ctx["results"].append(StepResult(i, step.skill, ok, why, start, ctx["frame"]))
            if not ok:
                ctx["failed"] = ctx["results"][-1]
                return
        ctx["step"] = len(wf.steps) - 1
        ctx["done"] = True

    def _skill(self, m: Motion, step: Step, i: int, ctx: dict, motions: dict[str, Motion] | None = None):
        sim, a, wf = m.sim, step.args, self.workflow
        s = step.skill
        if s == "handover":
            giver, taker = (step.arm, m), (a.to, motions[a.to])
            gen = handover(giver, taker, a.object, a.at)

            def check():
                ok = handed_over(taker[1].sim, sim, a.object)
                return ok, f"{a.object} {'is' if ok else 'is not'} held by the {a.to} arm alone"
        elif s == "pick":
            start_z = float(sim.body_pos(a.object)[2])
            gen = pick(m, a.object, lift=0.12,
                   yaw=_pour_yaw(sim, [resolve_roles(x, ctx["roles"]) for x in wf.steps], i, a.object))

            def check():
                ok = lifted_and_held(sim, a.object, start_z, LIFT)
                return ok, (f"{a.object} lifted {sim.body_pos(a.object)[2] - start_z:.3f} m and held by both fingers"
                            if ok else f"{a.object} not lifted >= {LIFT} m in a two-finger grasp")
        elif s == "place":
            xy, z, half = _place_target(sim, step)
            where = a.on or f"({a.at[0]:.2f}, {a.at[1]:.2f})"
            gen = place(m, a.object, xy, z)

            def check():
                ok = resting_in_region(sim, a.object, xy, half, z, z_tol=0.012)
                return ok, f"{a.object} {'rests upright on' if ok else 'is not resting upright on'} {where}"
        elif s == "pour":
            liquid = ctx["liquids"].get(a.from_)
            gen = pour(m, a.from_, a.to)
            need = POUR_FRACTION * a.amount

            def check():
                got = particles_inside(sim, liquid, a.to) if liquid else 0.0
                return got >= need, f"{got:.0%} of the liquid of {a.from_} is in {a.to} (needs {need:.0%})"
        elif s == "press":
            dev = a.target.split(".")[0]
            gen = press(m, dev)

            def check():
                ok = button_pressed(sim, dev)
                return ok, f"{dev} {'latched on' if ok else 'did not latch on'}"
        elif s == "pressZ":
            dev, rec = a.target.split(".")[0], PressRecord()
            gen = press_z(m, dev, a.depth, rec)

            def check():
                ok = pressed_to(sim, dev, a.depth, rec)
                return ok, f"{dev} button pressed to {rec.max_fraction:.0%} of its travel (asked {a.depth:.0%}), drift {rec.max_drift * 1000:.1f} mm"
        elif s == "open":
            dev = a.target.split(".")[0]
            gen = open_door(m, dev, a.angle)

            def check():
                ok = door_open(sim, dev, min(1.0, a.angle - 0.2))
                return ok, f"{dev} door at {door_angle(sim, dev):.2f} rad"
        elif s == "close":
            dev = a.target.split(".")[0]
            gen = close_door(m, dev)

            def check():
                ok = door_angle(sim, dev) <= 0.15
                return ok, f"{dev} door at {door_angle(sim, dev):.2f} rad (closed <= 0.15)"
        elif s == "move":
            goal = np.asarray(a.to, float)
            gen = move(m, goal)

            def check():
                d = float(np.linalg.norm(sim.tcp_pos - goal))
                return d < 0.015, f"TCP {d * 100:.1f} cm from {tuple(a.to)}"
        elif s == "stir":
            rec = StirRecord()
            gen = stir(m, a.with_, a.object, a.turns, rec)

            def check():
                ok = stirred(sim, a.with_, a.object, a.turns, rec)
                return ok, f"rod tip swept {rec.swept / (2 * math.pi):.1f} turns inside {a.object} (asked {a.turns})"
        elif s == "shake":
            rec, liquid = ShakeRecord(), ctx["liquids"].get(a.object)
            before = particles_inside(sim, liquid, a.object) if liquid else 1.0
            gen = shake(m, a.object, a.amplitude, a.count, rec)

            def check():
                inside = (lambda: particles_inside(sim, liquid, a.object)) if liquid else None
                ok = shaken(sim, a.object, a.amplitude, a.count, rec, liquid, before, inside)
                return ok, f"{rec.strokes(a.amplitude)} strokes of {a.object} (asked {a.count})" + (
                    f", {inside():.0%} of its liquid kept" if inside else "")
        else:  # pragma: no cover - the schema allows no other skill
            raise NotImplementedError(s)
        return gen, check

    # --- success: every step's checker passed, and the LabUtopia rule where the scene is LabUtopia's --
    def success(self, sim, ctx):
        steps_ok = ctx.get("done", False) and all(r.ok for r in ctx["results"])
        if not steps_ok:
            return False
        return get_task(ctx["base"]).success(sim, ctx) if ctx.get("base") else True

    def progress(self, sim, ctx):
        if self.success(sim, ctx):
            return 1.0
        return sum(r.ok for r in ctx["results"]) / max(1, len(self.workflow.steps) + 1)

    def update(self, sim, ctx):
        if ctx.get("base"):
            base = get_task(ctx["base"])
            if hasattr(base, "update"):
                base.update(sim, ctx)
