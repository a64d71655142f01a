"""The wire format, defined once: msgpack with NumPy arrays, byte-compatible with openpi-client.

An array travels as `{b"__ndarray__": True, b"data": raw bytes, b"dtype": dtype.str, b"shape": shape}`
and a NumPy scalar as `{b"__npgeneric__": True, b"data": item, b"dtype": dtype.str}`, exactly as
`openpi_client.msgpack_numpy` writes them, so either side can be openpi's. Decoding is stricter
than openpi's: only plain numeric/bool dtypes are accepted (never object arrays, never pickle) and
the byte count must match the shape, so a hostile message fails with a clear error instead of
allocating or executing anything.
"""

from __future__ import annotations

import functools
from typing import Any

import msgpack
import numpy as np

_ALLOWED_KINDS = frozenset("biuf")  # bool, signed, unsigned, float


class WireFormatError(ValueError):
    """A message that is not valid msgpack-numpy."""


def _pack_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in _ALLOWED_KINDS:
            raise TypeError(f"cannot send a NumPy array of dtype {obj.dtype}; use a numeric dtype")
        return {
            b"__ndarray__": True,
            b"data": np.ascontiguousarray(obj).tobytes(),
            b"dtype": obj.dtype.str,
            b"shape": obj.shape,
        }
    if isinstance(obj, np.generic):
        if obj.dtype.kind not in _ALLOWED_KINDS:
            raise TypeError(f"cannot send a NumPy scalar of dtype {obj.dtype}")
        return {b"__npgeneric__": True, b"data": obj.item(), b"dtype": obj.dtype.str}
    raise TypeError(f"cannot send a {type(obj).__name__} over msgpack")


@functools.lru_cache(maxsize=64)
def _dtype(name: Any) -> np.dtype:
    return np.dtype(name)


def _unpack_hook(obj: dict) -> Any:
    if b"__ndarray__" in obj:
        try:
            dtype = _dtype(obj[b"dtype"])  # the same few dtype strings arrive in every request
            if dtype.kind not in _ALLOWED_KINDS:
                raise WireFormatError(f"array dtype {dtype} is not allowed; send bool, int, uint or float arrays")
            # Zero copy: a read-only view on the received bytes; numpy checks the byte count.
            return np.frombuffer(obj[b"data"], dtype=dtype).reshape(obj[b"shape"])
        except WireFormatError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise WireFormatError(f"malformed __ndarray__ entry: {exc}") from None
    if b"__npgeneric__" in obj:
        try:
            dtype = np.dtype(obj[b"dtype"])
        except (KeyError, TypeError) as exc:
            raise WireFormatError(f"malformed __npgeneric__ entry: {exc}") from None
        if dtype.kind not in _ALLOWED_KINDS:
            raise WireFormatError(f"scalar dtype {dtype} is not allowed")
        return dtype.type(obj[b"data"])
    return obj


Packer = functools.partial(msgpack.Packer, default=_pack_default)
packb = functools.partial(msgpack.packb, default=_pack_default)


def unpackb(data: bytes) -> Any:
    """Decode one msgpack-numpy message; raise `WireFormatError` naming what is wrong."""
    try:
        return msgpack.unpackb(data, object_hook=_unpack_hook)
    except WireFormatError:
        raise
    except Exception as exc:  # msgpack raises a zoo of exception types for bad input
        raise WireFormatError(f"malformed msgpack ({type(exc).__name__}: {exc})") from None
