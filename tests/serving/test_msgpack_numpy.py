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
    ],
)
def test_bad_payloads_raise_wire_format_error(payload, match):
    with pytest.raises(msgpack_numpy.WireFormatError, match=match):
        msgpack_numpy.unpackb(payload)


def test_object_arrays_are_not_sent():
    with pytest.raises(TypeError, match="dtype object"):
        msgpack_numpy.packb({"a": np.array([{}], dtype=object)})
