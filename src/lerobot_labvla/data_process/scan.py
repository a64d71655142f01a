"""`labvla-data scan`: find faulty episodes and action outliers, write `report.json`.

Two streaming passes over the frame data: the first runs every per-episode check and keeps a
few numbers per episode (length, content hash, per-dim action quantiles); the second re-reads
only the episodes whose action range exceeds the robust bounds, to list the offending frames.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

import pyarrow.parquet as pq

from lerobot_labvla.data_process.columns import check_columns, vector_size
from lerobot_labvla.data_process.fingerprint import fingerprint
from lerobot_labvla.data_process.merge import DIM_PAD_KEYS
from lerobot_labvla.data_process.reader import (
    INDEX_COLUMNS,
    V30,
    DatasetView,
    EpisodeData,
    EpisodeRef,
    iter_episodes,
    open_dataset,
)
from lerobot_labvla.data_process.schemas import check_schema, feature_dims, has_limits
from lerobot_labvla.errors import LabVLAError

REPORT_FORMAT = "labvla-data/scan-report"
REPORT_VERSION = 2  # 2: dataset fingerprint, schema/video/dataset-level checks
ACTION = "action"
STATE = "observation.state"
# LabVLA pads state and action to these sizes (LabVLAConfig.max_state_dim / max_action_dim, as the
# official toolkit's action_dim_cap detector); larger vectors need a larger --policy.max_*_dim.
MAX_DIM = 32
# The official toolkit's video_stubs threshold: a recording this short is a failed one.
STUB_PACKETS = 3
# video_concat_hazard: a first DTS held by at most this share of a camera's files is an outlier.
DTS_OUTLIER_SHARE = 0.01

# name -> (severity, what it means). Severity "error" = clean drops the episode by default.
CHECKS: dict[str, tuple[str, str]] = {
    "missing_file": ("error", "a data or video file the metadata points to does not exist"),
    "unreadable_file": ("error", "a data or video file cannot be read or decoded (truncated, corrupt, or ends early)"),
    "schema_mismatch": ("error", "the episode's data file has missing, extra or mis-shaped columns (LeRobot cannot load it)"),
    "dtype_cast": ("warning", "a column's numeric type differs from info.json (LeRobot casts it on load)"),
    "length_mismatch": ("error", "data rows differ from the episode length in the metadata"),
    "episode_index_mismatch": ("error", "rows carry another episode_index/index than the metadata says"),
    "frame_index_mismatch": ("error", "frame_index is not 0, 1, ..., length-1"),
    "video_frame_mismatch": ("error", "a camera's video frames differ from the data rows"),
    "video_fps_mismatch": ("error", "a video's frame rate differs from info.json's fps"),
    "video_stub": ("error", f"a video holds at most {STUB_PACKETS} packets (a failed recording)"),
    "video_concat_hazard": ("error", "a video's first DTS is an outlier among its camera's files "
                                     "(breaks LeRobot's video concatenation)"),
    "timestamp_non_monotonic": ("error", "timestamps do not increase"),
    "timestamp_gap": ("error", "consecutive timestamps differ from 1/fps by more than the tolerance"),
    "nan_inf": ("error", "NaN or Inf in a float feature (state, action, ...)"),
    "action_outlier": ("error", "an action value's robust z-score against the dataset's quantiles exceeds the limit"),
    "missing_task": ("error", "the episode's task text is empty or its task_index is unknown"),
    "stuck_action": ("warning", "the action does not change for at least --stuck-seconds"),
    "stuck_dim": ("warning", "one state/action dim is frozen for the whole episode while others move "
                             "(and that dim moves in most episodes)"),
    "joint_limit": ("warning", "a value lies outside the robot's limits (only with a --schema that knows them)"),
    "gripper_chatter": ("warning", "the gripper toggles open/closed too often within a short window"),
    "too_short": ("warning", "the episode is shorter than --min-seconds"),
    "too_long": ("warning", "the episode is longer than --max-seconds or --max-length-factor x the median"),
    "duplicate_episode": ("warning", "the episode's state and action equal an earlier episode's"),
    "annotation_coverage": ("warning", "an annotation stream (RoboGenesis) covers too few frames"),
}
DATASET_CHECKS: dict[str, tuple[str, str]] = {
    "metadata_mismatch": ("error", "meta/info.json totals, chunk/file counts or episode indices disagree with the files"),
    "orphan_file": ("error", "a data file no episode points to (LeRobot loads every data file: extra rows)"),
    "timestamp_column": ("error", "info.json has no timestamp feature"),
    "stats_orphan": ("warning", "per-episode stats rows for episodes that do not exist"),
    "dim_over_cap": ("warning", f"state or action has more than {MAX_DIM} dims (LabVLA's default max_state_dim/max_action_dim)"),
    "missing_stats": ("warning", "meta/stats.json is missing (LeRobot needs it to normalize)"),
}
SEVERITY_RANK = {"warning": 1, "error": 2}


@dataclass
class ScanConfig:
    """Thresholds of the checks (CLI flags of the same names)."""

    schema: str = "lerobot"
    decode_video: bool = False
    outlier_z: float = 8.0
    stuck_seconds: float = 3.0
    stuck_eps: float = 1e-6
    min_seconds: float = 1.0
    max_seconds: float | None = None
    max_length_factor: float = 5.0
    # LeRobotDataset's own default `tolerance_s`: what it accepts when it aligns frames to timestamps.
    timestamp_tolerance_s: float = 1e-4
    chatter_window_s: float = 1.0
    chatter_toggles: int = 4
    limit_margin: float = 0.0
    min_annotation_coverage: float = 0.9
    max_frames_listed: int = 100


@dataclass
class Finding:
    check: str
    message: str
    frames: list[int] | None = None  # None: the whole episode
    details: dict = field(default_factory=dict)

    def to_json(self, severity: str, max_frames: int) -> dict:
        frames = None if self.frames is None else [int(f) for f in self.frames[:max_frames]]
        return {
            "check": self.check,
            "severity": severity,
            "message": self.message,
            "frames": frames,
            "num_frames": None if self.frames is None else len(self.frames),
            "details": self.details,
        }


def _frames(mask: np.ndarray) -> list[int]:
    return np.flatnonzero(mask).tolist()


def _annotation_keys(view: DatasetView) -> list[str]:
    # RoboGenesis writes its annotation streams as `annotation.<stream>` features; LeRobot's own
    # annotation tool writes `language_persistent` (per-frame, so coverage is meaningful).
    return [k for k in view.features if k.startswith("annotation.") or k == "language_persistent"]


def _is_empty(value) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    if isinstance(value, str | list | tuple | dict):
        return len(value) == 0 or (isinstance(value, str) and not value.strip())
    return False


class _Scanner:
    def __init__(self, view: DatasetView, cfg: ScanConfig):
        self.view = view
        self.cfg = cfg
        self.fps = view.fps
        self.float_keys = view.float_keys()
        self.dims = {k: feature_dims(cfg.schema, k, view.dim_names(k)) for k in view.numeric_keys()}
        self.annotation_keys = _annotation_keys(view)
        self.columns = list(INDEX_COLUMNS) + view.numeric_keys() + self.annotation_keys
        self.findings: dict[int, list[Finding]] = {ep.index: [] for ep in view.episodes}
        self.rows: dict[int, int] = {}
        self.hashes: dict[str, int] = {}
        self.video_probe: dict[Path, dict] = {}
        # Per-episode action quantiles for the robust bounds: episode -> (count, q[5, D], min[D], max[D]).
        self.action_q: dict[int, tuple[int, np.ndarray, np.ndarray, np.ndarray]] = {}
        # A merged dataset's (`labvla-data merge --pad`) action dims that are padding in an episode: episode -> (D,).
        self.action_pad: dict[int, np.ndarray] = {}
        # Per data file: findings of its column check, and the columns not to read (wrong type).
        self.file_findings: dict[Path, list[Finding]] = {}
        self.bad_columns: dict[Path, set[str]] = {}
        # stuck_dim: feature -> episode -> which dims move in that episode.
        self.moving: dict[str, dict[int, np.ndarray]] = {ACTION: {}, STATE: {}}

    # ---- pass 1 -------------------------------------------------------------------------------
    def run(self) -> None:
        self.check_file_columns()
        for ep in iter_episodes(self.view, self.columns, exclude=self.bad_columns):
            out = self.findings[ep.ref.index]
            out.extend(self.file_findings.get(ep.ref.data_path, []))
            if ep.error:
                out.append(Finding(ep.error, ep.message, None, {"file": str(ep.ref.data_path)}))
            else:
                self.rows[ep.ref.index] = ep.num_rows
                try:
                    out.extend(self.check_frames(ep))
                except Exception as exc:  # values no check expected: a finding, never an aborted scan
                    out.append(Finding("unreadable_file", f"the rows of episode {ep.ref.index} in {ep.ref.data_path} "
                                       f"could not be checked: {type(exc).__name__}: {exc}", None,
                                       {"file": str(ep.ref.data_path)}))
            out.extend(self.check_task(ep.ref))
            out.extend(self.check_videos(ep.ref, ep.num_rows if not ep.error else ep.ref.length))
        self.check_lengths()
        self.check_outliers()
        self.check_stuck_dims()
        self.check_concat_hazards()

    def check_file_columns(self) -> None:
        """Compare each data file's columns with info.json (schema only, no rows read)."""
        for rel in dict.fromkeys(ep.data_path for ep in self.view.episodes):
            try:
                schema = pq.read_schema(self.view.root / rel)
            except Exception:  # missing or unreadable: the reader reports it per episode
                continue
            problems = check_columns(schema, self.view.features)
            found = []
            for severity, check in (("error", "schema_mismatch"), ("warning", "dtype_cast")):
                hits = [p for p in problems if p.severity == severity]
                if hits:
                    found.append(Finding(check, f"data file {rel}: " + "; ".join(p.message for p in hits), None,
                                         {"file": str(rel), "columns": sorted({p.column for p in hits})}))
            self.file_findings[rel] = found
            self.bad_columns[rel] = {p.column for p in problems if p.severity == "error"}

    def check_shapes(self, ep: EpisodeData) -> list[Finding]:
        """Vectors of another length than info.json's shape (variable-length list columns); such
        columns are left out of every other check."""
        bad = []
        for key in self.view.numeric_keys():
            arr = ep.columns.get(key)
            if arr is None or arr.ndim != 2 or arr.dtype == object:
                continue
            if arr.shape[1] != vector_size(self.view.features[key]):
                bad.append(key)
        if not bad:
            return []
        sizes = {k: ep.columns.pop(k).shape[1] for k in bad}
        msg = "; ".join(f"{k} has {d} values per frame, info.json says {vector_size(self.view.features[k])}"
                        for k, d in sizes.items())
        return [Finding("schema_mismatch", f"data file {ep.ref.data_path}: {msg}", None,
                        {"file": str(ep.ref.data_path), "columns": bad})]

    def check_frames(self, ep: EpisodeData) -> list[Finding]:
        ref, cols, cfg = ep.ref, ep.columns, self.cfg
        n = ep.num_rows
        out = self.check_shapes(ep)
        if n != ref.length:
            out.append(Finding("length_mismatch", f"{n} rows in the data, {ref.length} in the metadata", None,
                               {"rows": n, "length": ref.length}))
        if "episode_index" in cols:
            bad = cols["episode_index"] != ref.index
            if bad.any():
                found = sorted(set(cols["episode_index"][bad].tolist()))[:10]
                out.append(Finding("episode_index_mismatch", f"rows say episode_index {found}, metadata says {ref.index}",
                                   _frames(bad), {"found": found}))
        if "index" in cols and ref.row_start is not None:
            # `index` may follow the metadata (dataset_from_index + k) or the rows' positions in the
            # file (which differ after an earlier episode gained or lost a row): either is the row's own.
            k = np.arange(n)
            bad = cols["index"] != ref.row_start + k
            if ep.position_start is not None:
                bad &= cols["index"] != ep.position_start + k
            if bad.any():
                out.append(Finding("episode_index_mismatch", "global `index` column does not match dataset_from_index",
                                   _frames(bad), {"dataset_from_index": ref.row_start}))
        if "frame_index" in cols:
            bad = cols["frame_index"] != np.arange(n)
            if bad.any():
                out.append(Finding("frame_index_mismatch", "frame_index is not 0..length-1", _frames(bad)))
        if "timestamp" in cols and n > 1:
            dt = np.diff(cols["timestamp"].astype(np.float64).reshape(n))
            back = dt <= 0
            if back.any():
                out.append(Finding("timestamp_non_monotonic", f"timestamp goes back or repeats at {int(back.sum())} frames",
                                   _frames(np.concatenate([[False], back]))))
            gap = ~back & (np.abs(dt - 1.0 / self.fps) > cfg.timestamp_tolerance_s)
            if gap.any():
                worst = float(dt[gap][np.argmax(np.abs(dt[gap] - 1.0 / self.fps))])
                out.append(Finding("timestamp_gap", f"{int(gap.sum())} steps differ from 1/fps={1 / self.fps:.4g}s "
                                   f"(worst {worst:.4g}s)", _frames(np.concatenate([[False], gap])),
                                   {"worst_step_s": worst}))
        if "task_index" in cols and self.view.tasks:
            known = [i for i, text in self.view.tasks.items() if isinstance(text, str) and text.strip()]
            bad = ~np.isin(cols["task_index"], known)
            if bad.any():
                found = sorted(set(cols["task_index"][bad].tolist()))[:10]
                out.append(Finding("missing_task", f"task_index {found} has no task text in the tasks table",
                                   _frames(bad), {"task_index": found}))
        for key in self.float_keys:
            if key not in cols:
                continue
            arr = cols[key].reshape(n, -1)
            bad = ~np.isfinite(arr)
            if bad.any():
                names = self.view.dim_names(key)
                dims = sorted({names[d] if d < len(names) else str(d) for d in np.flatnonzero(bad.any(0))})
                out.append(Finding("nan_inf", f"{int(bad.any(1).sum())} frames of {key} hold NaN/Inf ({', '.join(dims[:8])})",
                                   _frames(bad.any(1)), {"feature": key, "dims": dims}))
        if ACTION in cols:
            pad = cols.get(DIM_PAD_KEYS[ACTION])
            if pad is not None and n:
                self.action_pad[ref.index] = pad.reshape(n, -1).astype(bool).any(0)
            out.extend(self.check_action(ref, cols[ACTION].reshape(n, -1)))
        for key, moving in self.moving.items():
            if key in cols and n >= 2:
                arr = cols[key].reshape(n, -1).astype(np.float64)
                finite = np.isfinite(arr)
                span = np.where(finite, arr, -np.inf).max(0) - np.where(finite, arr, np.inf).min(0)
                moving[ref.index] = span > cfg.stuck_eps  # a dim without finite values: -inf, not moving
                pad = cols.get(DIM_PAD_KEYS[key])  # `labvla-data merge --pad`: another robot's dims, not frozen ones
                if pad is not None and pad.shape == arr.shape:
                    moving[ref.index] |= pad.astype(bool).any(0)
        for key, dims in self.dims.items():
            if key in cols and has_limits(dims):
                out.extend(self.check_limits(key, cols[key].reshape(n, -1), dims))
        for key in self.annotation_keys:
            if key in cols and n:
                empty = np.array([_is_empty(v) for v in cols[key]])
                coverage = 1.0 - empty.mean()
                if coverage < cfg.min_annotation_coverage:
                    out.append(Finding("annotation_coverage", f"{key} covers {coverage:.0%} of frames "
                                       f"(< {cfg.min_annotation_coverage:.0%})", _frames(empty),
                                       {"stream": key, "coverage": round(float(coverage), 4)}))
        digest = hashlib.blake2b(digest_size=16)
        for key in self.view.numeric_keys():
            if key in cols:
                digest.update(np.ascontiguousarray(cols[key]).tobytes())
        h = digest.hexdigest()
        if h in self.hashes and n > 0:
            first = self.hashes[h]
            out.append(Finding("duplicate_episode", f"same state/action as episode {first}", None, {"duplicate_of": first}))
        else:
            self.hashes.setdefault(h, ref.index)
        return out

    def check_action(self, ref: EpisodeRef, act: np.ndarray) -> list[Finding]:
        cfg, out = self.cfg, []
        finite = np.isfinite(act).all(1)
        a = act[finite].astype(np.float64)
        if len(a) >= 1 and act.shape[1] == vector_size(self.view.features[ACTION]):
            q = np.quantile(a, [0.01, 0.10, 0.50, 0.90, 0.99], axis=0)
            self.action_q[ref.index] = (len(a), q, a.min(0), a.max(0))
        n = len(act)
        window = max(2, int(round(cfg.stuck_seconds * self.fps)))
        if n >= window:
            still = ~(np.abs(np.diff(act, axis=0)) > cfg.stuck_eps).any(1)  # step i -> i+1 without motion
            frames = []
            for start, stop in _runs(still):
                if stop - start + 1 >= window:  # `stop - start` steps span that many + 1 frames
                    frames.extend(range(start, stop + 1))
            if frames:
                out.append(Finding("stuck_action", f"action unchanged for {len(frames) / self.fps:.1f}s "
                                   f"(>= {cfg.stuck_seconds}s)", frames))
        for d, dim in enumerate(self.dims.get(ACTION, [])):
            if dim.kind != "gripper" or d >= act.shape[1]:
                continue
            g = act[:, d]
            g = g[np.isfinite(g)]
            if len(g) < 2 or np.ptp(g) <= 1e-6:
                continue
            closed = g > (g.min() + g.max()) / 2
            toggles = np.flatnonzero(np.diff(closed)) + 1
            k, win = cfg.chatter_toggles, cfg.chatter_window_s * self.fps
            hits = set()
            for j in range(len(toggles) - k + 1):
                if toggles[j + k - 1] - toggles[j] <= win:
                    hits.update(toggles[j : j + k].tolist())
            if hits:
                out.append(Finding("gripper_chatter", f"{dim.name} toggles {len(toggles)} times, {k}+ within "
                                   f"{cfg.chatter_window_s}s", sorted(hits), {"dim": dim.name, "toggles": int(len(toggles))}))
        return out

    def check_limits(self, key: str, arr: np.ndarray, dims) -> list[Finding]:
        m = self.cfg.limit_margin
        bad = np.zeros(arr.shape, dtype=bool)
        for d, dim in enumerate(dims[: arr.shape[1]]):
            if dim.low is not None:
                bad[:, d] |= arr[:, d] < dim.low - m
            if dim.high is not None:
                bad[:, d] |= arr[:, d] > dim.high + m
        if not bad.any():
            return []
        names = [dims[d].name for d in np.flatnonzero(bad.any(0))]
        return [Finding("joint_limit", f"{key} outside the {self.cfg.schema} limits in {', '.join(names)}",
                        _frames(bad.any(1)), {"feature": key, "dims": names})]

    def check_task(self, ref: EpisodeRef) -> list[Finding]:
        texts = [t for t in ref.tasks if isinstance(t, str) and t.strip()]
        if not texts:
            return [Finding("missing_task", "the episode has no task text in the metadata")]
        return []

    def check_videos(self, ref: EpisodeRef, rows: int) -> list[Finding]:
        out = []
        for key, vref in ref.videos.items():
            path = self.view.root / vref.path
            if not path.is_file():
                out.append(Finding("missing_file", f"video {vref.path} is missing", None, {"file": str(vref.path), "feature": key}))
                continue
            probe = self.probe(path)
            if "error" in probe:
                out.append(Finding("unreadable_file", f"video {vref.path} is unreadable: {probe['error']}", None,
                                   {"file": str(vref.path), "feature": key}))
                continue
            if probe["packets"] <= STUB_PACKETS:
                out.append(Finding("video_stub", f"video {vref.path} holds {probe['packets']} packets "
                                   f"(<= {STUB_PACKETS}: a failed recording)", None,
                                   {"file": str(vref.path), "feature": key, "packets": probe["packets"]}))
                continue
            if probe["rate"] is not None and abs(probe["rate"] - self.fps) > 0.01 * self.fps:
                out.append(Finding("video_fps_mismatch", f"video {vref.path} runs at {probe['rate']:.3g} fps, "
                                   f"info.json says {self.fps}", None,
                                   {"file": str(vref.path), "feature": key, "video_fps": probe["rate"]}))
            if vref.from_timestamp is None:  # v2.1: one file per episode
                frames = probe["frames"]
            else:
                frames = int(round((vref.to_timestamp - vref.from_timestamp) * self.fps))
                end = probe["duration"]
                if vref.to_timestamp > end + 1.0 / self.fps:
                    out.append(Finding("video_frame_mismatch", f"{key}: episode ends at {vref.to_timestamp:.3f}s, "
                                       f"video {vref.path} ends at {end:.3f}s", None, {"feature": key}))
                    continue
                if self.cfg.decode_video:
                    times = probe["times"]
                    lo, hi = vref.from_timestamp - 0.5 / self.fps, vref.to_timestamp - 0.5 / self.fps
                    frames = int(((times >= lo) & (times < hi)).sum())
            if frames != rows:
                out.append(Finding("video_frame_mismatch", f"{key}: {frames} video frames, {rows} data rows", None,
                                   {"feature": key, "video_frames": frames, "rows": rows}))
        return out

    def probe(self, path: Path) -> dict:
        if path not in self.video_probe:
            self.video_probe[path] = _probe_video(path, self.fps, self.cfg.decode_video)
        return self.video_probe[path]

    def check_stuck_dims(self) -> None:
        """stuck_dim: a dim frozen through one episode while its other dims move, and while that dim
        moves in at least half the episodes (a dim still in every episode is a layout, not a fault)."""
        for key, moving in self.moving.items():
            if not moving or key not in self.view.features:
                continue
            size = vector_size(self.view.features[key])
            rows = {i: m for i, m in moving.items() if len(m) == size}
            if len(rows) < 2:
                continue
            share = np.mean(np.stack(list(rows.values())), axis=0)
            dims = feature_dims(self.cfg.schema, key, self.view.dim_names(key))
            # A gripper that stays open through a whole episode (a press or push task) is normal.
            usual = np.array([share[d] >= 0.5 and dims[d].kind != "gripper" for d in range(size)])
            for idx, m in rows.items():
                frozen = usual & ~m
                if frozen.any() and m.any():
                    names = [dims[d].name for d in np.flatnonzero(frozen)]
                    self.findings[idx].append(Finding(
                        "stuck_dim", f"{key} {', '.join(names)} frozen for the whole episode while other dims move",
                        None, {"feature": key, "dims": names}))

    def check_concat_hazards(self) -> None:
        """The official toolkit's video_concat_hazards: per camera, a video whose first DTS differs
        from the usual one and is shared by at most 1 % of the camera's files. LeRobot's ffconcat
        offsets files by their start time, not their first DTS, so such a file makes DTS step back."""
        for key in self.view.video_keys:
            files = {}
            for ep in self.view.episodes:
                vref = ep.videos.get(key)
                probe = self.video_probe.get(self.view.root / vref.path) if vref else None
                if probe and probe.get("first_dts") is not None:
                    files.setdefault(vref.path, probe["first_dts"])
            counts: dict[int, int] = {}
            for dts in files.values():
                counts[dts] = counts.get(dts, 0) + 1
            if len(counts) < 2:
                continue
            modal, modal_n = max(counts.items(), key=lambda kv: kv[1])
            limit = max(1, int(DTS_OUTLIER_SHARE * len(files)))
            hazards = {f for f, dts in files.items() if dts != modal and counts[dts] <= limit and counts[dts] < modal_n}
            for ep in self.view.episodes:
                vref = ep.videos.get(key)
                if vref and vref.path in hazards:
                    dts = files[vref.path]
                    self.findings[ep.index].append(Finding(
                        "video_concat_hazard", f"video {vref.path} starts at DTS {dts}, {modal_n} of {len(files)} "
                        f"{key} videos start at {modal}", None,
                        {"file": str(vref.path), "feature": key, "first_dts": dts, "modal_first_dts": modal}))

    # ---- dataset-wide checks ------------------------------------------------------------------
    def check_lengths(self) -> None:
        cfg = self.cfg
        lengths = {ep.index: self.rows.get(ep.index, ep.length) for ep in self.view.episodes}
        median = float(np.median(list(lengths.values()))) if lengths else 0.0
        min_frames = cfg.min_seconds * self.fps
        for idx, n in lengths.items():
            if n < min_frames:
                self.findings[idx].append(Finding("too_short", f"{n} frames = {n / self.fps:.2f}s < {cfg.min_seconds}s"))
            limit = cfg.max_length_factor * median if cfg.max_length_factor else math.inf
            if cfg.max_seconds is not None:
                limit = min(limit, cfg.max_seconds * self.fps)
            if n > limit:
                self.findings[idx].append(Finding("too_long", f"{n} frames > {limit:.0f} (median {median:.0f})",
                                                  None, {"median_length": median}))

    def action_bounds(self) -> dict | None:
        if not self.action_q:
            return None
        counts = np.array([c for c, *_ in self.action_q.values()], dtype=np.float64)
        qs = np.stack([q for _, q, *_ in self.action_q.values()])  # (E, 5, D)
        # Same rule as LeRobot's aggregate_stats: count-weighted mean of the per-episode quantiles, per dim over
        # the episodes where it is real (a merged dataset's padding zeros would collapse another robot's spread).
        weight = counts[:, None] * ~np.stack([self._action_pad(i, qs.shape[-1]) for i in self.action_q])  # (E, D)
        q = (qs * weight[:, None, :]).sum(0) / np.maximum(weight.sum(0), 1e-12)
        # Robust sigma from q10..q90 (for N(0,1) that spread is 2.5631). q01/q99 only where q10..q90
        # is flat: in short episodes one spike drags the per-episode q01/q99 far out.
        floor = 1e-6 * np.maximum(1.0, np.abs(q[2]))
        sigma = (q[3] - q[1]) / 2.5631
        sigma = np.where(sigma > floor, sigma, np.maximum((q[4] - q[0]) / 4.6527, floor))
        z = self.cfg.outlier_z
        dims = self.dims.get(ACTION, [])
        # Gripper dims are often binary with a rare value; gripper_chatter covers them instead.
        skip = [d for d, dim in enumerate(dims) if dim.kind == "gripper"]
        low, high = q[2] - z * sigma, q[2] + z * sigma
        low[skip], high[skip] = -np.inf, np.inf
        names = self.view.dim_names(ACTION)
        return {
            "feature": ACTION,
            "names": names,
            "z": z,
            "q01": q[0].tolist(), "q10": q[1].tolist(), "q50": q[2].tolist(), "q90": q[3].tolist(), "q99": q[4].tolist(),
            "sigma": sigma.tolist(),
            "low": [None if math.isinf(v) else v for v in low.tolist()],
            "high": [None if math.isinf(v) else v for v in high.tolist()],
            "skipped_dims": [names[d] for d in skip],
        }

    def _action_pad(self, episode: int, width: int) -> np.ndarray:
        pad = self.action_pad.get(episode)
        return pad if pad is not None and pad.shape == (width,) else np.zeros(width, dtype=bool)

    def check_outliers(self) -> None:
        self.bounds = self.action_bounds()
        if self.bounds is None:
            return
        low = np.array([-np.inf if v is None else v for v in self.bounds["low"]])
        high = np.array([np.inf if v is None else v for v in self.bounds["high"]])
        flagged = [i for i, (_, _, mn, mx) in self.action_q.items() if (mn < low).any() or (mx > high).any()]
        if not flagged:
            return
        q50, sigma, names = np.array(self.bounds["q50"]), np.array(self.bounds["sigma"]), self.bounds["names"]
        for ep in iter_episodes(self.view, [ACTION], flagged):
            if ep.error or ACTION not in ep.columns:
                continue
            act = ep.columns[ACTION].reshape(ep.num_rows, -1).astype(np.float64)
            with np.errstate(invalid="ignore"):
                bad = np.isfinite(act) & ((act < low) | (act > high)) & ~self._action_pad(ep.ref.index, act.shape[1])
                zs = np.abs(act - q50) / sigma
            if not bad.any():  # only a merged dataset's padding was out of bounds
                continue
            dims = np.flatnonzero(bad.any(0))
            details = {"dims": [names[d] for d in dims], "max_z": [round(float(zs[bad[:, d], d].max()), 2) for d in dims]}
            self.findings[ep.ref.index].append(
                Finding("action_outlier", f"action outside q50 ± {self.cfg.outlier_z}σ in {', '.join(details['dims'])} "
                        f"(max z {max(details['max_z']):.1f})", _frames(bad.any(1)), details)
            )

    def dataset_findings(self) -> list[dict]:
        out = []
        view = self.view
        info, eps, root = view.info, view.episodes, view.root
        frames = sum(self.rows.get(ep.index, ep.length) for ep in eps)
        # LeRobot sizes the dataset from these totals (len(ds) = total_frames): a wrong one ends in
        # an IndexError in the middle of training.
        for key, have, what in (("total_episodes", len(eps), "episodes in meta/episodes"),
                                ("total_frames", frames, "rows in the data files"),
                                ("total_tasks", len(view.tasks), "tasks in the tasks table")):
            if key in info and info[key] != have:
                out.append(("metadata_mismatch", f"info.json {key} is {info[key]}, the dataset has {have} {what}"))
        idx = [ep.index for ep in eps]
        if idx != list(range(len(eps))):
            out.append(("metadata_mismatch", "episode indices are not 0..N-1 in order"))
        data_files = {p.relative_to(root).as_posix() for p in (root / "data").glob("*/*.parquet")}
        used = {ep.data_path.as_posix() for ep in eps}
        if view.version == V30:
            orphans = sorted(data_files - used)
            if orphans:
                out.append(("orphan_file", f"{len(orphans)} data file(s) no episode points to: {', '.join(orphans[:5])}"))
        else:
            chunks = len({Path(f).parent for f in used})
            if "total_chunks" in info and info["total_chunks"] != chunks:
                out.append(("metadata_mismatch", f"info.json total_chunks is {info['total_chunks']}, "
                            f"the episodes use {chunks} chunk folder(s)"))
            videos = sum(len(ep.videos) for ep in eps)
            if "total_videos" in info and view.video_keys and info["total_videos"] != videos:
                out.append(("metadata_mismatch", f"info.json total_videos is {info['total_videos']}, "
                            f"the episodes have {videos}"))
            out.extend(_stats_orphans(root, set(idx)))
        if "timestamp" not in view.features:
            out.append(("timestamp_column", "info.json has no timestamp feature; LeRobot aligns frames and "
                        "video by it"))
        for key in (STATE, ACTION):
            if key in view.features and vector_size(view.features[key]) > MAX_DIM:
                out.append(("dim_over_cap", f"{key} has {vector_size(view.features[key])} dims > {MAX_DIM}; "
                            f"train LabVLA with --policy.max_{'action' if key == ACTION else 'state'}_dim of at least that"))
        if view.version == V30 and not (root / "meta" / "stats.json").is_file():
            out.append(("missing_stats", "meta/stats.json is missing"))
        return [{"check": c, "severity": DATASET_CHECKS[c][0], "message": m} for c, m in out]


def _stats_orphans(root: Path, episodes: set[int]) -> list[tuple[str, str]]:
    """v2.1: meta/episodes_stats.jsonl lines for episodes that episodes.jsonl lacks (LeRobot's
    v2.1->v3.0 converter pairs them up by position and fails)."""
    path = root / "meta" / "episodes_stats.jsonl"
    if not path.is_file():
        return []
    orphans = set()
    try:
        for line in path.read_text().splitlines():
            if line.strip():
                item = json.loads(line)
                if isinstance(item, dict) and item.get("episode_index") not in episodes:
                    orphans.add(str(item.get("episode_index")))
    except ValueError as exc:
        return [("stats_orphan", f"meta/episodes_stats.jsonl is not valid JSON lines ({exc})")]
    if not orphans:
        return []
    return [("stats_orphan", f"meta/episodes_stats.jsonl has stats for {len(orphans)} episode(s) that do not exist: "
             f"{', '.join(sorted(orphans)[:10])}")]


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of each run of True in `mask`, stop exclusive."""
    padded = np.concatenate([[False], mask, [False]]).astype(np.int8)
    d = np.diff(padded)
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist(), strict=True))


def _probe_video(path: Path, fps: int, decode: bool) -> dict:
    """Frame count, duration, rate, packet count (up to STUB_PACKETS + 1) and first DTS of a video,
    and one decoded frame (all frames' times if `decode`)."""
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            if stream.duration is not None:
                duration = float(stream.duration * stream.time_base)
            else:
                duration = float(container.duration / av.time_base) if container.duration else 0.0
            frames = int(stream.frames) or int(round(duration * fps))
            rate = stream.average_rate or stream.guessed_rate
            out = {"frames": frames, "duration": duration, "rate": float(rate) if rate else None}
            # As the official toolkit's video_stubs / video_concat_hazards / video_decode: demux a
            # few packets (count, first DTS) and decode the first frame, single-threaded.
            stream.thread_type = "NONE"
            packets, first_dts, decoded = 0, None, False
            for packet in container.demux(stream):
                if packet.dts is None:  # the demuxer's flush packet
                    continue
                packets += 1
                first_dts = int(packet.dts) if first_dts is None else first_dts
                decoded = decoded or bool(stream.codec_context.decode(packet))
                if decoded and packets > STUB_PACKETS:
                    break
            decoded = decoded or bool(stream.codec_context.decode(None))
            if not decoded:
                return {"error": "no frame decodes"}
            out.update(packets=packets, first_dts=first_dts)
        if decode:
            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                times = [float(f.pts * f.time_base) for f in container.decode(stream) if f.pts is not None]
                out["times"] = np.asarray(times)
                out["frames"] = len(times)
        return out
    except Exception as exc:  # PyAV raises InvalidDataError, IndexError (no stream), ...
        return {"error": f"{type(exc).__name__}: {exc}"}


def scan_dataset(root: str | Path, cfg: ScanConfig | None = None) -> dict:
    """Scan the dataset at `root` and return the report (see README `## data_process`)."""
    cfg = cfg or ScanConfig()
    check_schema(cfg.schema)
    t0 = time.perf_counter()
    view = open_dataset(root)
    identity = fingerprint(view.root)  # before reading: a file changed during the scan then shows up in clean
    scanner = _Scanner(view, cfg)
    scanner.run()
    elapsed = time.perf_counter() - t0

    episodes = []
    by_check: dict[str, dict[str, int]] = {}
    for ref in view.episodes:
        items = [f.to_json(CHECKS[f.check][0], cfg.max_frames_listed) for f in scanner.findings[ref.index]]
        severities = {i["severity"] for i in items}
        status = "error" if "error" in severities else "warning" if "warning" in severities else "ok"
        for i in items:
            c = by_check.setdefault(i["check"], {"episodes": 0, "frames": 0})
            c["frames"] += i["num_frames"] or 0
        for name in {i["check"] for i in items}:
            by_check[name]["episodes"] += 1
        episodes.append({
            "episode_index": ref.index,
            "length": scanner.rows.get(ref.index, ref.length),
            "tasks": ref.tasks,
            "status": status,
            "findings": items,
        })
    try:
        from importlib.metadata import version

        lerobot_version = version("lerobot")
    except Exception:
        lerobot_version = None
    return {
        "format": REPORT_FORMAT,
        "version": REPORT_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "lerobot_version": lerobot_version,
        "dataset": {
            "root": str(Path(root).resolve()),
            "codebase_version": view.version,
            "fps": view.fps,
            "robot_type": view.robot_type,
            "total_episodes": len(view.episodes),
            "total_frames": int(sum(e["length"] for e in episodes)),
            "features": {k: {"dtype": ft["dtype"], "shape": list(ft.get("shape") or [])} for k, ft in view.features.items()},
            "video_keys": view.video_keys,
            "fingerprint": identity,
        },
        "config": asdict(cfg),
        "checks": {k: {"severity": s, "description": d} for k, (s, d) in {**CHECKS, **DATASET_CHECKS}.items()},
        "summary": {
            "elapsed_s": round(elapsed, 3),
            "episodes_ok": sum(e["status"] == "ok" for e in episodes),
            "episodes_with_warnings": sum(e["status"] == "warning" for e in episodes),
            "episodes_with_errors": sum(e["status"] == "error" for e in episodes),
            "faulty_episodes": [e["episode_index"] for e in episodes if e["status"] == "error"],
            "by_check": dict(sorted(by_check.items())),
        },
        "action_bounds": scanner.bounds,
        "dataset_findings": scanner.dataset_findings(),
        "episodes": episodes,
    }


def worst_severity(report: dict) -> str | None:
    """"error", "warning" or None: the most severe finding of the report, episodes and dataset."""
    severities = {f["severity"] for e in report["episodes"] for f in e["findings"]}
    severities |= {f["severity"] for f in report["dataset_findings"]}
    return max(severities, key=SEVERITY_RANK.__getitem__, default=None)


def write_report(report: dict, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=1, allow_nan=False, default=_json_default))
    tmp.replace(path)
    return path


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def load_report(path: str | Path) -> dict:
    """Read a report written by `scan`, or raise `LabVLAError` saying what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise LabVLAError(f"report {path} does not exist; run `labvla-data scan --root DATASET --out {path}` first")
    try:
        report = json.loads(path.read_text())
    except ValueError as exc:
        raise LabVLAError(f"report {path} is not valid JSON ({exc}); re-run labvla-data scan") from exc
    if not isinstance(report, dict) or report.get("format") != REPORT_FORMAT or report.get("version") != REPORT_VERSION:
        raise LabVLAError(f"{path} is not a labvla-data scan report (version {REPORT_VERSION}); re-run labvla-data scan")
    def require(ok: bool, what: str) -> None:
        if not ok:
            raise TypeError(what)

    try:  # what clean reads: a hand-edited report fails here with its path, not deep inside clean
        require(isinstance(report["dataset"]["total_episodes"], int), "dataset.total_episodes")
        require(isinstance(report["dataset"]["fingerprint"], dict), "dataset.fingerprint")
        require(isinstance(report["episodes"], list), "episodes")
        for ep in report["episodes"]:
            require(isinstance(ep["episode_index"], int) and isinstance(ep["length"], int), "episodes[].episode_index")
            for f in ep["findings"]:
                require(isinstance(f["check"], str) and isinstance(f["severity"], str), "episodes[].findings[]")
        require(report.get("action_bounds") is None or isinstance(report["action_bounds"], dict), "action_bounds")
    except (KeyError, TypeError) as exc:
        raise LabVLAError(f"report {path} is damaged ({type(exc).__name__}: {exc}); re-run labvla-data scan") from exc
    return report


def summary_table(report: dict) -> str:
    """The human summary printed by `labvla-data scan`."""
    ds, s = report["dataset"], report["summary"]
    lines = [
        f"scanned {ds['root']} ({ds['codebase_version']}, {ds['total_episodes']} episodes, {ds['total_frames']} frames, "
        f"{ds['fps']} fps) in {s['elapsed_s']:.2f}s",
        f"  ok {s['episodes_ok']}  warning {s['episodes_with_warnings']}  error {s['episodes_with_errors']}",
    ]
    if s["by_check"]:
        lines.append(f"  {'check':<26}{'severity':<10}{'episodes':>9}{'frames':>9}")
        for name, c in s["by_check"].items():
            lines.append(f"  {name:<26}{CHECKS[name][0]:<10}{c['episodes']:>9}{c['frames']:>9}")
    for f in report["dataset_findings"]:
        lines.append(f"  dataset: {f['check']} ({f['severity']}): {f['message']}")
    faulty = s["faulty_episodes"]
    if faulty:
        shown = ", ".join(map(str, faulty[:30])) + (" ..." if len(faulty) > 30 else "")
        lines.append(f"  faulty episodes: {shown}")
    return "\n".join(lines)
