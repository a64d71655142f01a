"""The official image augmentation through LeRobot's own flags and dataset factory: on for the training split,
off for the held-out split, the same frames for the same seed."""

from __future__ import annotations

import draccus
import torch
from lerobot.configs.default import DatasetConfig
from lerobot.configs.train import TrainPipelineConfig
from lerobot.datasets.factory import make_train_eval_datasets
from lerobot.datasets.lerobot_dataset import LeRobotDataset

from lerobot_labvla.policy.augmentation import OFFICIAL_IMAGE_TRANSFORMS, official_augmentation_flags
from lerobot_labvla.policy.configuration_labvla import LabVLAConfig


def cameras(item: dict) -> torch.Tensor:
    return torch.stack([v for k, v in sorted(item.items()) if k.startswith("observation.images.")]).float()


def test_official_augmentation_is_on_in_training_off_in_eval_and_seeded(tmp_path):
    from synthetic import make_dataset

    ds7 = make_dataset(tmp_path / "ds", repo_id="local/augment", n_episodes=2, frames=4, tasks=("pick up the beaker",))
    # lerobot-train's --dataset.* flags, parsed by draccus as lerobot-train parses them
    args = [f"--dataset.repo_id={ds7.repo_id}", f"--dataset.root={ds7.root}", "--dataset.eval_split=0.5",
            *official_augmentation_flags()]
    dataset = draccus.parse(DatasetConfig, args=[a.replace("--dataset.", "--", 1) for a in args])
    cfg = TrainPipelineConfig(dataset=dataset, policy=LabVLAConfig(backbone="tiny", push_to_hub=False))
    assert {k: v.kwargs for k, v in cfg.dataset.image_transforms.tfs.items()} == {
        k: v["kwargs"] for k, v in OFFICIAL_IMAGE_TRANSFORMS.items()
    }
    train, held_out = make_train_eval_datasets(cfg)
    raw = LeRobotDataset(ds7.repo_id, root=ds7.root)
    first_train = train.episodes[0]
    raw_train = cameras(raw[int(raw.meta.episodes["dataset_from_index"][first_train])])
    raw_eval = cameras(raw[int(raw.meta.episodes["dataset_from_index"][held_out.episodes[0]])])

    def frame(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        return cameras(train[0])

    assert not torch.equal(frame(0), raw_train)  # augmented in training
    torch.testing.assert_close(frame(0), frame(0))  # repeatable for a seed
    assert any(not torch.equal(frame(0), frame(s)) for s in (1, 2, 3))
    assert torch.equal(cameras(held_out[0]), raw_eval)  # the held-out split is not augmented
