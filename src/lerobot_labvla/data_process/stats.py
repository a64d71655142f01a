"""`labvla-data stats`: per-episode and overall feature statistics, computed as LeRobot does.

The numbers come from LeRobot's own `compute_episode_stats` (per episode) and `aggregate_stats`
(overall), so they equal what LeRobot writes to `meta/episodes/` and `meta/stats.json`. LeRobot's
`dataset_tools.recompute_stats` is not reused as is: it needs a v3.0 `LeRobotDataset`, reads each
data file whole with pandas (images included) and keeps only the aggregate, while this streams
v2.1 and v3.0 episode by episode and keeps the per-episode numbers too.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from lerobot_labvla.data_process.columns import check_columns, vector_size
from lerobot_labvla.data_process.reader import DatasetView, iter_episodes, open_dataset
from lerobot_labvla.data_process.schemas import check_schema, feature_dims, has_limits

STAT_KEYS = ("count", "mean", "std", "min", "max", "q01", "q10", "q50", "q90", "q99")


def episode_stats(view: DatasetView, columns: dict[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    """LeRobot's `compute_episode_stats` over the numeric features of one episode."""
    from lerobot.datasets.compute_stats import compute_episode_stats

    keys = [k for k in view.numeric_keys(with_index_columns=True) if k in columns]
    return compute_episode_stats({k: columns[k] for k in keys}, {k: view.features[k] for k in keys})


def _broken_files(view: DatasetView) -> dict[Path, str]:
    """Data files whose columns LeRobot's loader would refuse (see columns.py) -> why."""
    out = {}
    for rel in dict.fromkeys(ep.data_path for ep in view.episodes):
        try:
            schema = pq.read_schema(view.root / rel)
        except Exception:  # missing or unreadable: iter_episodes says so per episode
            continue
        errors = [p.message for p in check_columns(schema, view.features) if p.severity == "error"]
        if errors:
            out[rel] = f"data file {rel}: {'; '.join(errors)}"
    return out


def iter_episode_stats(view: DatasetView):
    """Yield (episode_index, stats or None, error message) for every episode, streaming.

    Episodes whose data file has missing, extra or mis-shaped columns are skipped (with the reason):
    their numbers would not aggregate with the others'."""
    keys = view.numeric_keys(with_index_columns=True)
    broken = _broken_files(view)
    for ep in iter_episodes(view, keys):
        reason = broken.get(ep.ref.data_path)
        shapes = [k for k in view.numeric_keys() if k in ep.columns and ep.columns[k].ndim == 2
                  and ep.columns[k].shape[1] != vector_size(view.features[k])]
        if reason or shapes:
            yield ep.ref.index, None, reason or f"{', '.join(shapes)}: vectors of another length than info.json says"
        elif ep.error or ep.num_rows == 0:
            yield ep.ref.index, None, ep.message or "no rows"
        else:
            yield ep.ref.index, episode_stats(view, ep.columns), None


def _jsonable(stats: dict[str, dict[str, np.ndarray]]) -> dict:
    return {k: {s: np.asarray(v).tolist() for s, v in ft.items()} for k, ft in stats.items()}


def compute_stats(root: str | Path, schema: str = "lerobot") -> dict:
    """Statistics of every numeric feature, per episode and overall, plus the schema's range checks."""
    from lerobot.datasets.compute_stats import aggregate_stats

    check_schema(schema)
    view = open_dataset(root)
    per_episode, skipped, all_stats = [], [], []
    for idx, stats, error in iter_episode_stats(view):
        if stats is None:
            skipped.append({"episode_index": idx, "reason": error})
            continue
        all_stats.append(stats)
        per_episode.append({"episode_index": idx, "stats": _jsonable(stats)})
    overall = aggregate_stats(all_stats) if all_stats else {}

    features = {}
    ranges = []
    for key in view.numeric_keys(with_index_columns=True):
        dims = feature_dims(schema, key, view.dim_names(key))
        features[key] = {"names": [d.name for d in dims], "kinds": [d.kind for d in dims]}
        if key not in overall:
            continue
        features[key]["overall"] = _jsonable({key: overall[key]})[key]
        if has_limits(dims):
            ranges.extend(_range_violations(key, dims, overall[key], per_episode))
    result = {
        "dataset": {"root": str(Path(root).resolve()), "codebase_version": view.version, "fps": view.fps,
                    "robot_type": view.robot_type, "total_episodes": len(view.episodes)},
        "schema": schema,
        "features": features,
        "range_violations": ranges,
        "skipped_episodes": skipped,
        "per_episode": per_episode,
    }
    bad: list[str] = []
    result = _finite_or_null(result, "", bad)  # strict JSON: NaN/Inf become null, and are named
    result["findings"] = []
    if bad:
        result["findings"].append({
            "check": "non_finite_stats",
            "severity": "error",
            "message": f"{len(bad)} stats values are NaN or Inf (written as null), e.g. {', '.join(bad[:3])}; "
                       "`labvla-data scan` names the frames (nan_inf)",
            "paths": bad[:100],
        })
    return result


def _finite_or_null(obj, path: str, bad: list[str]):
    """`obj` with every non-finite float replaced by None; their paths appended to `bad`."""
    if isinstance(obj, float):
        if math.isfinite(obj):
            return obj
        bad.append(path)
        return None
    if isinstance(obj, dict):
        return {k: _finite_or_null(v, f"{path}.{k}" if path else str(k), bad) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite_or_null(v, f"{path}[{i}]", bad) for i, v in enumerate(obj)]
    return obj


def _range_violations(key: str, dims, overall: dict, per_episode: list[dict]) -> list[dict]:
    out = []
    lo_all, hi_all = np.asarray(overall["min"]).reshape(-1), np.asarray(overall["max"]).reshape(-1)
    for d, dim in enumerate(dims[: len(lo_all)]):
        below = dim.low is not None and lo_all[d] < dim.low
        above = dim.high is not None and hi_all[d] > dim.high
        if not (below or above):
            continue
        episodes = [
            e["episode_index"]
            for e in per_episode
            if (dim.low is not None and np.asarray(e["stats"][key]["min"]).reshape(-1)[d] < dim.low)
            or (dim.high is not None and np.asarray(e["stats"][key]["max"]).reshape(-1)[d] > dim.high)
        ]
        out.append({"feature": key, "dim": dim.name, "low": dim.low, "high": dim.high,
                    "min": float(lo_all[d]), "max": float(hi_all[d]), "episodes": episodes})
    return out


def stats_table(result: dict, keys: list[str] | None = None) -> str:
    """Overall stats as a text table, one row per dimension."""
    cols = ("mean", "std", "min", "q01", "q50", "q99", "max")
    lines = [f"{'feature':<22}{'dim':<14}{'count':>8}" + "".join(f"{c:>10}" for c in cols)]
    for key, ft in result["features"].items():
        if "overall" not in ft or (keys is not None and key not in keys):
            continue
        o = ft["overall"]
        vals = {c: np.asarray(o[c], dtype=np.float64).reshape(-1) for c in cols}
        count = int(np.asarray(o["count"]).reshape(-1)[0])
        for d in range(len(vals["mean"])):
            name = ft["names"][d] if d < len(ft["names"]) else str(d)
            lines.append(f"{key:<22}{name:<14}{count:>8}" + "".join(f"{vals[c][d]:>10.4g}" for c in cols))
    for v in result["range_violations"]:
        lo, hi = (f"{x:.4g}" if x is not None else "nan" for x in (v["min"], v["max"]))
        lines.append(f"out of range: {v['feature']}.{v['dim']} in [{lo}, {hi}], "
                     f"limits [{v['low']}, {v['high']}], episodes {v['episodes'][:20]}")
    for f in result.get("findings", []):
        lines.append(f"{f['check']} ({f['severity']}): {f['message']}")
    return "\n".join(lines)
