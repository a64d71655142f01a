"""A converted official checkpoint runs in LabUtopia through LeRobot's own `lerobot-eval`: its three camera slots
become LabUtopia's `front, side, wrist` (the official evaluator's camera_1..3_rgb), its 8-dim state is LabUtopia's
`agent_pos` (7 joints + gripper) and its absolute 8-dim actions drive `--env.action_type=joint`."""

from __future__ import annotations

import json
import os

import pytest
from test_official_checkpoint import write_official

from lerobot_labvla.errors import LabVLAError


def test_cameras_option_maps_the_slots_to_labutopia(tmp_path):
    from lerobot.utils.constants import OBS_STATE

    from lerobot_labvla.envs.labutopia.configuration import LabUtopiaEnvConfig
    from lerobot_labvla.policy.convert_official import labvla_config_from_official

    ckpt, _, official, stats, schema = write_official(tmp_path, ki=False)
    kwargs = dict(backbone=str(tmp_path / "qwen"), backbone_config=json.loads((tmp_path / "qwen" / "config.json").read_text()))
    config = labvla_config_from_official(official, schema, stats, cameras=["front", "side", "wrist"], **kwargs)
    env = LabUtopiaEnvConfig(task="pick_up", action_type="joint")
    env_keys = {env.features_map[k]: f for k, f in env.features.items() if k != "action"}
    for key, feature in config.input_features.items():
        assert key in env_keys and env_keys[key].type == feature.type, key
    assert config.input_features[OBS_STATE].shape == env.features["agent_pos"].shape
    assert config.output_features["action"].shape == env.features["action"].shape
    assert list(config.image_features) == ["observation.images.front", "observation.images.side", "observation.images.wrist"]
    with pytest.raises(LabVLAError, match="--cameras names 2 camera"):
        labvla_config_from_official(official, schema, stats, cameras=["front", "side"], **kwargs)
    # the official loss/feature options carry over (defaults: 1.0, off)
    assert config.gripper_loss_weight == 1.0 and not config.expert_layerwise_vlm_features
    assert config.resolved_gripper_action_dims == config.resolved_quantile_dims == [7]  # schema gripper dim 7
    other = {**official, "gripper_loss_weight": 2.5, "dit_layerwise_vlm_features": True}
    config = labvla_config_from_official(other, schema, stats, **kwargs)
    assert config.gripper_loss_weight == 2.5 and config.expert_layerwise_vlm_features


@pytest.mark.slow
def test_lerobot_eval_runs_a_converted_official_checkpoint_in_labutopia(tmp_path):
    from policy_helpers import assert_ok, run_cli

    ckpt, *_ = write_official(tmp_path, ki=False)
    out = tmp_path / "converted"
    assert_ok(run_cli("labvla-convert", "official", str(ckpt), str(out), "--cameras", "front,side,wrist"))
    env = {"MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"), "PYOPENGL_PLATFORM": os.environ.get("PYOPENGL_PLATFORM", "egl")}
    proc = run_cli(
        "lerobot-eval", f"--policy.path={out}", "--policy.device=cpu", "--env.type=labutopia", "--env.task=pick_up",
        "--env.action_type=joint", "--env.episode_length=4", "--env.image_size=64", "--eval.n_episodes=1",
        "--eval.batch_size=1", f"--output_dir={tmp_path / 'eval'}", env=env, timeout=800,
    )
    assert_ok(proc)
    info = json.loads((tmp_path / "eval" / "eval_info.json").read_text())
    assert info["overall"]["n_episodes"] == 1
