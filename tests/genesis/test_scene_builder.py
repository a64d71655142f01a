"""Scene builder: the asset library, greedy placement, and each named validation check failing on a scene
built to break it (and passing on the same scene without the fault)."""

from __future__ import annotations

import json

import mujoco
import numpy as np
import pytest
from genesis_helpers import EXAMPLES, run_main

from lerobot_labvla.envs.labutopia.splits import get_split
from lerobot_labvla.genesis import assets as L
from lerobot_labvla.genesis import scene_builder as SB
from lerobot_labvla.genesis.axes import Randomization, resolve
from lerobot_labvla.genesis.randomize import SceneRejected, camera_poses, randomized_scene, realize, validation_sim
from lerobot_labvla.genesis.workflow import Workflow

SPLIT = get_split("id")


def _wf(objects, steps, jitter=0.0) -> Workflow:
    return Workflow.model_validate({"name": "t", "instruction": "do it", "scene": {"objects": objects, "jitter": jitter},
                                    "steps": steps})


PICK_PLACE = [{"pick": {"object": "cup"}}, {"place": {"object": "cup", "on": "zone"}}]


def _plan(wf: Workflow, extra=()) -> SB.ScenePlan:
    """The workflow's objects at exactly their nominal spots (+ `extra` placements)."""
    placed = [SB.Placement(o.name, L.for_object(o), tuple(o.at)) for o in wf.scene.objects] + list(extra)
    targets, points = SB.step_targets(wf)
    plan = SB.ScenePlan(placed, targets, points)
    plan.segments = SB.carry_segments(wf, plan)
    return plan


def _sim_fails(wf: Workflow, plan: SB.ScenePlan, cameras=None) -> dict:
    builder, liquids = realize(wf, plan, SPLIT, cameras or camera_poses(np.random.default_rng(0), resolve("none")))
    return SB.check_sim(validation_sim(builder), plan, liquids)


def _extra(variant_id: str, name: str, xy, clutter=True) -> SB.Placement:
    return SB.Placement(name, L.variant(variant_id), xy, clutter=clutter)


BASE = _wf([{"name": "cup", "type": "beaker", "size": "medium", "at": [0.5, 0.15], "contents": {"liquid": 0.5}},
            {"name": "zone", "type": "target_zone", "at": [0.5, -0.2]}], PICK_PLACE)


def test_asset_library_has_100_distinct_variants_in_15_families_that_all_compile(capsys):
    vs = L.variants()
    distinct = {(v.family.name, json.dumps(v.kwargs, sort_keys=True), v.fill) for v in vs}
    assert len({v.id for v in vs}) == len(vs) and len(distinct) == len(vs) >= 100
    assert len({v.family.name for v in vs}) >= 15
    spec = mujoco.MjSpec()
    spec.compiler.degree = False

    class B:  # the builder interface `assets.build` needs
        assets = {}

        def add(self, fn, *a, **kw):
            asset = fn(spec.worldbody, *a, **kw)
            self.assets[asset.name] = asset
            return asset

    b = B()
    for i, v in enumerate(vs):
        L.build(b, v, f"a{i}", (i % 12 * 0.4, i // 12 * 0.4))
    model = spec.compile()
    assert model.nbody > len(vs)
    assert sum(a.category == "liquid" for a in b.assets.values()) == sum(v.fill > 0 for v in vs)
    from lerobot_labvla.genesis.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["assets"])
    out, err = capsys.readouterr()
    assert exc.value.code == 0 and f"{len(vs)} variants in {len(L.FAMILIES)} families" in err
    assert all(name in out for name in L.FAMILIES)


def test_clean_scene_passes_every_check():
    plan = _plan(BASE)
    assert SB.check_plan(plan) == {}
    assert _sim_fails(BASE, plan) == {}


@pytest.mark.parametrize("case, check", [
    ("off_bench", "inside_bench_bounds"),
    ("far", "targets_in_reach"),
    ("boxed_in", "graspable_side_free"),
    ("tall_on_path", "path_clearance"),
    ("clutter_on_path", "no_clutter_on_path"),
])
def test_geometric_checks_name_the_fault(case, check):
    wf, extra = BASE, []
    if case == "off_bench":
        extra = [_extra("notebook/a5-blue", "clutter_0", (1.2, 0.5))]
    elif case == "far":
        wf = _wf([{"name": "cup", "type": "beaker", "at": [0.95, 0.15]},
                  {"name": "zone", "type": "target_zone", "at": [0.5, -0.2]}], PICK_PLACE)
    elif case == "boxed_in":
        extra = [_extra("sample_vial/20ml-black", f"clutter_{k}", (0.5 + dx, 0.15 + dy))
                 for k, (dx, dy) in enumerate([(0.045, 0), (-0.045, 0), (0, 0.045), (0, -0.045), (0.032, 0.032),
                                               (-0.032, -0.032), (0.032, -0.032), (-0.032, 0.032)])]
    elif case == "tall_on_path":
        extra = [_extra("wash_bottle/red", "bottle", (0.5, -0.02), clutter=False)]
    elif case == "clutter_on_path":
        extra = [_extra("notebook/a6-red", "clutter_0", (0.5, -0.02))]
    fails = SB.check_plan(_plan(wf, extra))
    assert check in fails, fails
    if case == "clutter_on_path":  # a flat notebook is below the carry height: only the clutter rule fires
        assert "path_clearance" not in fails


def test_physics_checks_name_the_fault():
    # Two objects in one spot: they interpenetrate, and the contact pushes them apart while settling.
    fails = _sim_fails(BASE, _plan(BASE, [_extra("tip_box/blue", "clutter_0", (0.52, 0.15))]))
    assert "no_interpenetration" in fails and "stable_after_settling" in fails
    # Liquid "poured" into a solid test tube does not stay in it.
    wf = _wf([{"name": "tube", "type": "test_tube", "at": [0.5, 0.0], "contents": {"liquid": 1.0}}],
             [{"pick": {"object": "tube"}}])
    assert _sim_fails(wf, _plan(wf))["liquid_contained"] == "tube keeps 0%"
    # A beaker right in front of the oven door: the door cannot swing open.
    oven = [{"name": "oven", "type": "cabinet", "at": [0.7, 0.0]}, {"name": "cup", "type": "beaker", "at": [0.48, 0.0]}]
    steps = [{"open": {"target": "oven.door"}}]
    fails = _sim_fails(_wf(oven, steps), _plan(_wf(oven, steps)))
    assert "articulations_free" in fails and "oven door hits cup" in fails["articulations_free"]
    oven[1]["at"] = [0.5, 0.4]
    assert "articulations_free" not in _sim_fails(_wf(oven, steps), _plan(_wf(oven, steps)))
    # Cameras turned away from the bench: nothing is visible; the nominal cameras see the cup.
    away = {n: {"pos": [2.0, 2.0, 1.0], "lookat": [4.0, 4.0, 1.0], "fovy": 40.0} for n in ("front", "side")}
    assert _sim_fails(BASE, _plan(BASE), away).get("targets_visible") == "cup, zone"
    # Two low cameras looking straight at the cup: a bottle between the cup and each hides it (ray cast).
    low = {"front": {"pos": [1.0, 0.15, 0.06], "lookat": [0.5, 0.15, 0.06], "fovy": 40.0},
           "side": {"pos": [0.5, 0.7, 0.06], "lookat": [0.5, 0.15, 0.06], "fovy": 40.0}}
    cup_only = _wf([BASE.scene.objects[0].model_dump()], [{"pick": {"object": "cup"}}])
    walls = [_extra("wash_bottle/red", "w0", (0.7, 0.15), False), _extra("wash_bottle/blue", "w1", (0.5, 0.4), False)]
    assert "targets_visible" not in _sim_fails(cup_only, _plan(cup_only, walls[:1]), low)  # the side view sees it
    assert _sim_fails(cup_only, _plan(cup_only, walls), low).get("targets_visible") == "cup"


def test_greedy_placement_resolves_collisions_that_a_fixed_layout_cannot():
    clash = _wf([{"name": "cup", "type": "beaker", "at": [0.55, 0.0]}, {"name": "plate", "type": "hot_plate", "at": [0.55, 0.05]}],
                [{"pick": {"object": "cup"}}, {"place": {"object": "cup", "on": "plate"}}])
    rng = lambda k: np.random.default_rng(k)  # noqa: E731
    fixed = SB.plan_scene(clash, resolve("none"), rng(0), rng(1), rng(2))
    assert fixed.get("cup").xy == (0.55, 0.0)  # nowhere to go: nominal kept, validation says why
    assert "no_interpenetration" in _sim_fails(clash, fixed)
    moved = SB.plan_scene(clash, Randomization.model_validate({"preset": "none", "layout": {"radius": 0.2}}),
                          rng(0), rng(1), rng(2))
    a, b = moved.get("cup"), moved.get("plate")
    assert np.hypot(a.xy[0] - b.xy[0], a.xy[1] - b.xy[1]) >= a.footprint + b.footprint
    assert SB.check_plan(moved) == {} and _sim_fails(clash, moved) == {}


def test_unplaceable_scene_is_rejected_with_the_failing_check():
    far = _wf([{"name": "cup", "type": "beaker", "at": [0.5, 0.0]}], [{"pick": {"object": "cup"}},
                                                                        {"place": {"object": "cup", "at": [0.2, 0.9]}}])
    with pytest.raises(SceneRejected, match="targets_in_reach") as exc:
        randomized_scene(far, np.random.default_rng(0), SPLIT, resolve("full"))
    assert "point (0.20, 0.90)" in exc.value.failed["targets_in_reach"]


def test_scenes_cli_reports_every_check(tmp_path, capsys):
    from lerobot_labvla.genesis.cli import main

    out_json = tmp_path / "scenes.json"
    with pytest.raises(SystemExit) as exc:
        main(["scenes", "--n", "8", "--seed", "3", "--json", str(out_json), "--no-progress"])
    out = capsys.readouterr().out
    assert exc.value.code == 0
    report = json.loads(out_json.read_text())
    assert list(report["pass_rate"]) == list(SB.CHECKS) and report["n"] == 8
    assert all(0.0 <= r <= 1.0 for r in report["pass_rate"].values())
    assert report["first_layout_valid"] <= report["valid_within_tries"]
    for check in SB.CHECKS:
        assert check in out


@pytest.mark.parametrize("argv, message", [
    (["scenes", "--n", "0"], "--n 0 must be >= 1"),
    (["preview", "no_such.yaml"], "not found"),
    (["preview", str(EXAMPLES / "heat_beaker_custom.yaml"), "--camera", "top"], "--camera 'top' unknown"),
])
def test_scene_commands_refuse_bad_input_in_one_line(argv, message, capsys):
    from lerobot_labvla.genesis.cli import main

    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_a_shelf_holds_distractors_and_the_checks_judge_them_at_its_height():
    """`clutter: {shelf: 1}`: a shelf at the back with distractors on its top board that rest there; a distractor
    hanging over the board's edge fails inside_bench_bounds (plan) and stable_after_settling (it falls)."""
    assert resolve("full").clutter.shelf == 0  # opt-in: the presets' scenes are what they were
    shelf_v = L.variant("shelf/w30-h16-wood")
    shelf = SB.Placement("shelf_2", shelf_v, (0.9, 0.4), clutter=True)
    top = shelf.height
    on = SB.Placement("clutter_3", L.variant("sample_vial/4ml-red"), (0.9, 0.45), clutter=True, z=top, on="shelf_2")
    plan = _plan(BASE, [shelf, on])
    assert SB.check_plan(plan) == {} and _sim_fails(BASE, plan) == {}
    builder, _ = realize(BASE, plan, SPLIT, camera_poses(np.random.default_rng(0), resolve("none")))
    sim = validation_sim(builder)
    for _ in range(10):
        sim.step(sim.arm_qpos)
    assert abs(sim.body_pos("clutter_3")[2] - top) < 0.002  # standing on the board, 17 cm up
    over = SB.Placement("clutter_3", on.variant, (0.9, 0.4 + 0.15), clutter=True, z=top, on="shelf_2")
    plan = _plan(BASE, [shelf, over])
    assert "clutter_3 off shelf_2's top" in SB.check_plan(plan)["inside_bench_bounds"]
    assert "clutter_3" in _sim_fails(BASE, plan)["stable_after_settling"]
    # The builder's own layouts: every distractor it puts on a shelf stands on its top board.
    wf = BASE.model_copy(update={"randomize": Randomization.model_validate({"preset": "full", "clutter": {"shelf": 1.0}})})
    _, ctx = randomized_scene(wf, np.random.default_rng(0), SPLIT, wf.randomize)
    placed = ctx["randomization"]["clutter_placed"]
    shelves = [k for k in placed if placed[k]["variant"].startswith("shelf/")]
    assert len(shelves) == 1 and [v["on"] for v in placed.values() if "on" in v] and \
        all(v["on"] == shelves[0] and v["z"] > 0.15 for v in placed.values() if "on" in v)


def test_scenes_survey_with_shelves(capsys):
    code, out, _ = run_main(capsys, "scenes", "--n", "2", "--shelf", "1", "--no-progress")
    assert code == 0 and "'shelf': 1.0" in out and "valid in 12 layouts" in out
    code, _, err = run_main(capsys, "scenes", "--n", "2", "--shelf", "2", "--no-progress")
    assert code == 2 and "--shelf 2.0 must be a probability" in err
