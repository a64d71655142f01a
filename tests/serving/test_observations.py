"""Key mapping and input checks against a checkpoint's input spec (no model needed)."""

import numpy as np
import pytest

from lerobot_labvla.errors import LabVLAError
from lerobot_labvla.serving.observations import (
    BadRequest,
    KeyMapper,
    ObservationSpec,
    decode_openpi,
    decode_simple,
    parse_key_map,
)

SPEC = ObservationSpec(
    cameras={"observation.images.front": (3, 32, 32), "observation.images.wrist": (3, 32, 32)},
    vectors={"observation.state": (8,)},
    needs_task=True,
)


def openpi_obs(**over):
    obs = {
        "observation/image": np.zeros((224, 224, 3), np.uint8),
        "observation/wrist_image": np.zeros((224, 224, 3), np.uint8),
        "observation/state": np.zeros(8, np.float32),
        "prompt": "pick up the beaker",
    }
    obs.update(over)
    return {k: v for k, v in obs.items() if v is not None}


def test_openpi_and_lerobot_keys_map_to_the_same_inputs():
    mapper = KeyMapper(SPEC)
    a = decode_openpi(openpi_obs(), SPEC, mapper)
    b = decode_openpi(
        {
            "observation.images.front": np.zeros((3, 32, 32), np.float32),
            "observation.images.wrist": np.zeros((32, 32, 3), np.uint8),
            "observation.state": [0.0] * 8,
            "task": "pick up the beaker",
        },
        SPEC,
        mapper,
    )
    assert set(a.images) == set(b.images) == set(SPEC.cameras)
    assert a.task == b.task == "pick up the beaker"
    assert a.vectors["observation.state"].dtype == np.float32


def test_nested_openpi_dicts_are_flattened():
    obs = openpi_obs()
    nested = {"observation": {"image": obs.pop("observation/image"), "wrist_image": obs.pop("observation/wrist_image"),
                              "state": obs.pop("observation/state")}, **obs}
    decode_openpi(nested, SPEC, KeyMapper(SPEC))


def test_key_map_json_and_pairs():
    assert parse_key_map('{"cam_high": "observation.images.front"}', SPEC) == {"cam_high": "observation.images.front"}
    m = parse_key_map("cam_high=observation.images.front, joints=observation.state", SPEC)
    obs = openpi_obs()
    obs["cam_high"] = obs.pop("observation/image")
    obs["joints"] = obs.pop("observation/state")
    decode_openpi(obs, SPEC, KeyMapper(SPEC, m))
    with pytest.raises(LabVLAError, match="does not read"):
        parse_key_map("cam=observation.images.side", SPEC)
    with pytest.raises(LabVLAError, match="not valid JSON"):
        parse_key_map("{bad", SPEC)


@pytest.mark.parametrize(
    "over, match",
    [
        ({"observation/wrist_image": None}, r"missing observation key\(s\): observation.images.wrist"),
        ({"prompt": None}, "missing observation key.*task"),
        ({"observation/image": np.zeros((224, 224), np.uint8)}, r"image shape \(224, 224\) is not"),
        ({"observation/image": np.zeros((224, 224, 4), np.uint8)}, "is not .H, W, 3."),
        ({"observation/image": np.zeros((8, 8, 3), np.int64)}, "dtype int64 is not supported"),
        ({"observation/image": np.full((8, 8, 3), 200.0, np.float32)}, r"send floats in \[0, 1\]"),
        ({"observation/state": np.array([0, 0, np.nan, 0, 0, 0, 0, 0], np.float32)}, r"NaN or inf at index \[2\]"),
        ({"observation/state": np.zeros(7, np.float32)}, r"shape \(7,\) does not match the checkpoint's \(8,\)"),
        ({"prompt": 3}, "expected a string instruction"),
    ],
)
def test_bad_inputs_name_the_problem(over, match):
    with pytest.raises(BadRequest, match=match):
        decode_openpi(openpi_obs(**over), SPEC, KeyMapper(SPEC))


def test_simple_client_message():
    img = np.zeros((32, 32, 3), np.uint8).tolist()
    obs = decode_simple({"images": [img, img], "state": [0.0] * 8, "instruction": "pour"}, SPEC)
    assert obs.images["observation.images.front"].dtype == np.uint8 and obs.task == "pour"
    with pytest.raises(BadRequest, match="got 1 image"):
        decode_simple({"images": [img], "state": [0.0] * 8, "instruction": "pour"}, SPEC)
    with pytest.raises(BadRequest, match="0–255"):
        decode_simple({"images": [[[[300, 0, 0]]], img], "state": [0.0] * 8, "instruction": "pour"}, SPEC)
