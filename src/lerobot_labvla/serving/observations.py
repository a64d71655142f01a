"""Client messages → validated observations for one checkpoint: key mapping and input checks.

Two message shapes reach the server:
- OpenPI / LeRobot style (`/` URL): a msgpack-numpy dict. Keys may be OpenPI's
  (`observation/image`, `observation/wrist_image`, `observation/state`, `prompt`), LeRobot's
  (`observation.images.front`, `observation.state`, `task`) or anything `--key-map` names.
- The simple client (`/simple` URL): `{"images": [H×W×3 nested lists, ...], "state": [...],
  "instruction": "..."}`, images in the checkpoint's camera order.

Every problem becomes a `BadRequest` whose message names the key, what arrived and what the
checkpoint expects, so the client sees exactly what to fix.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lerobot_labvla.errors import LabVLAError

TASK = "task"


class BadRequest(LabVLAError):
    """A client message the checkpoint cannot run on (the connection stays open)."""


@dataclass(frozen=True)
class ObservationSpec:
    """What one checkpoint reads: camera keys with (C, H, W), vector keys with shapes, and the task."""

    cameras: dict[str, tuple[int, int, int]]
    vectors: dict[str, tuple[int, ...]]
    needs_task: bool

    @classmethod
    def from_policy_config(cls, config: Any, needs_task: bool) -> ObservationSpec:
        from lerobot.configs.types import FeatureType

        cameras, vectors = {}, {}
        for key, feat in config.input_features.items():
            if feat.type == FeatureType.VISUAL:
                cameras[key] = tuple(int(s) for s in feat.shape)
            elif feat.type in (FeatureType.STATE, FeatureType.ENV):
                vectors[key] = tuple(int(s) for s in feat.shape)
        return cls(cameras=cameras, vectors=vectors, needs_task=needs_task)

    def targets(self) -> list[str]:
        return [*self.cameras, *self.vectors, TASK]


def default_aliases(spec: ObservationSpec) -> dict[str, str]:
    """OpenPI's names → this checkpoint's inputs (first camera = `observation/image`, the `wrist` one
    (else the second) = `observation/wrist_image`)."""
    aliases = {"prompt": TASK}
    cams = list(spec.cameras)
    if cams:
        aliases["observation/image"] = cams[0]
        wrist = [c for c in cams if "wrist" in c.rsplit(".", 1)[-1]]
        others = [c for c in cams if c != cams[0]]
        if wrist and wrist[0] != cams[0]:
            aliases["observation/wrist_image"] = wrist[0]
        elif others:
            aliases["observation/wrist_image"] = others[0]
    return aliases


def parse_key_map(text: str | None, spec: ObservationSpec) -> dict[str, str]:
    """`--key-map` as JSON (`{"client key": "checkpoint key"}`) or `a=b,c=d`; targets are checked."""
    if not text:
        return {}
    text = text.strip()
    if text.startswith("{"):
        try:
            mapping = json.loads(text)
        except json.JSONDecodeError as exc:
            raise LabVLAError(f"--key-map is not valid JSON ({exc}); example: '{{\"cam_high\": \"observation.images.front\"}}'") from None
        if not isinstance(mapping, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()):
            raise LabVLAError("--key-map JSON must be an object of strings: {\"client key\": \"checkpoint key\"}")
    else:
        mapping = {}
        for pair in filter(None, (p.strip() for p in text.split(","))):
            src, sep, dst = pair.partition("=")
            if not sep or not src.strip() or not dst.strip():
                raise LabVLAError(f"--key-map entry {pair!r} is not 'client_key=checkpoint_key'")
            mapping[src.strip()] = dst.strip()
    valid = spec.targets()
    for src, dst in mapping.items():
        if dst not in valid:
            raise LabVLAError(f"--key-map maps {src!r} to {dst!r}, which this checkpoint does not read; valid targets: {valid}")
    return mapping


def _flatten(msg: Mapping, prefix: str = "") -> dict[str, Any]:
    """Nested dicts become `a/b` keys (OpenPI clients nest `observation`)."""
    out: dict[str, Any] = {}
    for key, value in msg.items():
        if isinstance(key, bytes):
            key = key.decode("utf-8", "replace")
        name = f"{prefix}{key}"
        if isinstance(value, dict):  # msgpack maps decode to dicts (cheaper check than Mapping)
            out.update(_flatten(value, name + "/"))
        else:
            out[name] = value
    return out


@dataclass
class KeyMapper:
    """Resolve a client's keys to checkpoint inputs: `--key-map`, then OpenPI aliases, then `/`→`.`."""

    spec: ObservationSpec
    user_map: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.aliases = {**default_aliases(self.spec), **self.user_map}
        self._targets = set(self.spec.targets())
        self._resolved: dict[str, str | None] = {}  # clients send the same keys every request

    def resolve(self, key: str) -> str | None:
        try:
            return self._resolved[key]
        except KeyError:
            target = self._resolve(key)
            if len(self._resolved) < 4096:  # bounded: a client may send arbitrary extra keys
                self._resolved[key] = target
            return target

    def _resolve(self, key: str) -> str | None:
        if key in self.aliases:
            return self.aliases[key]
        if key in self._targets:
            return key
        dotted = key.replace("/", ".")
        return dotted if dotted in self._targets else None

    def expected_names(self, target: str) -> list[str]:
        return [target] + [src for src, dst in self.aliases.items() if dst == target]

    def map(self, msg: Any) -> dict[str, Any]:
        if not isinstance(msg, Mapping):
            raise BadRequest(f"expected a msgpack map of observations, got {type(msg).__name__}")
        flat = _flatten(msg)
        mapped: dict[str, Any] = {}
        for key, value in flat.items():
            target = self.resolve(key)
            if target is None:
                continue  # extra keys are ignored, as OpenPI policies do
            if target in mapped:
                raise BadRequest(f"two keys map to {target!r} (one is {key!r}); send one of them")
            mapped[target] = value
        return mapped


def check_image(key: str, value: Any, expected_chw: tuple[int, int, int]) -> np.ndarray:
    """An H×W×3 or 3×H×W image, uint8 (0–255) or float in [0, 1]; returns it unchanged (HWC or CHW)."""
    if not isinstance(value, np.ndarray):
        raise BadRequest(f"{key}: expected an image array (H, W, 3) uint8, got {type(value).__name__}")
    if value.ndim != 3 or 3 not in (value.shape[0], value.shape[-1]) or 0 in value.shape:
        c, h, w = expected_chw
        raise BadRequest(f"{key}: image shape {tuple(value.shape)} is not (H, W, 3) or (3, H, W); this checkpoint takes ({h}, {w}, {c})")
    if value.dtype == np.uint8:
        return value
    if value.dtype.kind == "f":
        lo, hi = float(value.min()), float(value.max())
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise BadRequest(f"{key}: image contains NaN or inf")
        if lo < 0.0 or hi > 1.0:
            raise BadRequest(f"{key}: float image values span [{lo:g}, {hi:g}]; send floats in [0, 1] or uint8 0–255")
        return value
    raise BadRequest(f"{key}: image dtype {value.dtype} is not supported; send uint8 (0–255) or float32 in [0, 1]")


def check_vector(key: str, value: Any, shape: tuple[int, ...]) -> np.ndarray:
    """A finite float vector of exactly the checkpoint's shape; returns float32."""
    try:
        arr = value if type(value) is np.ndarray and value.dtype == np.float32 else np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        raise BadRequest(f"{key}: expected {shape} numbers, got {type(value).__name__}") from None
    if arr.shape != shape:
        if arr.size == int(np.prod(shape)) and arr.ndim > len(shape):
            arr = arr.reshape(shape)  # a leading batch dim of 1 is fine
        else:
            raise BadRequest(f"{key}: shape {tuple(arr.shape)} does not match the checkpoint's {shape}")
    if not np.isfinite(arr).all():
        raise BadRequest(f"{key}: contains NaN or inf at index {np.argwhere(~np.isfinite(arr))[0].tolist()}")
    return arr


def check_task(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray) and value.dtype.kind in "US":
        value = str(value.item())
    if not isinstance(value, str):
        raise BadRequest(f"prompt/task: expected a string instruction, got {type(value).__name__}")
    return value


@dataclass
class Observation:
    """One validated request: images as sent (HWC or CHW), float32 vectors, the task string."""

    images: dict[str, np.ndarray]
    vectors: dict[str, np.ndarray]
    task: str


def validate(mapped: dict[str, Any], spec: ObservationSpec, mapper: KeyMapper) -> Observation:
    """Check every input the checkpoint needs; raise `BadRequest` on the first problem."""
    try:
        images = {k: check_image(k, mapped[k], shape) for k, shape in spec.cameras.items()}
        vectors = {k: check_vector(k, mapped[k], shape) for k, shape in spec.vectors.items()}
        task = check_task(mapped[TASK]) if spec.needs_task or TASK in mapped else ""
    except KeyError:  # rare: name every missing key at once, not just the first
        missing = [t for t in [*spec.cameras, *spec.vectors] if t not in mapped]
        if spec.needs_task and TASK not in mapped:
            missing.append(TASK)
        if not missing:
            raise  # a KeyError from a check itself: a bug, not the client's
        wanted = "; ".join(f"{t} (send as one of {mapper.expected_names(t)})" for t in missing)
        raise BadRequest(f"missing observation key(s): {wanted}. Map other names with --key-map") from None
    return Observation(images=images, vectors=vectors, task=task)


def decode_openpi(msg: Any, spec: ObservationSpec, mapper: KeyMapper) -> Observation:
    """An OpenPI/LeRobot-style observation dict → `Observation`."""
    return validate(mapper.map(msg), spec, mapper)


def decode_simple(msg: Any, spec: ObservationSpec) -> Observation:
    """The simple client's `{"images": [...], "state": [...], "instruction": "..."}` → `Observation`."""
    if not isinstance(msg, Mapping):
        raise BadRequest(f"expected a msgpack map with images/state/instruction, got {type(msg).__name__}")
    msg = {k.decode() if isinstance(k, bytes) else k: v for k, v in msg.items()}
    missing = [k for k in ("images", "state") if k not in msg]
    if spec.needs_task and "instruction" not in msg:
        missing.append("instruction")
    if missing:
        raise BadRequest(f"missing key(s) {missing}; the simple protocol sends {{'images': [...], 'state': [...], 'instruction': '...'}}")
    images_in = msg["images"]
    if not isinstance(images_in, list | tuple):
        raise BadRequest(f"images: expected a list of H×W×3 images, got {type(images_in).__name__}")
    cams = list(spec.cameras)
    if len(images_in) != len(cams):
        raise BadRequest(f"images: got {len(images_in)} image(s), this checkpoint takes {len(cams)} in this order: {cams}")
    images = {}
    for cam, img in zip(cams, images_in, strict=True):
        arr = img if isinstance(img, np.ndarray) else _list_image(cam, img)
        images[cam] = check_image(cam, arr, spec.cameras[cam])
    vectors = {}
    if spec.vectors:
        state_key = "observation.state" if "observation.state" in spec.vectors else next(iter(spec.vectors))
        vectors[state_key] = check_vector("state", msg["state"], spec.vectors[state_key])
        others = [k for k in spec.vectors if k != state_key]
        if others:
            raise BadRequest(f"this checkpoint also reads {others}; use the OpenPI URL (/) for it")
    task = check_task(msg["instruction"]) if "instruction" in msg else ""
    return Observation(images=images, vectors=vectors, task=task)


def _list_image(cam: str, img: Any) -> np.ndarray:
    try:
        arr = np.asarray(img)
    except ValueError:
        raise BadRequest(f"images ({cam}): ragged nested list; send H×W×3 rows of equal length") from None
    if arr.dtype.kind in "iu":
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise BadRequest(f"images ({cam}): integer pixels must be in 0–255, got [{arr.min()}, {arr.max()}]")
        return arr.astype(np.uint8)
    if arr.dtype.kind == "f":
        return arr.astype(np.float32)
    raise BadRequest(f"images ({cam}): expected numbers, got {arr.dtype}")
