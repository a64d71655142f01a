"""The wire format: openpi-compatible encoding, strict decoding."""

import msgpack
import numpy as np
import pytest

from lerobot_labvla.serving import msgpack_numpy


def test_round_trip_keeps_dtype_shape_and_values():
    msg = {
        "observation/image": np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3),
        "observation/state": np.linspace(-1, 1, 8, dtype=np.float32),
        "prompt": "pick up the beaker",
        "scalar": np.float32(1.5),
        "nested": {"list": [1, 2, 3]},
    }
    out = msgpack_numpy.unpackb(msgpack_numpy.packb(msg))
    for key in ("observation/image", "observation/state"):
        assert out[key].dtype == msg[key].dtype and out[key].shape == msg[key].shape
        np.testing.assert_array_equal(out[key], msg[key])
    assert out["prompt"] == "pick up the beaker"
    assert out["scalar"] == 1.5 and out["scalar"].dtype == np.float32
    assert out["nested"] == {"list": [1, 2, 3]}


def test_encoding_is_openpis_layout():
    # openpi_client.msgpack_numpy.pack_array writes exactly these bytes-keyed maps.
    arr = np.ones((2, 2), np.float32)
    raw = msgpack.unpackb(msgpack_numpy.packb({"a": arr}))
    assert raw["a"] == {b"__ndarray__": True, b"data": arr.tobytes(), b"dtype": "<f4", b"shape": [2, 2]}


@pytest.mark.parametrize(
    "payload, match",
    [
        (b"\xc1\x00garbage", "malformed msgpack"),
        (msgpack.packb({b"__ndarray__": True, b"data": b"\x00" * 3, b"dtype": "<f4", b"shape": [2]}), "malformed __ndarray__"),
        (msgpack.packb({b"__ndarray__": True, b"data": b"\x00" * 8, b"dtype": "|O", b"shape": [1]}), "not allowed"),
        (msgpack.packb({b"__ndarray__": True, b"data": b"\x00" * 8, b"dtype": "<f4", b"shape": [3]}), "cannot reshape"),
        (msgpack.packb({b"__ndarray__": True, b"data": b""}), "malformed __ndarray__"),
        # 2**32 * 2**32 elements wrap to 0 in int64: the size check must use exact integers.
        (msgpack.packb({b"__ndarray__": True, b"data": b"", b"dtype": "|u1", b"shape": [2**32, 2**32]}), "0 bytes of data cannot"),
    ],
)
def test_bad_payloads_raise_wire_format_error(payload, match):
    with pytest.raises(msgpack_numpy.WireFormatError, match=match):
        msgpack_numpy.unpackb(payload)


def test_object_arrays_are_not_sent():
    with pytest.raises(TypeError, match="dtype object"):
        msgpack_numpy.packb({"a": np.array([{}], dtype=object)})


def test_big_endian_arrays_arrive_in_native_byte_order():
    # A big-endian client's float32 image used to pass validation and then fail inside the model.
    arr = np.linspace(0, 1, 12, dtype=">f4").reshape(2, 2, 3)
    scalar = {b"__npgeneric__": True, b"data": 2.5, b"dtype": ">f8"}
    out = msgpack_numpy.unpackb(msgpack_numpy.packb({"a": arr, "s": scalar}))
    assert out["a"].dtype == np.float32 and out["a"].dtype.isnative
    np.testing.assert_array_equal(out["a"], arr.astype(np.float32))
    assert out["s"] == 2.5 and out["s"].dtype.isnative


@pytest.mark.parametrize(
    "shape, match",
    [([-1, 64, 3], "not a non-negative integer"), ([2.0, 2], "not a non-negative integer"),
     ([1] * 9, "at most 8 sizes"), ("12", "must be a list")],
)
def test_array_shapes_must_be_plain_sizes(shape, match):
    payload = msgpack.packb({b"__ndarray__": True, b"data": b"\x00" * 12, b"dtype": "|u1", b"shape": shape})
    with pytest.raises(msgpack_numpy.WireFormatError, match=match):
        msgpack_numpy.unpackb(payload)


LIMITS = msgpack_numpy.Limits(max_str_bytes=1000, max_items=5000)


@pytest.mark.parametrize(
    "obj, match",
    [
        ("x" * 5000, "a string of 5000 bytes, over the server's limit of 1000"),
        ([{}] * 100_000, "a list of 100000 items, over the server's limit of 5000"),
        (list(range(100_000)), "a list of 100000 items"),
        ([[0] * 100] * 100, "more than 5000 lists/maps and items in total"),
        ([{"k": 1}] * 3000, "more than 5000 lists/maps and items in total"),
    ],
)
def test_decoding_limits_name_what_was_over(obj, match):
    with pytest.raises(msgpack_numpy.WireFormatError, match=match):
        msgpack_numpy.unpackb(msgpack.packb(obj), LIMITS)


def test_a_decoding_bomb_is_refused_before_it_is_built():
    # 30 MB of empty maps took 9.7 s and 2 GB on the event loop before the limits.
    import time

    bomb = b"\xdd" + (30_000_000).to_bytes(4, "big") + b"\x80" * 30_000_000  # array32 of 30M empty maps
    t0 = time.perf_counter()
    with pytest.raises(msgpack_numpy.WireFormatError, match="a list of 30000000 items"):
        msgpack_numpy.unpackb(bomb)
    assert time.perf_counter() - t0 < 0.5  # generous for a loaded box: the header check is microseconds


def test_an_array_encoded_once_packs_as_the_array_itself():
    # labvla-serve encodes the reply's actions once for both `actions` and `action`.
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)[:, ::2]  # not C-contiguous
    once = msgpack_numpy.encode_array(arr)
    assert msgpack_numpy.packb({"actions": once, "action": once}) == msgpack_numpy.packb({"actions": arr, "action": arr})
    np.testing.assert_array_equal(msgpack_numpy.unpackb(msgpack_numpy.packb({"a": once}))["a"], arr)
