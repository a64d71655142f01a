"""Scenes from a workflow, randomized along six axes (+ instruction paraphrasing).

Without `randomize:` (in the workflow or `--randomize`) a scene is what it always was: LabUtopia's
own recipe, or the workflow's objects jittered per seed under a varied light with one of the
workflow's wordings. With a preset or ranges (genesis/axes.py) the scene builder lays the objects
out (genesis/scene_builder.py), adds clutter, moves the cameras and the light, recolours what no
text names, textures the bench and paraphrases the instruction; it validates the scene and redraws
the layout until every check passes. Every axis draws from its own stream of the episode seed, so
one axis's range never changes another axis's draw, and nothing changes what the steps ask for.
"""

from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np

from lerobot_labvla.errors import LabVLAError
from lerobot_labvla.genesis import assets as L
from lerobot_labvla.genesis import scene_builder as SB
from lerobot_labvla.genesis.axes import Randomization, resolve
from lerobot_labvla.genesis.paraphrase import paraphrase, protected_words
from lerobot_labvla.genesis.workflow import Workflow
from lerobot_labvla.sim import assets as A
from lerobot_labvla.sim.assets.stirring import stirring_rod
from lerobot_labvla.sim.scene import SceneBuilder

BEAKER_SIZES = L.BEAKER_SIZES
COLOR_RGBA = L.GLASS_RGBA
MAX_PARTICLES = L.MAX_PARTICLES
LAYOUT_TRIES = 12  # layouts drawn per episode before the scene is rejected
STREAMS = ("layout", "camera", "lighting", "appearance", "jitter", "clutter", "language")


class SceneRejected(LabVLAError):
    """No layout passed every validation check; `failed` maps check -> why (of the last layout)."""

    def __init__(self, failed: dict[str, str], tries: int):
        self.failed = failed
        super().__init__(f"no valid layout in {tries} tries; last failed {', '.join(failed)}: "
                         + " | ".join(f"{k}: {v}" for k, v in failed.items()))


def _labutopia_scene(split):
    """LabUtopia's lab scene (robot, its cameras, light) without task objects."""
    from lerobot_labvla.envs.labutopia import tasks

    make = getattr(tasks, "scene", None) or tasks._scene  # public name requested from issue 10 (NOTES.md)
    return make


def build_scene(wf: Workflow, rng: np.random.Generator, split, randomize=None) -> tuple[SceneBuilder, dict]:
    """A `SceneBuilder` for one episode and its context: {"objects": name -> type, "liquids": vessel -> liquid}.

    `randomize` (a preset name, ranges, or None for the workflow's own `randomize:`) selects the
    randomized path; with neither, the scene is the legacy one.
    """
    rz = resolve(randomize if randomize is not None else getattr(wf, "randomize", None))
    if rz is not None:
        return randomized_scene(wf, rng, split, rz)
    return _legacy_scene(wf, rng, split)


def _legacy_scene(wf: Workflow, rng: np.random.Generator, split) -> tuple[SceneBuilder, dict]:
    if wf.scene.labutopia is not None:
        from lerobot_labvla.envs.labutopia.tasks import get_task

        builder, ctx = get_task(wf.scene.labutopia).build(rng, split)
        from lerobot_labvla.genesis.validate import task_roles

        liquids = {ctx["src"]: ctx["liquid"]} if "liquid" in ctx and "src" in ctx else {}
        ctx = dict(ctx, objects={n: a.category for n, a in builder.assets.items()}, liquids=liquids,
                   labutopia=wf.scene.labutopia, roles=task_roles(ctx, builder.assets))
        return builder, ctx
    pours = any(s.skill == "pour" for s in wf.steps)
    b = _labutopia_scene(split)(vary_lighting(split, rng), grasp_assist=pours, robot=wf.robot)
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
            # small: a slim 15 cm bottle (fits the ViperX gripper and leaves room for a hand-over grasp)
            b.add(A.reagent_bottle, o.name, pos, **({"radius": 0.02, "height": 0.15} if o.size == "small" else {}))
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


# --- the randomized path ---------------------------------------------------------------------------
def randomized_scene(wf: Workflow, rng: np.random.Generator, split, rz: Randomization) -> tuple[SceneBuilder, dict]:
    """A validated scene under `rz`; raises `SceneRejected` when no layout passes in LAYOUT_TRIES draws."""
    streams = dict(zip(STREAMS, rng.spawn(len(STREAMS))))
    split = light(split, streams["lighting"], rz)
    cameras = camera_poses(streams["camera"], rz)
    bench = bench_texture(streams["appearance"], rz)
    if wf.scene.labutopia is not None:  # the benchmark fixes layout, objects and their colours
        builder, ctx = _legacy_scene(wf, rng, split)
        _apply_views(builder, cameras, bench)
        ctx["instruction"] = _instruction(wf, ctx.get("instruction", wf.instruction), streams["language"], rz)
        ctx["randomization"] = drawn(rz, split, cameras, bench)
        return builder, ctx
    fails: dict[str, str] = {}
    for plan, builder, liquids, fails in layouts(wf, rz, streams, split, cameras, bench):
        if not fails:
            break
    else:
        raise SceneRejected(fails, LAYOUT_TRIES)
    ctx = {"objects": {o.name: o.type for o in wf.scene.objects}, "liquids": liquids, "roles": {},
           "instruction": _instruction(wf, wf.instruction, streams["language"], rz),
           "randomization": drawn(rz, split, cameras, bench, plan)}
    return builder, ctx


def drawn(rz: Randomization, split, cameras: dict, bench: dict | None, plan: SB.ScenePlan | None = None) -> dict:
    """What this episode's randomization drew, per axis (JSON-ready; stored in `episode_metadata.randomization`):
    the preset, the axes it varies, the fixed cameras' poses, the light, the bench texture, every placed object's
    variant, position, yaw, colour and material (layout, jitter and appearance together; LabUtopia scenes keep
    their own layout: none), and the clutter's variants."""
    placed = [] if plan is None else plan.placements
    return {"preset": rz.preset, "axes": list(rz.axes), "cameras": cameras,
            "lighting": {"pos": np.round(split.light_pos, 4).tolist(), "dir": np.round(split.light_dir, 4).tolist(),
                         "diffuse": np.round(split.light_diffuse, 4).tolist()},
            "bench": bench,
            "objects": {p.name: {"variant": p.variant.id, "xy": np.round(p.xy, 4).tolist(), "yaw": round(float(p.yaw), 4),
                                 "rgba": None if p.rgba is None else np.round(p.rgba, 3).tolist(), "material": p.material}
                        for p in placed if not p.clutter},
            "clutter": [p.variant.id for p in placed if p.clutter],
            "clutter_placed": {p.name: {"variant": p.variant.id, "xy": np.round(p.xy, 4).tolist(),
                                        **({"z": round(p.z, 4), "on": p.on} if p.on else {})}
                               for p in placed if p.clutter}}


def layouts(wf: Workflow, rz: Randomization, streams: dict, split, cameras: dict, bench: dict | None,
            tries: int = LAYOUT_TRIES, all_checks: bool = False):
    """Up to `tries` layouts as (plan, builder, liquids, failed checks); the physics checks run only on
    layouts that pass the geometric ones, unless `all_checks` (then builder/liquids are always set)."""
    looks = appearance(wf, streams["appearance"], rz, _texts(wf))
    for _ in range(tries):
        plan = SB.plan_scene(wf, rz, streams["layout"], streams["jitter"], streams["clutter"])
        for p in plan.placements:
            p.rgba, p.material = looks.get(p.name, (None, None))
        fails = SB.check_plan(plan)
        builder, liquids = None, {}
        if not fails or all_checks:
            builder, liquids = realize(wf, plan, split, cameras, bench)
            fails |= SB.check_sim(validation_sim(builder), plan, liquids)
        yield plan, builder, liquids, fails


def realize(wf: Workflow, plan: SB.ScenePlan, split, cameras: dict,
            bench: dict | None = None) -> tuple[SceneBuilder, dict[str, str]]:
    """The plan as a `SceneBuilder` (LabUtopia's bench, robot, cameras, light) and its vessel -> liquid map."""
    pours = any(s.skill == "pour" for s in wf.steps)
    b = _labutopia_scene(split)(split, grasp_assist=pours, robot=wf.robot)
    liquids = {}
    for p in plan.placements:
        L.build(b, p.variant, p.name, p.xy, p.yaw, rgba=p.rgba, material=p.material, z=p.z)
        if f"{p.name}_liquid" in b.assets:
            liquids[p.name] = f"{p.name}_liquid"
    _apply_views(b, cameras, bench)
    return b, liquids


def validation_sim(builder: SceneBuilder):
    """A `Sim` of a copy of the builder's spec (building twice would add the grasp welds twice)."""
    clone = copy.copy(builder)
    clone.spec = builder.spec.copy()
    clone.world = clone.spec.worldbody
    clone.assets = dict(builder.assets)
    sim = clone.build()
    sim.reset(home_qpos(builder))
    return sim


def home_qpos(builder: SceneBuilder) -> np.ndarray:
    """The home pose of the builder's robot (its first arm), the FR3's when it has no profile."""
    from lerobot_labvla.sim.robots.fr3 import HOME_QPOS

    profile = getattr(builder, "profile", None)
    return np.asarray(profile.arms[0].home, float) if profile is not None else HOME_QPOS


def light(split, rng: np.random.Generator, rz: Randomization):
    """The split's light moved, tilted, scaled and tinted within the lighting ranges."""
    ax = rz.lighting
    pos = np.asarray(split.light_pos) + rng.uniform(-ax.position, ax.position, 3) * [1, 1, 0.4]
    direction = np.asarray(split.light_dir, float)
    direction = direction / np.linalg.norm(direction)
    if ax.direction:
        tilt, about = rng.uniform(0, ax.direction), rng.uniform(0, 2 * math.pi)
        side = np.cross(direction, [1.0, 0, 0] if abs(direction[0]) < 0.9 else [0, 1.0, 0])
        side /= np.linalg.norm(side)
        other = np.cross(direction, side)
        direction = math.cos(tilt) * direction + math.sin(tilt) * (math.cos(about) * side + math.sin(about) * other)
    scale = rng.uniform(*ax.intensity)
    tint = rng.uniform(-ax.tint, ax.tint, 3)
    diffuse = np.clip(np.asarray(split.light_diffuse) * scale + tint, 0, 1)
    return dataclasses.replace(split, light_pos=tuple(pos.tolist()), light_dir=tuple(direction.tolist()),
                               light_diffuse=tuple(diffuse.tolist()))


def camera_poses(rng: np.random.Generator, rz: Randomization) -> dict[str, dict]:
    """Each fixed camera's position, look-at point and field of view around its nominal pose."""
    from lerobot_labvla.envs.labutopia.tasks import FIXED_CAMERAS

    ax, out = rz.camera, {}
    for name, cam in FIXED_CAMERAS.items():
        out[name] = {"pos": (np.asarray(cam["pos"]) + rng.uniform(-ax.pos, ax.pos, 3)).round(4).tolist(),
                     "lookat": (np.asarray(cam["lookat"]) + rng.uniform(-ax.lookat, ax.lookat, 3)).round(4).tolist(),
                     "fovy": round(float(cam["fovy"] + rng.uniform(-ax.fovy, ax.fovy)), 3)}
    return out


def _xyaxes(pos, lookat) -> list[float]:
    forward = np.asarray(lookat, float) - np.asarray(pos, float)
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, [0, 0, 1.0])
    right /= np.linalg.norm(right)
    return [*right, *np.cross(right, forward)]


BENCH_TEXTURES = ("checker", "gradient", "flat")


def bench_texture(rng: np.random.Generator, rz: Randomization) -> dict | None:
    """A procedural bench texture (kind, two colours, repeat, shininess), or None without `appearance.texture`."""
    if not rz.appearance.texture:
        return None
    base = rng.uniform(0.7, 1.0, 3)
    return {"kind": BENCH_TEXTURES[int(rng.integers(len(BENCH_TEXTURES)))], "rgb1": base.round(3).tolist(),
            "rgb2": (base * rng.uniform(0.6, 0.9)).round(3).tolist(), "repeat": int(rng.integers(2, 9)),
            "shininess": round(float(rng.uniform(0.0, 0.6)), 3)}


def _apply_views(b: SceneBuilder, cameras: dict, bench: dict | None) -> None:
    """Move the fixed cameras to `cameras` and put the `bench` texture (if any) on the bench top."""
    import mujoco

    for name, cam in cameras.items():
        c = b.spec.camera(name)
        c.pos = cam["pos"]
        c.alt.xyaxes = _xyaxes(cam["pos"], cam["lookat"])
        c.fovy = cam["fovy"]
    if bench is not None:
        builtin = {"checker": mujoco.mjtBuiltin.mjBUILTIN_CHECKER, "gradient": mujoco.mjtBuiltin.mjBUILTIN_GRADIENT,
                   "flat": mujoco.mjtBuiltin.mjBUILTIN_FLAT}[bench["kind"]]
        b.spec.add_texture(name="bench_tex", type=mujoco.mjtTexture.mjTEXTURE_2D, builtin=builtin, width=64, height=64,
                           rgb1=bench["rgb1"], rgb2=bench["rgb2"])
        mat = b.spec.add_material(name="bench_mat", texrepeat=[float(bench["repeat"])] * 2, shininess=bench["shininess"])
        mat.textures[mujoco.mjtTextureRole.mjTEXROLE_RGB] = "bench_tex"
        for g in b.spec.body("bench").geoms:
            g.material = "bench_mat"


def _texts(wf: Workflow) -> str:
    return " ".join([wf.instruction, *wf.paraphrases, *[s.instruction or "" for s in wf.steps]]).lower()


def appearance(wf: Workflow, rng: np.random.Generator, rz: Randomization, texts: str) -> dict[str, tuple]:
    """name -> (rgba or None, material or None): recoloured where no text names the object's colour, never to a named colour."""
    words = set(texts.replace(",", " ").replace(".", " ").split())
    named = {c for c in COLOR_RGBA if c in words}
    palette = [c for c in ("clear", "blue", "green", "amber", "pink") if c not in named]
    out = {}
    for o in wf.scene.objects:
        if L.FAMILIES[o.type].role != "glassware" or o.type in ("stirring_rod", "reagent_bottle"):
            continue
        rgba, material = None, None
        if palette and o.color not in named and rng.random() < rz.appearance.recolor:
            rgba = COLOR_RGBA[palette[int(rng.integers(len(palette)))]]
        if rz.appearance.material and rng.random() < 0.5:
            base = rgba or COLOR_RGBA[o.color]
            rgba, material = (*base[:3], max(base[3], L.MATERIAL_ALPHA["plastic"])), "plastic"
        out[o.name] = (rgba, material)
    return out


def _instruction(wf: Workflow, instruction: str, rng: np.random.Generator, rz: Randomization) -> str:
    if not rz.language.paraphrase:
        return instruction
    return paraphrase(instruction, rng, list(wf.paraphrases) if wf.scene.labutopia is None else [], protected_words(wf))
