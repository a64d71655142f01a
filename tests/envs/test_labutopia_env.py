"""The gymnasium env and the EnvConfig as a user meets them: spaces, ids, determinism, bad input."""

import re

import gymnasium as gym
import numpy as np
import pytest

import lerobot_labvla.plugin  # noqa: F401  (registers LabUtopia/<Task>-v0 and --env.type=labutopia)
from lerobot_labvla.envs.labutopia import GYM_IDS
from lerobot_labvla.errors import LabVLAError


@pytest.fixture
def env():
    e = gym.make("LabUtopia/PickUp-v0", image_size=64)
    yield e
    e.close()


def test_every_gym_id_is_registered_and_split_kwarg_works():
    assert set(GYM_IDS.values()) <= set(gym.registry)
    e = gym.make("LabUtopia/PourLiquid-v0", split="ood", image_size=32)
    obs, info = e.reset(seed=0)
    assert e.unwrapped.split.name == "ood" and info["is_success"] is False
    assert obs["pixels"]["front"].shape == (32, 32, 3)
    e.close()


def test_observation_action_reward_and_info(env):
    obs, _ = env.reset(seed=0)
    assert set(obs["pixels"]) == {"front", "side", "wrist"}
    assert obs["pixels"]["front"].dtype == np.uint8 and obs["pixels"]["side"].shape == (64, 64, 3)
    assert obs["agent_pos"].shape == (8,) and obs["agent_pos"].dtype == np.float32
    assert env.action_space.shape == (7,)
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    assert 0.0 <= reward <= 1.0 and isinstance(info["is_success"], bool)
    assert re.fullmatch(r"(pick up|lift|grasp) the (clear|blue|green) beaker.*", env.unwrapped.task_description)
    assert env.unwrapped.render().shape == (64, 64, 3)


def test_same_seed_gives_bitwise_identical_episodes():
    def rollout(seed):
        e = gym.make("LabUtopia/TransportBeaker-v0", image_size=32)
        obs, _ = e.reset(seed=seed)
        rng = np.random.default_rng(123)
        frames = [obs["pixels"]["front"]]
        for _ in range(15):
            obs, *_ = e.step(rng.uniform(-1, 1, 7).astype(np.float32))
            frames.append(obs["pixels"]["wrist"])
        e.close()
        return np.stack(frames), obs["agent_pos"]

    (f1, s1), (f2, s2), (f3, _) = rollout(3), rollout(3), rollout(4)
    assert np.array_equal(f1, f2) and np.array_equal(s1, s2)
    assert not np.array_equal(f1, f3)


def test_episode_is_truncated_at_episode_length():
    e = gym.make("LabUtopia/PressButton-v0", obs_type="agent_pos", episode_length=3)
    e.reset(seed=0)
    flags = [e.step(np.zeros(7, np.float32))[3] for _ in range(3)]
    assert flags == [False, False, True]
    e.close()


def test_joint_action_space_moves_the_arm():
    e = gym.make("LabUtopia/PickUp-v0", obs_type="agent_pos", action_type="joint")
    obs, _ = e.reset(seed=0)
    target = obs["agent_pos"][:7] + 0.1
    for _ in range(10):
        obs, *_ = e.step(np.concatenate([target, [1.0]]).astype(np.float32))
    assert np.allclose(obs["agent_pos"][:7], target, atol=0.02)
    e.close()


@pytest.mark.parametrize("kwargs,needle", [
    ({"task": "pick_beaker"}, "expected one of ['pick_up', 'press_button'"),
    ({"split": "test"}, "expected one of ['id', 'ood']"),
    ({"obs_type": "rgb"}, "expected one of ['pixels_agent_pos', 'agent_pos']"),
])
def test_bad_task_split_or_obs_type_names_the_choices(kwargs, needle):
    from lerobot_labvla.envs.labutopia.env import LabUtopiaEnv

    with pytest.raises(LabVLAError, match=None) as exc:
        LabUtopiaEnv(**kwargs)
    assert needle in str(exc.value)


@pytest.mark.parametrize("action,needle", [
    (np.zeros(6), "expected (7,)"),
    (np.zeros((1, 7)), "expected (7,)"),
    (np.array([0, 0, np.nan, 0, 0, 0, 1.0]), "NaN"),
])
def test_bad_action_is_refused_and_env_stays_usable(env, action, needle):
    env.reset(seed=0)
    with pytest.raises(LabVLAError) as exc:
        env.step(action)
    assert needle in str(exc.value)
    obs, _ = env.reset(seed=1)
    obs, reward, *_ = env.step(np.zeros(7, np.float32))
    assert np.all(np.isfinite(obs["agent_pos"])) and 0.0 <= reward <= 1.0


def test_env_config_features_and_create_envs():
    from lerobot.envs.configs import EnvConfig
    from lerobot.envs.utils import env_to_policy_features

    cfg = EnvConfig.get_choice_class("labutopia")(task="pick_up,press_button", split="ood", image_size=32)
    feats = env_to_policy_features(cfg)
    assert set(feats) == {"action", "observation.state", "observation.images.front", "observation.images.side",
                          "observation.images.wrist"}
    assert feats["observation.images.front"].shape == (3, 32, 32) and cfg.fps == 20
    envs = cfg.create_envs(n_envs=2)
    try:
        vec = envs["labutopia"][1]
        obs, _ = vec.reset(seed=[0, 1])
        assert obs["pixels"]["wrist"].shape == (2, 32, 32, 3)
        assert re.fullmatch(r".* (yellow|purple|orange) button.*", vec.call("task_description")[0])
        assert vec.call("_max_episode_steps")[0] == 160
    finally:
        for group in envs.values():
            for v in group.values():
                v.close()


@pytest.mark.parametrize("kwargs,needle", [
    ({"task": "stir"}, "unknown --env.task 'stir'"),
    ({"split": "iid"}, "unknown --env.split 'iid'; expected one of ['id', 'ood']"),
    ({"fps": 30}, "--env.fps=30 is not supported"),
])
def test_env_config_rejects_bad_values(kwargs, needle):
    from lerobot.envs.configs import EnvConfig

    with pytest.raises(LabVLAError) as exc:
        EnvConfig.get_choice_class("labutopia")(**kwargs)
    assert needle in str(exc.value)


def test_ood_split_never_samples_id_sizes_or_colours():
    from lerobot_labvla.envs.labutopia.splits import SPLITS

    rng = np.random.default_rng(0)
    ident, ood = SPLITS["id"], SPLITS["ood"]
    id_lo, id_hi = ident.beaker_radius[0]
    for _ in range(200):
        g = ood.glass(rng)
        assert not id_lo <= g["radius"] <= id_hi and g["rgba"] not in ident.glass_colors
    assert ood.xy(np.random.default_rng(1), 0.5, 0.2)[1] < 0 < ident.xy(np.random.default_rng(1), 0.5, 0.2)[1]


def test_instructions_name_the_object_and_vary_across_seeds():
    from lerobot_labvla.envs.labutopia.env import LabUtopiaEnv

    env = LabUtopiaEnv("press_button", obs_type="agent_pos", render_mode=None)
    said = set()
    for seed in range(12):
        env.reset(seed=seed)
        colour = re.search(r"(red|green|blue) button", env.task_description).group(1)
        rgba = env.sim.model.geom(f"{env.ctx['device']}_button_cap").rgba
        assert {"red": 0, "green": 1, "blue": 2}[colour] == int(np.argmax(rgba[:3]))  # the named button is that colour
        said.add(env.task_description.replace(colour, "<c>"))
    assert len(said) >= 2  # paraphrases
    env.close()


def test_start_pose_and_layout_vary_with_the_seed():
    from lerobot_labvla.envs.labutopia.env import LabUtopiaEnv

    env = LabUtopiaEnv("pick_up", obs_type="agent_pos", render_mode=None)
    tcp, obj = [], []
    for seed in range(8):
        env.reset(seed=seed)
        tcp.append(env.sim.tcp_pos)
        obj.append(env.sim.body_pos("beaker"))
    env.close()
    assert np.ptp(np.array(tcp)[:, :2], axis=0).min() > 0.06 and np.ptp(np.array(obj)[:, :2], axis=0).min() > 0.06
