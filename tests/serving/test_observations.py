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
        ({"observation/state": np.array([0, 0, np.nan, 0, 0, 0, 0, 0], np.float32)}, r"1 NaN value\(s\), the first nan at \[2\]"),
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


@pytest.mark.parametrize(
    "state, match",
    [
        (["1"] * 8, r"expected \(8,\) numbers \(int or float\), got <U1 values"),
        ([True] * 8, "got booleans"),
        (np.ones(8, bool), "got booleans"),
        ([1.0, [2.0]] + [0.0] * 6, "ragged nested list"),
        ("12345678", "expected .8,. numbers, got str"),
        ([0.0, 0.0, 1e300] + [0.0] * 5, r"value 1e\+300 at \[2\] is beyond float32's range"),
        ([0.0, float("inf"), float("nan")] + [0.0] * 5, r"1 NaN and 1 inf value\(s\), the first inf at \[1\]"),
    ],
)
def test_state_must_be_finite_numbers_and_errors_say_what_was_found(state, match):
    with pytest.raises(BadRequest, match=match):
        decode_openpi(openpi_obs(**{"observation/state": state}), SPEC, KeyMapper(SPEC))


def test_lists_and_other_numeric_dtypes_become_float32():
    for state in (list(range(8)), np.arange(8, dtype=np.int16), np.arange(8, dtype=">f8")):
        obs = decode_openpi(openpi_obs(**{"observation/state": state}), SPEC, KeyMapper(SPEC))
        np.testing.assert_array_equal(obs.vectors["observation.state"], np.arange(8))
        assert obs.vectors["observation.state"].dtype == np.float32
    half = decode_openpi(openpi_obs(**{"observation/image": np.full((8, 8, 3), 0.5, np.float16)}), SPEC, KeyMapper(SPEC))
    assert half.images["observation.images.front"].dtype == np.float32


def test_image_sides_are_capped():
    with pytest.raises(BadRequest, match="side over 4096"):
        decode_openpi(openpi_obs(**{"observation/image": np.zeros((1, 5000, 3), np.uint8)}), SPEC, KeyMapper(SPEC))


def test_prompt_is_capped_in_characters_before_anything_else():
    with pytest.raises(BadRequest, match="5000 characters, over the server's limit of 100"):
        decode_openpi(openpi_obs(prompt="x" * 5000), SPEC, KeyMapper(SPEC), max_prompt_chars=100)
    assert decode_openpi(openpi_obs(prompt="é" * 100), SPEC, KeyMapper(SPEC), max_prompt_chars=100).task == "é" * 100


def test_deep_nesting_is_a_named_error_not_a_recursion_error():
    deep: dict = {"x": 1}
    for _ in range(1000):
        deep = {"o": deep}
    with pytest.raises(BadRequest, match="nested deeper than 8 levels"):
        decode_openpi({**openpi_obs(), "junk": deep}, SPEC, KeyMapper(SPEC))


THREE_CAMS = ObservationSpec(
    cameras={"observation.images.left": (3, 32, 32), "observation.images.right": (3, 32, 32),
             "observation.images.wrist": (3, 32, 32)},
    vectors={"observation.state": (8,)},
    needs_task=True,
)


def test_official_labutopia_client_keys_need_no_key_map():
    # What the official evaluator sends (deployment protocol of zjunlp/LabVLA): camera_<i>_rgb in the
    # checkpoint's camera order, `state`, and the instruction as both `prompt` and `language_instruction`.
    imgs = [np.full((256, 256, 3), i, np.uint8) for i in (10, 20, 30)]
    msg = {f"camera_{i + 1}_rgb": img for i, img in enumerate(imgs)}
    msg |= {"state": np.arange(8, dtype=np.float32), "prompt": "pour the liquid", "language_instruction": "pour the liquid"}
    obs = decode_openpi(msg, THREE_CAMS, KeyMapper(THREE_CAMS))
    assert [int(obs.images[k][0, 0, 0]) for k in THREE_CAMS.cameras] == [10, 20, 30]
    np.testing.assert_array_equal(obs.vectors["observation.state"], np.arange(8))
    assert obs.task == "pour the liquid"
    # The official server reads `prompt` first; `language_instruction` alone works too.
    msg["language_instruction"] = "something else"
    assert decode_openpi(msg, THREE_CAMS, KeyMapper(THREE_CAMS)).task == "pour the liquid"
    del msg["prompt"]
    assert decode_openpi(msg, THREE_CAMS, KeyMapper(THREE_CAMS)).task == "something else"
    with pytest.raises(BadRequest, match="missing observation key.*observation.images.right.*camera_2_rgb"):
        decode_openpi({k: v for k, v in msg.items() if k != "camera_2_rgb"}, THREE_CAMS, KeyMapper(THREE_CAMS))


def test_a_checkpoint_with_camera_slots_takes_any_nonempty_subset_of_cameras():
    # labvla masks an absent camera (as the official server does for a missing camera_<i>_rgb).
    spec = ObservationSpec(THREE_CAMS.cameras, THREE_CAMS.vectors, needs_task=True, optional_cameras=True)
    msg = {"camera_1_rgb": np.zeros((32, 32, 3), np.uint8), "camera_3_rgb": np.ones((32, 32, 3), np.uint8),
           "state": np.zeros(8, np.float32), "prompt": "go"}
    obs = decode_openpi(msg, spec, KeyMapper(spec))
    assert list(obs.images) == ["observation.images.left", "observation.images.wrist"]
    with pytest.raises(BadRequest, match=r"missing observation key\(s\) \(at least one camera\): observation.images.left"):
        decode_openpi({"state": np.zeros(8, np.float32), "prompt": "go"}, spec, KeyMapper(spec))
