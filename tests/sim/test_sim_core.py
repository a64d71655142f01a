"""The sim core on its own: robot model, assets, IK, rendering, skills and their checkers."""

import math

import mujoco
import numpy as np

from lerobot_labvla.sim.control import ArmController
from lerobot_labvla.sim.render import Cameras
from lerobot_labvla.sim.robots.fr3 import HOME_QPOS, fr3_spec
from lerobot_labvla.sim.skills import (
    Motion,
    button_pressed,
    door_angle,
    door_open,
    lifted_and_held,
    open_door,
    particles_inside,
    pick,
    pour,
    press,
)


def drive(sim, ctl, targets, extra_hold: int = 0):
    last = None
    for last in targets:
        sim.set_gripper(last.gripper)
        sim.step(ctl.set_pose_target(last.pos, last.quat))
    for _ in range(extra_hold):
        sim.step(ctl.q_cmd)


def test_fr3_from_franky_sim_compiles_low_poly_with_tcp_and_wrist_camera():
    model = fr3_spec().compile()
    assert model.nu == 8 and model.nq == 9
    assert model.site("tcp").id >= 0 and model.camera("wrist_cam").id >= 0
    assert model.nmesh <= 10  # display meshes dropped: only the collision meshes remain


def test_every_asset_carries_semantics(lab_scene):
    a = lab_scene.assets
    assert a["beaker"].category == "beaker" and a["beaker"].volume_ml > 100 and a["beaker"].graspable_sites
    assert a["cabinet"].articulation["door"] == "cabinet_hinge"
    assert a["hot_plate"].articulation["button"] and a["hot_plate"].parts["indicator"]
    assert a["liquid"].params["count"] == 12
    for name in ("flask", "cylinder", "rack", "tube", "bottle", "zone", "panel"):
        assert a[name].category and a[name].body


def test_scene_settles_without_drifting(lab_scene):
    for _ in range(40):
        lab_scene.step(HOME_QPOS)
    assert particles_inside(lab_scene, "liquid", "beaker") == 1.0
    assert abs(lab_scene.body_pos("beaker")[2]) < 0.003
    assert np.allclose(lab_scene.arm_qpos, HOME_QPOS, atol=2e-3)  # gravity compensation: no sag


def test_ik_reaches_a_pose_to_a_millimetre(lab_scene):
    ctl = ArmController(lab_scene, iterations=50)
    target = lab_scene.tcp_pos + [0.08, 0.12, -0.15]
    q = ctl.ik(target, lab_scene.tcp_quat, lab_scene.arm_qpos)
    ctl.scratch.qpos[lab_scene.arm_qadr] = q
    mujoco.mj_kinematics(lab_scene.model, ctl.scratch)
    assert np.linalg.norm(ctl.scratch.site_xpos[lab_scene.tcp_site] - target) < 1e-3


def test_cameras_render_rgb_depth_and_consistent_intrinsics_extrinsics(lab_scene):
    cams = Cameras(lab_scene.model, {"front": "front", "wrist": "fr3/wrist_cam"}, 64, 64)
    try:
        img = cams.rgb(lab_scene.data, "front")
        assert img.shape == (64, 64, 3) and img.dtype == np.uint8 and img.std() > 5
        depth = cams.depth(lab_scene.data, "front")
        assert depth.shape == (64, 64) and 0.2 < float(np.median(depth)) < 3.0
        # The look-at point of the front camera projects to the image centre.
        k, ext = cams.intrinsics("front"), cams.extrinsics(lab_scene.data, "front")
        p = ext @ np.array([0.5, 0.04, 0.1, 1.0])
        uv = (k @ p[:3])[:2] / p[2]
        assert p[2] > 0 and np.allclose(uv, [32, 32], atol=1.5)
    finally:
        cams.close()


def test_checkers_fail_when_nothing_happens(lab_scene):
    for _ in range(20):
        lab_scene.step(HOME_QPOS)
    assert not lifted_and_held(lab_scene, "beaker", 0.0)
    assert not button_pressed(lab_scene, "panel")
    assert not door_open(lab_scene, "cabinet")
    assert particles_inside(lab_scene, "liquid", "target") == 0.0


def test_press_skill_latches_the_device_and_lights_the_indicator(lab_scene):
    ctl, m = ArmController(lab_scene), Motion(lab_scene)
    indicator = lab_scene.model.geom("panel_indicator").id
    off = lab_scene.model.geom_rgba[indicator].copy()
    drive(lab_scene, ctl, press(m, "panel"))
    assert button_pressed(lab_scene, "panel") and not button_pressed(lab_scene, "hot_plate")
    assert not np.allclose(lab_scene.model.geom_rgba[indicator], off)


def test_open_skill_swings_the_door(lab_scene):
    ctl, m = ArmController(lab_scene), Motion(lab_scene)
    drive(lab_scene, ctl, open_door(m, "cabinet"))
    assert door_angle(lab_scene, "cabinet") > math.radians(57)


def test_pick_lifts_by_friction_alone(lab_scene):
    ctl, m = ArmController(lab_scene), Motion(lab_scene)
    drive(lab_scene, ctl, pick(m, "beaker", lift=0.12), extra_hold=20)
    assert lab_scene.held is None and lifted_and_held(lab_scene, "beaker", 0.0)
    assert particles_inside(lab_scene, "liquid", "beaker") == 1.0


def test_pick_then_pour_transfers_most_particles(lab_scene_assisted):
    sim = lab_scene_assisted
    ctl, m = ArmController(sim), Motion(sim)
    drive(sim, ctl, pick(m, "beaker", lift=0.12, yaw=math.pi / 2))
    assert lifted_and_held(sim, "beaker", 0.0) and sim.held == "beaker"
    drive(sim, ctl, pour(m, "beaker", "target"), extra_hold=10)
    assert particles_inside(sim, "liquid", "target") >= 0.7


def test_close_skill_shuts_an_open_door(lab_scene):
    from lerobot_labvla.sim.skills import close_door

    ctl, m = ArmController(lab_scene), Motion(lab_scene)
    drive(lab_scene, ctl, open_door(m, "cabinet"))
    drive(lab_scene, ctl, close_door(m, "cabinet"))
    assert door_angle(lab_scene, "cabinet") < 0.15


def test_grasp_assist_needs_an_enclosing_grasp_not_a_touch(lab_scene_assisted):
    from lerobot_labvla.sim.skills.motion import TOP_DOWN

    sim = lab_scene_assisted
    ctl, m = ArmController(sim), Motion(sim)
    # Closed fingertips pressed onto the rim: both fingers touch the beaker, but nothing encloses it.
    rim = sim.site_pos("beaker_rim") + [0.9 * sim.assets["beaker"].params["radius"], 0, 0]
    drive(sim, ctl, m.grip(0.0, steps=15))
    drive(sim, ctl, m.move(rim + [0, 0, 0.1], TOP_DOWN))
    drive(sim, ctl, m.move(rim, speed=0.004, max_steps=60), extra_hold=10)
    assert sim.fingers_touch("beaker") and not sim.encloses("beaker") and sim.held is None
    drive(sim, ctl, m.move(sim.tcp_pos + [0, 0, 0.1]))
    assert abs(sim.body_pos("beaker")[2]) < 0.003  # nothing came up with the hand
    # A real grasp engages it.
    drive(sim, ctl, pick(m, "beaker", lift=0.05))
    assert sim.encloses("beaker") and sim.held == "beaker"


def test_grasp_assist_can_be_limited_to_named_assets():
    from conftest import build_lab_scene  # noqa: I001

    sim = build_lab_scene(grasp_assist=("beaker",))
    assert set(sim.grasp_eq) == {"beaker"}
