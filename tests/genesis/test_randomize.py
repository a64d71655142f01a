"""Domain randomization: every axis varies what it names and nothing else, presets never change what the
protocol asks (objects, sizes, liquids, steps, targets), and a randomized episode runs and stores its wording."""

from __future__ import annotations

import json

import numpy as np
import pytest
from genesis_helpers import EXAMPLES

from lerobot_labvla.envs.labutopia.splits import get_split
from lerobot_labvla.genesis.axes import AXES, Randomization, resolve
from lerobot_labvla.genesis.randomize import build_scene
from lerobot_labvla.genesis.skills import WorkflowTask, resolve_roles
from lerobot_labvla.genesis.workflow import load_workflow, parse_workflow
from lerobot_labvla.sim.robots.fr3 import HOME_QPOS

SPLIT = get_split("id")
WORKFLOWS = ["heat_beaker_custom.yaml", "pour_into_wide_beaker.yaml", "oven_open_close.yaml", "stir_solution.yaml"]


def _scene(wf, seed, rz):
    builder, ctx = build_scene(wf, np.random.default_rng(seed), SPLIT, rz)
    sim = builder.build()
    sim.reset(HOME_QPOS)  # positions are read from data: forward kinematics first
    return builder, ctx, sim


def _meaning(wf, ctx, sim) -> dict:
    """What the protocol asks in this episode: objects and their physical parameters, liquids, compiled steps."""
    task = {n: (a.category, {k: round(v, 6) for k, v in a.params.items() if k in ("radius", "height", "count", "travel")})
            for n, a in sim.assets.items() if not n.startswith("clutter_")}
    steps = [resolve_roles(s, ctx["roles"]).model_dump(by_alias=True, exclude={"instruction"}) for s in wf.steps]
    return {"objects": ctx["objects"], "liquids": ctx["liquids"], "assets": task, "steps": steps,
            "budget": WorkflowTask.from_workflow(wf).episode_length}


@pytest.mark.parametrize("name", WORKFLOWS)
def test_presets_never_change_what_the_protocol_asks(name):
    wf = load_workflow(EXAMPLES / name).workflow
    before = wf.model_dump()
    words = set(" ".join([wf.instruction, *wf.paraphrases, *[s.instruction or "" for s in wf.steps]]).lower().split())
    for seed in (0, 1):
        ref = _meaning(wf, *_scene(wf, seed, "none")[1:])
        for preset in ("light", "full"):
            _, ctx, sim = _scene(wf, seed, preset)
            assert _meaning(wf, ctx, sim) == ref, (preset, seed)
            clutter = {a.category for n, a in sim.assets.items() if n.startswith("clutter_")}
            assert not clutter & ({o.type for o in wf.scene.objects} | words)  # distractors are never what a step names
            for o in wf.scene.objects:  # a colour the texts name is kept
                if o.color != "clear" and o.color in words and o.type == "beaker":
                    rgba = sim.model.geom_rgba[sim.model.body(o.name).geomadr[0]]
                    assert np.allclose(rgba[:3], resolve_color(o.color)[:3]), (o.name, rgba)
    assert wf.model_dump() == before


def resolve_color(name):
    from lerobot_labvla.genesis.assets import GLASS_RGBA

    return GLASS_RGBA[name]


def test_labutopia_scenes_keep_the_benchmark_layout_under_randomization():
    wf = load_workflow(EXAMPLES / "labutopia_pour_liquid.yaml").workflow
    b0, c0, s0 = _scene(wf, 7, "none")
    b1, c1, s1 = _scene(wf, 7, "full")
    assert c0["roles"] == c1["roles"] and c0["objects"] == c1["objects"] and c0["liquids"] == c1["liquids"]
    assert _positions(s0) == _positions(s1) and any(np.any(p) for p in _positions(s0).values())
    cam = s0.model.camera("front").id
    assert not np.allclose(s0.model.cam_pos[cam], s1.model.cam_pos[cam])  # while the view moved


def _positions(sim):
    return {n: sim.body_pos(a.body).round(6).tolist() for n, a in sim.assets.items()}


def _colours(sim) -> dict:
    """Geom colours of every body but clutter, by body name."""
    m = sim.model
    return {m.body(b).name: m.geom_rgba[m.body(b).geomadr[0]: m.body(b).geomadr[0] + m.body(b).geomnum[0]].round(4).tolist()
            for b in range(m.nbody) if not m.body(b).name.startswith("clutter_")}


def test_each_axis_varies_only_itself():
    wf = load_workflow(EXAMPLES / "heat_beaker_custom.yaml").workflow
    full = resolve("full")
    _, ctx0, s0 = _scene(wf, 3, "none")
    m0 = s0.model
    for axis in AXES:
        rz = Randomization.model_validate({"preset": "none", axis: getattr(full, axis).model_dump()})
        assert rz.axes == (axis,)
        _, ctx, s = _scene(wf, 3, rz)
        m = s.model
        changed = {
            "layout/jitter/clutter": _positions(s) != _positions(s0),
            "camera": not np.allclose(m.cam_pos, m0.cam_pos) or not np.allclose(m.cam_fovy, m0.cam_fovy),
            "lighting": not np.allclose(m.light_diffuse, m0.light_diffuse) or not np.allclose(m.light_dir, m0.light_dir),
            "appearance": m.nmat != m0.nmat or _colours(s) != _colours(s0),
            "language": ctx["instruction"] != ctx0["instruction"],
        }
        key = "layout/jitter/clutter" if axis in ("layout", "jitter", "clutter") else axis
        assert changed[key], axis
        assert not any(v for k, v in changed.items() if k != key), (axis, changed)


def test_same_seed_same_scene_other_seed_other_scene():
    wf = load_workflow(EXAMPLES / "pour_into_wide_beaker.yaml").workflow
    _, c1, s1 = _scene(wf, 11, "full")
    _, c2, s2 = _scene(wf, 11, "full")
    _, c3, s3 = _scene(wf, 12, "full")
    assert _positions(s1) == _positions(s2) and c1["instruction"] == c2["instruction"]
    assert np.array_equal(s1.model.geom_rgba, s2.model.geom_rgba) and np.array_equal(s1.model.cam_pos, s2.model.cam_pos)
    assert _positions(s1) != _positions(s3)


def test_workflow_ranges_override_the_preset_and_bad_ones_point_at_the_line():
    text = (EXAMPLES / "pour_into_wide_beaker.yaml").read_text()
    wf = parse_workflow(text + "randomize: {preset: light, clutter: {count: [3, 3]}}\n").workflow
    assert wf.randomize.clutter.count == (3, 3) and wf.randomize.camera.pos == resolve("light").camera.pos
    _, ctx, sim = _scene(wf, 0, None)  # None: the workflow's own ranges
    assert len(ctx["randomization"]["clutter"]) == 3 == sum(n.startswith("clutter_") for n in sim.assets)
    with pytest.raises(Exception, match=r":\d+:\d+: randomize.camera.pos: .*less than or equal to 0.15"):
        parse_workflow(text + "randomize: {camera: {pos: 2.0}}\n", "wf.yaml")


def test_randomized_episode_succeeds_and_its_task_is_the_paraphrase():
    from lerobot_labvla.envs.labutopia.env import LabUtopiaEnv
    from lerobot_labvla.genesis.runner import EpisodeJob, run_episode

    path = EXAMPLES / "heat_beaker_custom.yaml"
    r = run_episode(EpisodeJob(path.read_text(), str(path), 0, 1000, 32, "/nonexistent", record=False, randomize="light"))
    assert r.kept, (r.reason, r.detail)
    # The runner records `env.task_description` as the episode's task (and in its metadata).
    wf = load_workflow(path).workflow.model_copy(update={"randomize": resolve("light")})
    env = LabUtopiaEnv(WorkflowTask.from_workflow(wf), "id", obs_type="agent_pos", render_mode=None, image_size=32)
    tasks = []
    for seed in (1000, 1001, 1002, 1003):
        env.reset(seed=seed)
        _, ctx = build_scene(wf, np.random.default_rng(seed), SPLIT)  # gymnasium seeds the same way
        assert env.task_description == ctx["instruction"]
        tasks.append(env.task_description)
    env.close()
    assert len(set(tasks)) > 1 and all("small" in t and "beaker" in t for t in tasks)


def test_preview_grid_has_a_row_per_axis_and_each_row_differs_from_none(tmp_path, capsys):
    from PIL import Image

    from lerobot_labvla.genesis.cli import main

    out = tmp_path / "grid.png"
    with pytest.raises(SystemExit) as exc:
        main(["preview", str(EXAMPLES / "heat_beaker_custom.yaml"), "--seed", "2", "--cols", "1", "--size", "64",
              "--out", str(out)])
    assert exc.value.code == 0 and "none, layout, camera, lighting, appearance, jitter, clutter, language" in capsys.readouterr().out
    img = np.asarray(Image.open(out).convert("RGB")).astype(int)
    rows = [img[r * 90: r * 90 + 64, 92:] for r in range(img.shape[0] // 90)]
    assert len(rows) == len(AXES) + 2
    for name, row in zip(["layout", "camera", "lighting", "appearance", "jitter", "clutter"], rows[1:7]):
        assert np.abs(row - rows[0]).mean() > 0.05, name  # the axis changed the first frame
    assert np.array_equal(rows[7], rows[0])  # language changes the caption only


def test_the_draws_of_every_axis_are_stored_in_the_episode_metadata(tmp_path):
    """A recorded episode carries `episode_metadata.randomization` (published as the `annotation.episode_metadata`
    column, tests/genesis/test_generate.py): the preset and what each axis drew, equal to the scene the same seed
    builds, and the object stands where the stored layout says."""
    from lerobot_labvla.envs.labutopia.env import LabUtopiaEnv
    from lerobot_labvla.genesis import export
    from lerobot_labvla.genesis.runner import EpisodeJob, run_episode

    path = EXAMPLES / "robots" / "pick_place.yaml"
    r = run_episode(EpisodeJob(path.read_text(), str(path), 0, 7, 32, str(tmp_path), randomize="full"))
    assert r.kept, (r.reason, r.detail)
    meta = json.loads(str(np.load(r.path)["episode_meta"]))
    stored = json.loads(export.episode_columns(meta)["annotation.episode_metadata"])["randomization"]
    wf = load_workflow(path).workflow.model_copy(update={"randomize": resolve("full")})
    _, ctx = build_scene(wf, np.random.default_rng(7), SPLIT)
    assert stored == json.loads(json.dumps(ctx["randomization"]))
    assert stored["preset"] == "full" and set(stored["axes"]) >= {"layout", "camera", "lighting", "clutter"}
    assert len(stored["clutter"]) >= 2 and stored["bench"]["kind"] in ("checker", "gradient", "flat")
    env = LabUtopiaEnv(WorkflowTask.from_workflow(wf), "id", obs_type="agent_pos", render_mode=None, image_size=32)
    env.reset(seed=7)
    assert np.allclose(env.sim.body_pos("beaker")[:2], stored["objects"]["beaker"]["xy"], atol=2e-3)
    assert np.allclose(env.sim.model.cam_pos[env.sim.model.camera("front").id], stored["cameras"]["front"]["pos"], atol=1e-6)
    env.close()
