"""Robot profiles: every profile builds from its wheel's model files, runs the same skills, and the FR3 path is unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from lerobot_labvla.errors import LabVLAError
from lerobot_labvla.sim import assets as A
from lerobot_labvla.sim.control import ArmController
from lerobot_labvla.sim.robots import get_profile, profiles
from lerobot_labvla.sim.scene import SceneBuilder
from lerobot_labvla.sim.skills import Motion, lifted_and_held, pick, place, resting_in_region
from lerobot_labvla.sim.skills.bimanual import _alone, handed_over, handover
from lerobot_labvla.sim.skills.motion import TOP_DOWN

SINGLE_ARM = ("fr3", "ur5e", "xarm7", "kinova3")


def _scene(robot: str, objects):
    b = SceneBuilder()
    b.add_robot(robot=robot)
    for builder, name, pos, kw in objects:
        b.add(builder, name, pos, **kw)
    sim = b.build()
    sim.reset(np.asarray(sim.profile.arms[0].home))
    return sim


def _drive(sim, ctls: dict, views: dict, gen) -> int:
    """Step every arm's targets through its IK, one physics period per control step."""
    n = 0
    for targets in gen:
        for arm, t in targets.items():
            views[arm].set_gripper(t.gripper)
            views[arm].command(ctls[arm].set_pose_target(t.pos, t.quat))
        sim.advance()
        n += 1
    return n


def test_profiles_list_arms_dofs_grippers_and_licences():
    ps = profiles()
    assert {"fr3", "ur5e", "xarm7", "kinova3", "aloha"} <= set(ps)
    assert [a.dof for a in ps["ur5e"].arms] == [6] and [a.dof for a in ps["xarm7"].arms] == [7]
    aloha = ps["aloha"]
    assert aloha.bimanual and [a.name for a in aloha.arms] == ["left", "right"]
    assert aloha.state_dim == 14 and aloha.action_dim == 14 and ps["ur5e"].state_dim == 7
    for p in ps.values():
        assert p.licence and p.package and p.grip_force > 0 and p.reach[0] < p.reach[1]
    with pytest.raises(LabVLAError, match="unknown robot 'ur10'.*fr3"):
        get_profile("ur10")
    with pytest.raises(LabVLAError, match="no arm 'middle'"):
        aloha.arm("middle")


@pytest.mark.parametrize("name", sorted(profiles()))
def test_each_profile_compiles_with_limits_home_tcp_and_wrist_camera(name):
    sim = _scene(name, [])
    p = sim.profile
    for arm in p.arms:
        view = sim.for_arm(arm.name)
        lo, hi = sim.model.jnt_range[view.arm_joint_ids].T
        limited = sim.model.jnt_limited[view.arm_joint_ids] == 1
        home = np.asarray(arm.home)
        assert np.all((home >= lo) | ~limited) and np.all((home <= hi) | ~limited)
        assert sim.model.camera(p.prefix + arm.wrist_camera).id >= 0
        # Home: TCP points straight down (what the top-down skills start from), gripper open to its full width.
        assert np.allclose(np.abs(view.tcp_quat), np.abs(TOP_DOWN), atol=0.02)
        assert view.gripper_width == pytest.approx(arm.max_width, abs=1e-6)
    for _ in range(20):  # gravity compensation + servos: home holds
        for arm in p.arms:
            sim.for_arm(arm.name).command(np.asarray(arm.home))
        sim.advance()
    for arm in p.arms:
        assert np.allclose(sim.for_arm(arm.name).arm_qpos, arm.home, atol=5e-3)


def test_reachability_check_follows_each_arms_base():
    fr3, aloha = get_profile("fr3"), get_profile("aloha")
    assert fr3.reachable((0.5, 0.0)) and not fr3.reachable((0.1, 0.0)) and not fr3.reachable((1.0, 0.0))
    assert aloha.reachable((0.42, 0.15), "left") and not aloha.reachable((0.42, -0.15), "left")
    assert aloha.reachable((0.42, -0.15), "right") and aloha.reachable((0.42, -0.15))
    # An object at the left arm's own base is inside neither arm's annulus.
    assert not aloha.reachable((0.42, 0.46))


@pytest.mark.parametrize("name", SINGLE_ARM)
def test_same_pick_and_place_succeeds_on_every_single_arm_profile(name):
    """One workflow (pick the beaker, place it 24 cm over), unchanged skills and IK, fixed seeds."""
    for seed in (0, 1):
        rng = np.random.default_rng(seed)
        src = np.array([0.5, -0.12]) + rng.uniform(-0.03, 0.03, 2)
        dst = np.array([0.5, 0.12]) + rng.uniform(-0.03, 0.03, 2)
        sim = _scene(name, [(A.beaker, "beaker", [*src, 0.0], {"radius": 0.024})])
        ctl = ArmController(sim)
        m = Motion(sim)
        z0 = sim.body_pos("beaker")[2]
        _drive(sim, {"main": ctl}, {"main": sim}, ({"main": t} for t in pick(m, "beaker", lift=0.12)))
        assert lifted_and_held(sim, "beaker", z0, 0.05), (name, seed, sim.body_pos("beaker"))
        _drive(sim, {"main": ctl}, {"main": sim}, ({"main": t} for t in place(m, "beaker", dst)))
        for _ in range(10):
            sim.step(ctl.q_cmd)
        assert resting_in_region(sim, "beaker", dst, [0.03, 0.03], 0.0, z_tol=0.012), (name, seed, sim.body_pos("beaker"), dst)


def test_unreached_place_fails_the_checker():
    """The checker is not a formality: a place short of the target (gripper never opened) is judged a failure."""
    sim = _scene("ur5e", [(A.beaker, "beaker", [0.5, -0.12, 0.0], {"radius": 0.024})])
    ctl, m = ArmController(sim), Motion(sim)
    _drive(sim, {"main": ctl}, {"main": sim}, ({"main": t} for t in pick(m, "beaker", lift=0.12)))
    assert not resting_in_region(sim, "beaker", [0.5, 0.12], [0.03, 0.03], 0.0, z_tol=0.012)


def test_aloha_hands_a_bottle_over_and_sets_it_down():
    """Bimanual: the left arm picks, hands over to the right arm (a two-arm step), the right arm places."""
    for seed in (0, 1):
        rng = np.random.default_rng(seed)
        src = np.array([0.40, 0.14]) + rng.uniform(-0.03, 0.03, 2)
        dst = np.array([0.42, 0.0]) + rng.uniform(-0.03, 0.03, 2)
        sim = _scene("aloha", [(A.reagent_bottle, "bottle", [*src, 0.0], {"radius": 0.02, "height": 0.15})])
        views = {a: sim.for_arm(a) for a in ("left", "right")}
        ctls = {a: ArmController(v) for a, v in views.items()}
        ms = {a: Motion(v) for a, v in views.items()}
        z0 = sim.body_pos("bottle")[2]
        _drive(sim, ctls, views, _alone("left", pick(ms["left"], "bottle", lift=0.12), {"right": ms["right"]}))
        assert lifted_and_held(views["left"], "bottle", z0, 0.05)
        assert not views["right"].fingers_touch("bottle")
        _drive(sim, ctls, views, handover(("left", ms["left"]), ("right", ms["right"]), "bottle", (0.42, 0.0)))
        assert handed_over(views["right"], views["left"], "bottle"), seed
        assert not handed_over(views["left"], views["right"], "bottle")  # the check knows who holds it
        _drive(sim, ctls, views, _alone("right", place(ms["right"], "bottle", dst), {"left": ms["left"]}))
        for _ in range(10):
            sim.advance()
        assert resting_in_region(sim, "bottle", dst, [0.03, 0.03], 0.0, z_tol=0.012), (seed, sim.body_pos("bottle"), dst)


def test_arm_views_share_the_world_but_not_the_tcp():
    sim = _scene("aloha", [])
    left, right = sim.for_arm("left"), sim.for_arm("right")
    assert left is sim and right.model is sim.model and right.data is sim.data
    assert left.tcp_pos[1] > 0.1 > -0.1 > right.tcp_pos[1]
    right.set_gripper(0.0)
    assert right.gripper_command == 0.0 and left.gripper_command == 1.0
