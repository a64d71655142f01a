"""`labvla-data merge --pad`: two robots' datasets (FR3: state 8 / action 7, ALOHA: 14 / 14) -> one LeRobot dataset
that `lerobot-train --policy.type=labvla` trains on, with each sample's padded dims kept out of the policy's loss."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lerobot_labvla.data_process.merge import ACTION_DIM_PAD, STATE_DIM_PAD, merge
from lerobot_labvla.errors import LabVLAError

ARM = ["dx", "dy", "dz", "rx", "ry", "rz", "gripper"]
PROFILES = {  # the names and widths RoboGenesis writes for these profiles (genesis/export.py)
    "franka": ([f"q{i}" for i in range(1, 8)] + ["gripper"], ARM),
    "aloha": ([f"{a}.{n}" for a in ("left", "right") for n in [f"q{i}" for i in range(1, 7)] + ["gripper"]],
              [f"{a}.{n}" for a in ("left", "right") for n in ARM]),
}
FRAMES = 12
TINY_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "policy" / "tiny.yaml"


def make_robot_dataset(root: Path, robot: str, seed: int, fps: int = 10):
    """2 episodes of smooth joint/ee motions with one 16 px camera, in the robot's own state/action layout."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    state_names, action_names = PROFILES[robot]
    features = {
        "observation.state": {"dtype": "float32", "shape": (len(state_names),), "names": state_names},
        "action": {"dtype": "float32", "shape": (len(action_names),), "names": action_names},
        "observation.images.front": {"dtype": "image", "shape": (16, 16, 3), "names": ["height", "width", "channels"]},
    }
    ds = LeRobotDataset.create(f"local/{robot}", fps, features, root=root, robot_type=robot, use_videos=False,
                               image_writer_threads=0)
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, FRAMES, dtype=np.float32)[:, None]
    for ep in range(2):
        s = rng.uniform(0.2, 1.0, len(state_names)) * np.sin(2 * np.pi * t + rng.uniform(0, 3, len(state_names)))
        a = rng.uniform(0.2, 1.0, len(action_names)) * np.cos(2 * np.pi * t + rng.uniform(0, 3, len(action_names)))
        for i in range(FRAMES):
            img = np.full((16, 16, 3), 40 * (ep + 1), dtype=np.uint8)
            img[:, i % 16] = 255
            ds.add_frame({"observation.state": s[i].astype(np.float32), "action": a[i].astype(np.float32),
                          "observation.images.front": img, "task": f"{robot}: move the beaker"})
        ds.save_episode()
    ds.finalize()
    return ds


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    base = tmp_path_factory.mktemp("merge")
    return make_robot_dataset(base / "fr3", "franka", 0), make_robot_dataset(base / "aloha", "aloha", 1)


@pytest.fixture(scope="module")
def mixed(sources, tmp_path_factory):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    out = tmp_path_factory.mktemp("mixed") / "mix"
    merge([sources[0].root, sources[1].root], out, pad=True)
    return LeRobotDataset("local/mix", root=out)


def test_merge_pads_each_robot_to_the_widest_with_a_mask_per_frame(sources, mixed):
    fr3, aloha = sources
    assert mixed.meta.robot_type == "franka+aloha"
    assert mixed.meta.total_episodes == 4 and mixed.meta.total_frames == 4 * FRAMES
    assert list(mixed.meta.episodes["robot_type"]) == ["franka", "franka", "aloha", "aloha"]
    feats = mixed.meta.features
    assert tuple(feats["observation.state"]["shape"]) == (14,) and tuple(feats["action"]["shape"]) == (14,)
    # A dim carries a different joint on each robot: both names; the FR3's gripper and ALOHA's left gripper share dim 6
    # of the action (a name with "gripper" keeps the policy's gripper handling).
    assert feats["observation.state"]["names"][6:8] == ["q7|left.gripper", "gripper|right.q1"]
    assert feats["action"]["names"][6] == "gripper|left.gripper" and feats["action"]["names"][13] == "right.gripper"
    for k in (3, FRAMES + 5):  # FR3 frames: real values, then zeros, the mask says which
        frame, src = mixed[k], fr3[k]
        assert torch.equal(frame["observation.state"][:8], src["observation.state"])
        assert not frame["observation.state"][8:].any() and not frame["action"][7:].any()
        assert frame[STATE_DIM_PAD].tolist() == [False] * 8 + [True] * 6
        assert frame[ACTION_DIM_PAD].tolist() == [False] * 7 + [True] * 7
    frame = mixed[2 * FRAMES + 4]  # ALOHA's frame 4: nothing padded
    assert torch.equal(frame["action"], aloha[4]["action"])
    assert not frame[STATE_DIM_PAD].any() and not frame[ACTION_DIM_PAD].any()
    assert json.loads((Path(mixed.root) / "merge_log.json").read_text())["sources"][1]["episodes"] == [2, 3]


def test_scan_takes_padding_for_another_robot_s_dims_not_frozen_ones(mixed):
    from lerobot_labvla.data_process.scan import scan_dataset

    report = scan_dataset(mixed.root)
    assert not [f for ep in report["episodes"] for f in ep["findings"] if f["severity"] == "error"]
    assert not [f for ep in report["episodes"] for f in ep["findings"] if f["check"] == "stuck_dim"]


def test_merged_stats_of_a_padded_dim_are_those_of_the_robots_that_have_it(sources, mixed):
    """LeRobot's aggregate would average the FR3's padding zeros into ALOHA's dims 8-13 (mean pulled to 0, std
    shrunk): the normalizer would then scale ALOHA's real values by stats half made of zeros."""
    fr3, aloha = sources
    st = mixed.meta.stats
    for key, real in (("observation.state", 8), ("action", 7)):
        for stat in ("mean", "std", "min", "max", "q01", "q99"):
            np.testing.assert_allclose(st[key][stat][real:], aloha.meta.stats[key][stat][real:], rtol=1e-5, atol=1e-6)
        n1, n2 = fr3.meta.stats[key]["count"][0], aloha.meta.stats[key]["count"][0]
        both = (fr3.meta.stats[key]["mean"][:real] * n1 + aloha.meta.stats[key]["mean"][:real] * n2) / (n1 + n2)
        np.testing.assert_allclose(st[key]["mean"][:real], both, rtol=1e-5)
        assert np.isfinite(st[key]["std"]).all() and (st[key]["std"] > 1e-3).all()


def test_fast_fitting_reads_the_mask(mixed):
    from lerobot_labvla.policy.fast_data import load_action_chunks

    chunks, _, dim_pad = load_action_chunks(mixed.root, 10)
    assert chunks.shape == (4 * FRAMES, 10, 14) and dim_pad.shape == (4 * FRAMES, 14)
    assert dim_pad[:2 * FRAMES, 7:].all() and not dim_pad[:2 * FRAMES, :7].any() and not dim_pad[2 * FRAMES:].any()


def test_merge_refuses_what_it_cannot_merge(sources, tmp_path, capsys):
    from lerobot_labvla.data_process.cli import main

    fr3, aloha = sources
    with pytest.raises(LabVLAError, match="--pad"):
        merge([fr3.root, aloha.root], tmp_path / "a")
    with pytest.raises(LabVLAError, match="at least two"):
        merge([fr3.root], tmp_path / "b", pad=True)
    slow = make_robot_dataset(tmp_path / "fr3_5fps", "franka", 2, fps=5)
    with pytest.raises(LabVLAError, match="fps"):
        merge([fr3.root, slow.root], tmp_path / "c", pad=True)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["merge", "--src", str(fr3.root), str(aloha.root), "--dst", str(tmp_path / "d")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1 and "--pad" in err
    assert not (tmp_path / "a").exists() and not (tmp_path / "d").exists()
    assert not list(tmp_path.glob(".*labvla-tmp*"))


def _policy(ds, mode: str):
    from lerobot.policies.factory import make_policy, make_pre_post_processors

    from lerobot_labvla.policy.configuration_labvla import LabVLAConfig

    cfg = LabVLAConfig(backbone="tiny", device="cpu", image_size=64, expert_layers=2, expert_width=64, expert_heads=4,
                       fast_vocab_size=512, mode=mode)
    policy = make_policy(cfg, ds_meta=ds.meta)
    pre, _ = make_pre_post_processors(cfg, dataset_stats=ds.meta.stats)
    return policy, pre


def _raw_batch(ds, indices: list[int]) -> dict:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    from lerobot.utils.constants import ACTION

    dataset = LeRobotDataset(ds.repo_id, root=ds.root, delta_timestamps={ACTION: [i / ds.fps for i in range(10)]})
    return torch.utils.data.default_collate([dataset[i] for i in indices])


def _loss(policy, pre, raw: dict) -> tuple[float, dict]:
    torch.manual_seed(0)
    with torch.no_grad():
        loss, metrics = policy.forward(pre({k: v.clone() if torch.is_tensor(v) else v for k, v in raw.items()}))
    return loss.item(), metrics


def test_the_loss_ignores_what_a_sample_holds_in_its_padded_dims(mixed):
    """FR3 and ALOHA samples in one batch: writing anything into the FR3 samples' padded state/action dims must not
    change the ki loss (flow matching + FAST), while changing one real dim does (the comparison can fail)."""
    policy, pre = _policy(mixed, "ki")
    raw = _raw_batch(mixed, [1, FRAMES + 3, 2 * FRAMES + 2, 3 * FRAMES + 6])  # 2 FR3 frames, 2 ALOHA frames
    base, metrics = _loss(policy, pre, raw)
    assert metrics["fm_loss"] > 0 and metrics["fast_loss"] > 0
    junk = dict(raw)
    junk["observation.state"] = raw["observation.state"].clone()
    junk["action"] = raw["action"].clone()
    g = torch.Generator().manual_seed(1)
    junk["observation.state"][:2, 8:] = 5 * torch.randn(2, 6, generator=g)
    junk["action"][:2, :, 7:] = 5 * torch.randn(2, 10, 7, generator=g)
    other, other_metrics = _loss(policy, pre, junk)
    assert other == pytest.approx(base, rel=1e-6, abs=1e-7), (metrics, other_metrics)
    real = dict(raw)
    real["action"] = raw["action"].clone()
    real["action"][0, :, 2] += 1.0  # a real dim of an FR3 sample
    assert abs(_loss(policy, pre, real)[0] - base) > 1e-4


def test_the_state_text_holds_each_sample_s_own_dims(mixed):
    from lerobot_labvla.policy.processor_labvla import PROMPT_WITH_STATE_KEY

    _, pre = _policy(mixed, "fast_pretrain")
    batch = pre(_raw_batch(mixed, [1, 2 * FRAMES + 2]))
    fr3, aloha = (p.split("</state>")[0].removeprefix("<state>").split() for p in batch[PROMPT_WITH_STATE_KEY])
    assert len(fr3) == 8 and len(aloha) == 14


@pytest.mark.slow
def test_lerobot_train_runs_on_the_mixed_dataset_and_its_checkpoint_loads(mixed, tmp_path):
    out = tmp_path / "train"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [str(Path(sys.executable).parent / "lerobot-train"), f"--config_path={TINY_CONFIG}", "--policy.type=labvla",
           "--policy.backbone=tiny", "--policy.device=cpu", "--policy.push_to_hub=false", "--steps=2", "--batch_size=8",
           "--num_workers=0", "--save_freq=2", "--log_freq=1", "--wandb.enable=false", f"--dataset.root={mixed.root}",
           "--dataset.repo_id=local/mix", f"--output_dir={out}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, check=False)
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-4000:])
    from lerobot_labvla.policy.modeling_labvla import LabVLAPolicy

    policy = LabVLAPolicy.from_pretrained(out / "checkpoints" / "last" / "pretrained_model")
    assert policy.config.state_dim == 14 and policy.config.action_dim == 14
    assert policy.config.resolved_gripper_action_dims == [6, 13]
