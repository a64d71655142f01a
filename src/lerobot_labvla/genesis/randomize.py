"""Scenes from a workflow: LabUtopia's own scene recipe, or the workflow's objects jittered per seed
under a varied light, with one of the workflow's wordings of its instruction."""

from __future__ import annotations

import dataclasses

import numpy as np

from lerobot_labvla.genesis.workflow import Workflow
from lerobot_labvla.sim import assets as A
from lerobot_labvla.sim.assets.stirring import stirring_rod
from lerobot_labvla.sim.scene import SceneBuilder

# size -> (radius, height) of graspable glassware, inside LabUtopia's `id` ranges where they overlap.
BEAKER_SIZES = {"small": (0.022, 0.09), "medium": (0.024, 0.10), "large": (0.026, 0.11)}
COLOR_RGBA = {
    "clear": (0.7, 0.85, 1.0, 0.45), "blue": (0.55, 0.7, 1.0, 0.5), "green": (0.6, 0.95, 0.7, 0.45),
    "amber": (1.0, 0.65, 0.2, 0.55), "pink": (1.0, 0.55, 0.75, 0.5), "red": (0.9, 0.2, 0.15, 1.0),
    "yellow": (0.9, 0.75, 0.1, 1.0), "white": (0.9, 0.9, 0.88, 1.0), "grey": (0.5, 0.5, 0.52, 1.0),
}
MAX_PARTICLES = 24  # a full medium beaker; LabUtopia's pour scene uses 20-30


def _labutopia_scene(split):
    """LabUtopia's lab scene (robot, its cameras, light) without task objects."""
    from lerobot_labvla.envs.labutopia import tasks

    make = getattr(tasks, "scene", None) or tasks._scene  # public name requested from issue 10 (NOTES.md)
    return make


def build_scene(wf: Workflow, rng: np.random.Generator, split) -> tuple[SceneBuilder, dict]:
    """A `SceneBuilder` for one episode and its context: {"objects": name -> type, "liquids": vessel -> liquid}."""
    if wf.scene.labutopia is not None:
        from lerobot_labvla.envs.labutopia.tasks import get_task

        builder, ctx = get_task(wf.scene.labutopia).build(rng, split)
        from lerobot_labvla.genesis.validate import task_roles

        liquids = {ctx["src"]: ctx["liquid"]} if "liquid" in ctx and "src" in ctx else {}
        ctx = dict(ctx, objects={n: a.category for n, a in builder.assets.items()}, liquids=liquids,
                   labutopia=wf.scene.labutopia, roles=task_roles(ctx, builder.assets))
        return builder, ctx
    pours = any(s.skill == "pour" for s in wf.steps)
    b = _labutopia_scene(split)(vary_lighting(split, rng), grasp_assist=pours)
    liquids = {}
    for o in wf.scene.objects:
        x, y = o.at[0] + rng.uniform(-wf.scene.jitter, wf.scene.jitter), o.at[1] + rng.uniform(-wf.scene.jitter, wf.scene.jitter)
        pos, rgba = [x, y, 0.0], COLOR_RGBA[o.color]
        if o.type == "beaker":
            r, h = BEAKER_SIZES[o.size]
            b.add(A.beaker, o.name, pos, radius=r, height=h, rgba=rgba)
        elif o.type == "flask":
            b.add(A.flask, o.name, pos, rgba=rgba)
        elif o.type == "graduated_cylinder":
            b.add(A.graduated_cylinder, o.name, pos, rgba=rgba)
        elif o.type == "test_tube":
            b.add(A.test_tube, o.name, pos, rgba=rgba)
        elif o.type == "reagent_bottle":
            b.add(A.reagent_bottle, o.name, pos)
        elif o.type == "stirring_rod":
            b.add(stirring_rod, o.name, pos)
        elif o.type == "hot_plate":
            b.add(A.hot_plate, o.name, pos)
        elif o.type == "button_panel":
            b.add(A.button_panel, o.name, pos, rgba=rgba if o.color != "clear" else (0.1, 0.55, 0.15, 1))
        elif o.type == "cabinet":
            b.add(A.cabinet, o.name, pos)
        elif o.type == "target_zone":
            b.add(A.target_zone, o.name, pos, rgba=rgba if o.color != "clear" else (0.1, 0.7, 0.2, 0.6))
        if o.contents is not None:
            asset = b.assets[o.name]
            inner = asset.params["radius"] - asset.params.get("wall", 0.004)
            count = max(4, round(o.contents.liquid * MAX_PARTICLES))
            b.add(A.particles, f"{o.name}_liquid", [x, y, 0.004], inner, count=count)
            liquids[o.name] = f"{o.name}_liquid"
    wordings = [wf.instruction, *wf.paraphrases]
    return b, {"objects": {o.name: o.type for o in wf.scene.objects}, "liquids": liquids, "roles": {},
               "instruction": wordings[int(rng.integers(len(wordings)))]}


def vary_lighting(split, rng: np.random.Generator):
    """The split's light moved by up to 25 cm and dimmed/brightened by 15 %, the bench tinted by 3 %."""
    pos = np.asarray(split.light_pos) + rng.uniform(-0.25, 0.25, 3) * [1, 1, 0.4]
    diffuse = np.clip(np.asarray(split.light_diffuse) * rng.uniform(0.85, 1.15), 0, 1)
    bench = np.clip(np.asarray(split.bench_rgba) + [*rng.uniform(-0.03, 0.03, 3), 0.0], 0, 1)
    return dataclasses.replace(split, light_pos=tuple(pos.tolist()), light_diffuse=tuple(diffuse.tolist()),
                               bench_rgba=tuple(bench.tolist()))
