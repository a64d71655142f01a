"""The wire format, defined once: msgpack with NumPy arrays, byte-compatible with openpi-client.

An array travels as `{b"__ndarray__": True, b"data": raw bytes, b"dtype": dtype.str, b"shape": shape}`
and a NumPy scalar as `{b"__npgeneric__": True, b"data": item, b"dtype": dtype.str}`, exactly as
`openpi_client.msgpack_numpy` writes them, so either side can be openpi's. Decoding is stricter
than openpi's and its cost is bounded by `Limits`, checked from msgpack's length headers before
anything is allocated: only plain numeric/bool dtypes (never object arrays, never pickle), shapes
of non-negative sizes whose byte count matches the data, arrays in native byte order (a big-endian
array is converted here, so nothing downstream sees one), and caps on string length, container
length and the total number of containers and items in one message.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

_ALLOWED_KINDS = frozenset("biuf")  # bool, signed, unsigned, float
MAX_NDIM = 8


class WireFormatError(ValueError):
    """A message that is not valid msgpack-numpy, or is over a decoding limit."""


@dataclass(frozen=True)
class Limits:
    """What one message may hold. Each is checked before the data it governs is decoded."""

    max_str_bytes: int = 1 << 16  # one string (a prompt is capped further, in characters, by the server)
    max_items: int = 1 << 16  # all containers plus all their entries, summed over the message
    max_bin_bytes: int = 1 << 30  # one byte blob (arrays); the message size limit is the real cap

    @functools.cached_property
    def unpackb_kwargs(self) -> dict[str, int]:
        """`msgpack.unpackb`'s length caps (built once per `Limits`: a request's decode path is hot)."""
        return {
            "max_str_len": self.max_str_bytes,
            "max_bin_len": self.max_bin_bytes,
            "max_array_len": self.max_items,
            "max_map_len": self.max_items,
            "max_ext_len": 0,  # openpi never sends msgpack ext types
        }


DEFAULT_LIMITS = Limits()


def encode_array(arr: np.ndarray) -> dict:
    """The msgpack map an array travels as; put it in a message to pack an array once for two keys."""
    return _pack_default(arr)


def _pack_default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in _ALLOWED_KINDS:
            raise TypeError(f"cannot send a NumPy array of dtype {obj.dtype}; use a numeric dtype")
        return {
            b"__ndarray__": True,
            b"data": obj.tobytes(),  # C order whatever the array's layout
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
    try:
        dtype = np.dtype(name)
    except TypeError:
        raise WireFormatError(f"unknown array dtype {name!r}") from None
    if dtype.kind not in _ALLOWED_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise WireFormatError(f"array dtype {dtype} is not allowed; send bool, int, uint or float arrays")
    return dtype


def _shape(shape: Any) -> tuple[int, ...]:
    if not isinstance(shape, list | tuple) or len(shape) > MAX_NDIM:
        raise WireFormatError(f"array shape must be a list of at most {MAX_NDIM} sizes, got {shape!r:.80}")
    for s in shape:  # a plain loop: a generator costs more than the check on this per-request path
        if type(s) is not int or s < 0:
            raise WireFormatError(f"array shape {shape!r:.80} has a size that is not a non-negative integer")
    return tuple(shape)


def _ndarray(obj: dict) -> np.ndarray:
    try:
        dtype = _dtype(obj[b"dtype"])  # the same few dtype strings arrive in every request
        shape, data = _shape(obj[b"shape"]), obj[b"data"]
    except KeyError as exc:
        raise WireFormatError(f"malformed __ndarray__ entry: no {exc.args[0]!r} field") from None
    if not isinstance(data, bytes):
        raise WireFormatError(f"malformed __ndarray__ entry: data is {type(data).__name__}, not bytes")
    if len(data) != math.prod(shape) * dtype.itemsize:  # exact ints (np.prod: ~3 µs per array, and wraps)
        raise WireFormatError(
            f"malformed __ndarray__ entry: {len(data)} bytes of data cannot reshape to {shape} {dtype}"
        )
    arr = np.ndarray(shape, dtype, data)  # zero copy: a read-only view of the message's bytes
    if not dtype.isnative:  # e.g. '>f4' from a big-endian client: the model must never see it
        arr = arr.astype(dtype.newbyteorder("="))
    return arr


def _npgeneric(obj: dict) -> np.generic:
    try:
        dtype = _dtype(obj[b"dtype"])
        return dtype.newbyteorder("=").type(obj[b"data"])
    except KeyError as exc:
        raise WireFormatError(f"malformed __npgeneric__ entry: no {exc.args[0]!r} field") from None
    except (TypeError, ValueError, OverflowError) as exc:
        raise WireFormatError(f"malformed __npgeneric__ entry: {exc}") from None


Packer = functools.partial(msgpack.Packer, default=_pack_default)
packb = functools.partial(msgpack.packb, default=_pack_default)

_LIMIT_RE = re.compile(r"(\d+) exceeds max_(\w+?)_len\((\d+)\)")
_LIMIT_WHAT = {"str": "a string of {n} bytes", "bin": "a byte blob of {n} bytes", "array": "a list of {n} items",
               "map": "a map of {n} entries", "ext": "a msgpack ext value of {n} bytes"}


def unpackb(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Any:
    """Decode one msgpack-numpy message within `limits`; raise `WireFormatError` naming what is wrong."""
    budget = limits.max_items

    def counted(n: int) -> None:
        nonlocal budget
        budget -= n
        if budget < 0:
            raise WireFormatError(
                f"message holds more than {limits.max_items} lists/maps and items in total; "
                "send arrays as NumPy arrays (msgpack-numpy), not nested lists"
            )

    def object_hook(obj: dict) -> Any:
        counted(len(obj) + 1)
        if b"__ndarray__" in obj:
            return _ndarray(obj)
        if b"__npgeneric__" in obj:
            return _npgeneric(obj)
        return obj

    def list_hook(obj: list) -> list:
        counted(len(obj) + 1)
        return obj

    try:
        return msgpack.unpackb(data, object_hook=object_hook, list_hook=list_hook, **limits.unpackb_kwargs)
    except WireFormatError:
        raise
    except Exception as exc:  # msgpack raises a zoo of exception types for bad input
        m = _LIMIT_RE.fullmatch(str(exc))
        if m:
            n, kind, cap = m.groups()
            what = _LIMIT_WHAT.get(kind, kind).format(n=n)
            raise WireFormatError(f"message has {what}, over the server's limit of {cap}") from None
        raise WireFormatError(f"malformed msgpack ({type(exc).__name__}: {exc})") from None
