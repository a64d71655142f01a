"""Per task: the scripted expert succeeds on fixed seeds (both splits); doing nothing, replaying an expert
episode blind, or reaching the goal state without the physical solution the rule asks for all fail."""

import numpy as np
import pytest

from lerobot_labvla.envs.labutopia import GYM_IDS
from lerobot_labvla.envs.labutopia.expert import rollout

TASKS = list(GYM_IDS)


@pytest.fixture
def make_env():
    from lerobot_labvla.envs.labutopia.env import LabUtopiaEnv

    made = []

    def make(task, split="id", **kw):
        env = LabUtopiaEnv(task, split, obs_type="agent_pos", render_mode=None, **kw)
        made.append(env)
        return env

    yield make
    for env in made:
        env.close()


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("split,seed", [("id", 0), ("ood", 1)])
def test_expert_succeeds(make_env, task, split, seed):
    r = rollout(make_env(task, split), seed)
    assert r.success and r.max_progress == 1.0, f"{task}/{split} seed {seed}: expert failed ({r})"


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("split", ["id", "ood"])
def test_doing_nothing_fails(make_env, task, split):
    r = rollout(make_env(task, split), seed=0, policy="zero")
    assert not r.success and r.max_progress < 1.0


@pytest.mark.parametrize("task", TASKS)
def test_blind_replay_of_an_expert_episode_fails_on_other_seeds(make_env, task):
    from lerobot_labvla.envs.labutopia.attacks import record_expert, replay, run

    env = make_env(task)
    actions, ok = record_expert(env, seed=0)
    assert ok, "the recorded expert episode itself must succeed"
    assert run(env, 0, replay(actions)).success  # same seed: the replay reproduces the success (determinism)
    for seed in (1, 2):
        assert not run(env, seed, replay(actions)).success, f"{task}: blind replay passed on seed {seed}"


def _step_until(env, expert, cond, limit=400):
    for _ in range(limit):
        env.step(expert.act())
        if cond():
            return True
    return False


def test_press_button_pressing_a_wrong_button_first_fails(make_env):
    from lerobot_labvla.sim.control import ArmController
    from lerobot_labvla.sim.skills import Motion, press

    env = make_env("press_button")
    env.reset(seed=0)
    wrong = env.ctx["others"][0]
    m = Motion(env.sim)
    for t in press(m, wrong):  # drive the press skill on a distractor, then the named button
        env.sim.set_gripper(t.gripper)
        env.sim.step(env.ctl.set_pose_target(t.pos, t.quat))
        env.spec_task.update(env.sim, env.ctx)
    assert env.sim.device_on[wrong] and env.ctx["wrong"]
    ctl = ArmController(env.sim)
    for t in press(Motion(env.sim), env.ctx["device"]):
        env.sim.set_gripper(t.gripper)
        env.sim.step(ctl.set_pose_target(t.pos, t.quat))
        env.spec_task.update(env.sim, env.ctx)
    assert env.sim.device_on[env.ctx["device"]] and not env.spec_task.success(env.sim, env.ctx)


@pytest.mark.parametrize("task,device_key", [("press_button", "device"), ("heat_beaker", "device")])
def test_press_counts_only_once_the_hand_has_retracted(make_env, task, device_key):
    env = make_env(task)
    env.reset(seed=0)
    expert = env.expert()
    assert _step_until(env, expert, lambda: env.sim.device_on[env.ctx[device_key]])
    assert not env.spec_task.success(env.sim, env.ctx)  # lit, but the fingers are still on the button
    assert _step_until(env, expert, lambda: env.spec_task.success(env.sim, env.ctx), limit=60)


def test_open_door_counts_only_after_release(make_env):
    from lerobot_labvla.sim.skills import door_open

    env = make_env("open_door")
    env.reset(seed=0)
    expert = env.expert()
    assert _step_until(env, expert, lambda: door_open(env.sim, "cabinet", 1.0))
    assert env.sim.robot_touches("cabinet_door") and not env.spec_task.success(env.sim, env.ctx)
    assert _step_until(env, expert, lambda: env.spec_task.success(env.sim, env.ctx), limit=80)


def test_transport_beaker_pushed_into_the_zone_without_lifting_fails(make_env):
    env = make_env("transport_beaker")
    env.reset(seed=0)
    sim, ctx = env.sim, env.ctx
    # Slide the beaker into the zone along the bench (what a push achieves), then let it settle.
    qadr = sim.model.jnt_qposadr[sim.model.joint("beaker_free").id]
    sim.data.qpos[qadr:qadr + 2] = ctx["zone_xy"]
    for _ in range(10):
        env.step(np.zeros(7, np.float32))
    assert env.spec_task._in_zone(sim, ctx) and not ctx["lifted"]
    assert not env.spec_task.success(sim, ctx)


def test_pour_liquid_welds_nothing_but_the_source(make_env):
    env = make_env("pour_liquid")
    env.reset(seed=0)
    assert set(env.sim.grasp_eq) == {"source"}
    assert "beaker" in env.task_description and "source" not in env.task_description
