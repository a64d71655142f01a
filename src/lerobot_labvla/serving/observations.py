"""Client messages → validated observations for one checkpoint: key mapping and input checks.

Two message shapes reach the server:
- OpenPI / LeRobot style (`/` URL): a msgpack-numpy dict. Keys may be OpenPI's
  (`observation/image`, `observation/wrist_image`, `observation/state`, `prompt`), the official
  LabUtopia evaluator's (`camera_1_rgb`..`camera_3_rgb`, `state`, `language_instruction`), LeRobot's
  (`observation.images.front`, `observation.state`, `task`) or anything `--key-map` names.
- The simple client (`/simple` URL): `{"images": [H×W×3 nested lists, ...], "state": [...],
  "instruction": "..."}`, images in the checkpoint's camera order.

Every problem becomes a `BadRequest` whose message names the key, what arrived and what the
checkpoint expects, so the client sees exactly what to fix.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lerobot_labvla.errors import LabVLAError

TASK = "task"
# Keys that carry the instruction, most preferred first: the official LabUtopia client sends the same
# string as both `prompt` and `language_instruction`, and its server reads `prompt` first.
TASK_SOURCES = ("prompt", TASK, "language_instruction")
MAX_NESTING = 8  # OpenPI clients nest `observation/...` one level; nothing legitimate goes deeper
MAX_IMAGE_SIDE = 4096
FLOAT32_MAX = float(np.finfo(np.float32).max)
# dtype objects to compare with: `arr.dtype == np.uint8` converts the type to a dtype on every call.
_UINT8, _FLOAT32 = np.dtype(np.uint8), np.dtype(np.float32)


class BadRequest(LabVLAError):
    """A client message the checkpoint cannot run on (the connection stays open)."""


@dataclass(frozen=True)
class ObservationSpec:
    """What one checkpoint reads: camera keys with (C, H, W), vector keys with shapes, and the task.

    `optional_cameras`: the checkpoint masks a camera left out of a request (labvla's camera slots,
    as the official LabVLA server does), so any non-empty subset of the cameras may be sent.
    """

    cameras: dict[str, tuple[int, int, int]]
    vectors: dict[str, tuple[int, ...]]
    needs_task: bool
    optional_cameras: bool = False

    @classmethod
    def from_policy_config(cls, config: Any, needs_task: bool) -> ObservationSpec:
        from lerobot.configs.types import FeatureType

        cameras, vectors = {}, {}
        for key, feat in config.input_features.items():
            if feat.type == FeatureType.VISUAL:
                cameras[key] = tuple(int(s) for s in feat.shape)
            elif feat.type in (FeatureType.STATE, FeatureType.ENV):
                vectors[key] = tuple(int(s) for s in feat.shape)
        optional = getattr(config, "num_camera_slots", None) is not None  # labvla: absent camera = masked slot
        return cls(cameras=cameras, vectors=vectors, needs_task=needs_task, optional_cameras=optional)

    def targets(self) -> list[str]:
        return [*self.cameras, *self.vectors, TASK]


def default_aliases(spec: ObservationSpec) -> dict[str, str]:
    """OpenPI's and the official LabUtopia evaluator's names → this checkpoint's inputs.

    OpenPI: first camera = `observation/image`, the `wrist` one (else the second) =
    `observation/wrist_image`. LabUtopia: `camera_<i>_rgb` = the checkpoint's i-th camera, `state` =
    `observation.state`, `language_instruction` = the task.
    """
    aliases = {"prompt": TASK, "language_instruction": TASK}
    cams = list(spec.cameras)
    for i, cam in enumerate(cams[:9]):
        aliases[f"camera_{i + 1}_rgb"] = cam
    if spec.vectors:
        aliases["state"] = "observation.state" if "observation.state" in spec.vectors else next(iter(spec.vectors))
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


def _flatten(msg: Mapping) -> dict[str, Any]:
    """Nested dicts become `a/b` keys (OpenPI clients nest `observation`), at most `MAX_NESTING` deep."""
    out: dict[str, Any] = {}
    stack: list[tuple[Mapping, str, int]] = [(msg, "", 1)]
    while stack:
        node, prefix, depth = stack.pop()
        for key, value in node.items():
            if isinstance(key, bytes):
                key = key.decode("utf-8", "replace")
            elif not isinstance(key, str):
                raise BadRequest(f"observation keys must be strings, got {type(key).__name__} {key!r:.40}")
            name = f"{prefix}{key}"
            if isinstance(value, dict):  # msgpack maps decode to dicts (cheaper check than Mapping)
                if depth >= MAX_NESTING:
                    raise BadRequest(f"observation maps are nested deeper than {MAX_NESTING} levels (at {name[:80]!r})")
                stack.append((value, name + "/", depth + 1))
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
        task_rank = len(TASK_SOURCES) + 1
        for key, value in flat.items():
            target = self.resolve(key)
            if target is None:
                continue  # extra keys are ignored, as OpenPI policies do
            if target == TASK:  # several instruction keys: the most preferred one wins
                rank = -1 if key in self.user_map else (TASK_SOURCES.index(key) if key in TASK_SOURCES else len(TASK_SOURCES))
                if rank < task_rank:
                    task_rank, mapped[TASK] = rank, value
                continue
            if target in mapped:
                raise BadRequest(f"two keys map to {target!r} (one is {key!r}); send one of them")
            mapped[target] = value
        return mapped


def check_image(key: str, value: Any, expected_chw: tuple[int, int, int]) -> np.ndarray:
    """An H×W×3 or 3×H×W image, uint8 (0–255) or float in [0, 1] → uint8 or float32 (HWC or CHW as sent)."""
    if not isinstance(value, np.ndarray):
        raise BadRequest(f"{key}: expected an image array (H, W, 3) uint8, got {type(value).__name__}")
    c, h, w = expected_chw
    if value.ndim != 3 or 3 not in (value.shape[0], value.shape[-1]) or 0 in value.shape:
        raise BadRequest(f"{key}: image shape {tuple(value.shape)} is not (H, W, 3) or (3, H, W); this checkpoint takes ({h}, {w}, {c})")
    if max(value.shape) > MAX_IMAGE_SIDE:
        raise BadRequest(f"{key}: image shape {tuple(value.shape)} has a side over {MAX_IMAGE_SIDE} pixels; this checkpoint takes ({h}, {w}, {c})")
    if value.dtype == _UINT8:
        return value
    if value.dtype.kind == "f":
        value = value.astype(np.float32, copy=False)
        lo, hi = float(value.min()), float(value.max())
        if not (np.isfinite(lo) and np.isfinite(hi)):
            raise BadRequest(f"{key}: image contains {_describe_nonfinite(value)}")
        if lo < 0.0 or hi > 1.0:
            raise BadRequest(f"{key}: float image values span [{lo:g}, {hi:g}]; send floats in [0, 1] or uint8 0–255")
        return value
    raise BadRequest(f"{key}: image dtype {value.dtype} is not supported; send uint8 (0–255) or float32 in [0, 1]")


def _describe_nonfinite(arr: np.ndarray) -> str:
    """'2 NaN and 1 inf values, the first nan at [0, 3]'."""
    nan, inf = int(np.isnan(arr).sum()), int(np.isinf(arr).sum())
    first = np.argwhere(~np.isfinite(arr))[0]
    parts = [f"{nan} NaN" if nan else "", f"{inf} inf" if inf else ""]
    return f"{' and '.join(p for p in parts if p)} value(s), the first {arr[tuple(first)]} at {first.tolist()}"


def _all_finite(arr: np.ndarray) -> bool:
    # A robot state is a few numbers: a Python loop over them touches far less code than a ufunc and a
    # reduction, which matters on the per-request path (it runs with cold caches: the core idles
    # between a lone client's requests).
    if arr.size <= 64:
        return all(map(math.isfinite, arr.ravel().tolist()))
    return bool(np.isfinite(arr).all())


def check_vector(key: str, value: Any, shape: tuple[int, ...]) -> np.ndarray:
    """A finite numeric vector (NumPy array or list of numbers) of exactly the checkpoint's shape → float32."""
    if type(value) is np.ndarray and value.dtype == _FLOAT32:
        arr = value
    else:
        if isinstance(value, np.ndarray | np.generic):
            arr = np.asarray(value)
        elif isinstance(value, list | tuple):
            try:
                arr = np.asarray(value)
            except ValueError:
                raise BadRequest(f"{key}: ragged nested list; expected {shape} numbers") from None
        else:
            raise BadRequest(f"{key}: expected {shape} numbers, got {type(value).__name__}")
        if arr.dtype.kind not in "iuf":
            kind = "booleans" if arr.dtype.kind == "b" else f"{arr.dtype} values"
            raise BadRequest(f"{key}: expected {shape} numbers (int or float), got {kind}")
        if arr.dtype.kind == "f" and arr.size:
            if not np.isfinite(arr).all():
                raise BadRequest(f"{key}: contains {_describe_nonfinite(arr)}")
            big = np.abs(arr) > FLOAT32_MAX
            if big.any():
                i = np.argwhere(big)[0]
                raise BadRequest(f"{key}: value {arr[tuple(i)]:g} at {i.tolist()} is beyond float32's range (±3.4e38)")
        elif arr.dtype.kind in "iu" and arr.size and max(abs(int(arr.min())), abs(int(arr.max()))) > FLOAT32_MAX:
            raise BadRequest(f"{key}: an integer beyond float32's range (±3.4e38)")
        arr = arr.astype(np.float32)
    if arr.shape != shape:
        if arr.size == int(np.prod(shape)) and arr.ndim > len(shape):
            arr = arr.reshape(shape)  # a leading batch dim of 1 is fine
        else:
            raise BadRequest(f"{key}: shape {tuple(arr.shape)} does not match the checkpoint's {shape}")
    if arr is value and not _all_finite(arr):
        raise BadRequest(f"{key}: contains {_describe_nonfinite(arr)}")
    return arr


def check_task(value: Any, max_chars: int | None = None) -> str:
    """The instruction as a string of at most `max_chars` characters (checked before any tokenizer sees it)."""
    if isinstance(value, bytes):
        if max_chars is not None and len(value) > 4 * max_chars:
            raise BadRequest(f"prompt/task: {len(value)} bytes, over the server's limit of {max_chars} characters (--max-prompt-chars)")
        value = value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray) and value.dtype.kind in "US":
        value = str(value.item())
    if not isinstance(value, str):
        raise BadRequest(f"prompt/task: expected a string instruction, got {type(value).__name__}")
    if max_chars is not None and len(value) > max_chars:
        raise BadRequest(f"prompt/task: {len(value)} characters, over the server's limit of {max_chars} (--max-prompt-chars)")
    return value


@dataclass
class Observation:
    """One validated request: images as sent (HWC or CHW; with `optional_cameras`, only those sent),
    float32 vectors, the task string."""

    images: dict[str, np.ndarray]
    vectors: dict[str, np.ndarray]
    task: str


def validate(mapped: dict[str, Any], spec: ObservationSpec, mapper: KeyMapper, max_prompt_chars: int | None = None) -> Observation:
    """Check every input the checkpoint needs; raise `BadRequest` on the first problem."""
    try:
        task = check_task(mapped[TASK], max_prompt_chars) if spec.needs_task or TASK in mapped else ""
        sent = [k for k in spec.cameras if k in mapped] if spec.optional_cameras else list(spec.cameras)
        images = {k: check_image(k, mapped[k], spec.cameras[k]) for k in sent or spec.cameras}
        vectors = {k: check_vector(k, mapped[k], shape) for k, shape in spec.vectors.items()}
    except KeyError:  # rare: name every missing key at once, not just the first
        cameras = list(spec.cameras)
        if spec.optional_cameras and any(k in mapped for k in cameras):
            cameras = []
        missing = [t for t in [*cameras, *spec.vectors] if t not in mapped]
        if spec.needs_task and TASK not in mapped:
            missing.append(TASK)
        if not missing:
            raise  # a KeyError from a check itself: a bug, not the client's
        wanted = "; ".join(f"{t} (send as one of {mapper.expected_names(t)})" for t in missing)
        some = " (at least one camera)" if spec.optional_cameras and set(missing) & set(spec.cameras) else ""
        raise BadRequest(f"missing observation key(s){some}: {wanted}. Map other names with --key-map") from None
    return Observation(images=images, vectors=vectors, task=task)


def decode_openpi(msg: Any, spec: ObservationSpec, mapper: KeyMapper, max_prompt_chars: int | None = None) -> Observation:
    """An OpenPI/LeRobot/LabUtopia-style observation dict → `Observation`."""
    return validate(mapper.map(msg), spec, mapper, max_prompt_chars)


def decode_simple(msg: Any, spec: ObservationSpec, max_prompt_chars: int | None = None) -> Observation:
    """The simple client's `{"images": [...], "state": [...], "instruction": "..."}` → `Observation`."""
    if not isinstance(msg, Mapping):
        raise BadRequest(f"expected a msgpack map with images/state/instruction, got {type(msg).__name__}")
    msg = {k.decode("utf-8", "replace") if isinstance(k, bytes) else k: v for k, v in msg.items()}
    missing = [k for k in ("images", "state") if k not in msg]
    if spec.needs_task and "instruction" not in msg:
        missing.append("instruction")
    if missing:
        raise BadRequest(f"missing key(s) {missing}; the simple protocol sends {{'images': [...], 'state': [...], 'instruction': '...'}}")
    task = check_task(msg["instruction"], max_prompt_chars) if "instruction" in msg else ""  # cheap check first
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
