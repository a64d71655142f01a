"""The official LabVLA training's image augmentation, as LeRobot's own `--dataset.image_transforms` flags.

The official trainer (zjunlp/LabVLA `scripts/utils/dataset_build.py`) builds LeRobot's `ImageTransforms` with
up to 3 of these colour/sharpness jitters per frame, in random order, inside the training dataset. LeRobot does
the same with these flags: `make_train_eval_datasets` gives the transforms to the training split only (the held-
out split, `lerobot-eval` and `labvla-serve` never see them), and `lerobot-train --seed` makes them repeatable.

    lerobot-train --policy.type=labvla ... $(python -m lerobot_labvla.policy.augmentation)
"""

from __future__ import annotations

import json

OFFICIAL_IMAGE_TRANSFORMS: dict[str, dict] = {
    "brightness": {"weight": 0.3, "type": "ColorJitter", "kwargs": {"brightness": [0.7, 1.3]}},
    "contrast": {"weight": 0.4, "type": "ColorJitter", "kwargs": {"contrast": [0.6, 1.4]}},
    "saturation": {"weight": 0.5, "type": "ColorJitter", "kwargs": {"saturation": [0.5, 1.5]}},
    "sharpness": {"weight": 0.3, "type": "SharpnessJitter", "kwargs": {"sharpness": [0.5, 1.5]}},
}
OFFICIAL_MAX_NUM_TRANSFORMS = 3


def official_augmentation_flags() -> list[str]:
    """`lerobot-train` flags that turn on the official augmentation (no spaces: safe in `$(...)`)."""
    return [
        "--dataset.image_transforms.enable=true",
        f"--dataset.image_transforms.max_num_transforms={OFFICIAL_MAX_NUM_TRANSFORMS}",
        "--dataset.image_transforms.random_order=true",
        f"--dataset.image_transforms.tfs={json.dumps(OFFICIAL_IMAGE_TRANSFORMS, separators=(',', ':'))}",
    ]


if __name__ == "__main__":
    print(" ".join(official_augmentation_flags()))
