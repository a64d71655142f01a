"""`labvla-data stats --plot`: per-dim histograms and per-episode action traces as HTML or PNG."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np

from lerobot_labvla.data_process.reader import iter_episodes, open_dataset
from lerobot_labvla.data_process.stats import stats_table
from lerobot_labvla.errors import LabVLAError

_BINS = 50


def plot_stats(root: str | Path, result: dict, out: str | Path, n_episodes: int = 10) -> Path:
    """Draw histograms of `observation.state`/`action` dims and the first episodes' action traces."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    if out.suffix.lower() not in (".html", ".png"):
        raise LabVLAError(f"--plot {out}: use a .html or .png file name")
    view = open_dataset(root)
    keys = [k for k in ("observation.state", "action") if "overall" in result["features"].get(k, {})]
    if not keys:
        raise LabVLAError(f"{root} has neither observation.state nor action to plot")

    # Histograms are accumulated episode by episode on fixed bins (overall min..max), so the plot
    # streams like the stats do.
    edges, hists = {}, {}
    for key in keys:
        o = result["features"][key]["overall"]
        lo, hi = np.asarray(o["min"], float).reshape(-1), np.asarray(o["max"], float).reshape(-1)
        hi = np.where(hi > lo, hi, lo + 1e-6)
        edges[key] = [np.linspace(a, b, _BINS + 1) for a, b in zip(lo, hi, strict=True)]
        hists[key] = np.zeros((len(lo), _BINS))
    traces = []
    for ep in iter_episodes(view, keys):
        if ep.error:
            continue
        for key in keys:
            arr = ep.columns[key].reshape(ep.num_rows, -1)
            for d in range(min(arr.shape[1], len(edges[key]))):
                hists[key][d] += np.histogram(arr[:, d][np.isfinite(arr[:, d])], bins=edges[key][d])[0]
        if "action" in keys and len(traces) < n_episodes:
            traces.append((ep.ref.index, ep.columns["action"].reshape(ep.num_rows, -1)))

    n_dims = max(len(edges[k]) for k in keys)
    rows = len(keys) + (1 if traces else 0)
    fig, axes = plt.subplots(rows, n_dims, figsize=(2.2 * n_dims, 2.0 * rows), squeeze=False)
    for r, key in enumerate(keys):
        names = result["features"][key]["names"]
        for d in range(n_dims):
            ax = axes[r][d]
            if d >= len(edges[key]):
                ax.axis("off")
                continue
            e = edges[key][d]
            ax.bar(e[:-1], hists[key][d], width=np.diff(e), align="edge")
            ax.set_title(f"{key.split('.')[-1]}: {names[d] if d < len(names) else d}", fontsize=7)
            ax.tick_params(labelsize=6)
    if traces:
        names = result["features"]["action"]["names"]
        for d in range(n_dims):
            ax = axes[-1][d]
            if d >= traces[0][1].shape[1]:
                ax.axis("off")
                continue
            for idx, act in traces:
                ax.plot(np.arange(len(act)) / view.fps, act[:, d], lw=0.7, label=str(idx))
            ax.set_title(f"action trace: {names[d] if d < len(names) else d}", fontsize=7)
            ax.set_xlabel("s", fontsize=6)
            ax.tick_params(labelsize=6)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".png":
        fig.savefig(out, dpi=110)
    else:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        img = base64.b64encode(buf.getvalue()).decode()
        title = html.escape(str(result["dataset"]["root"]))
        out.write_text(
            f"<!doctype html><html><head><meta charset='utf-8'><title>labvla-data stats: {title}</title></head>"
            f"<body><h1>labvla-data stats</h1><p>{title} ({result['dataset']['codebase_version']}, "
            f"{result['dataset']['total_episodes']} episodes, schema {html.escape(result['schema'])})</p>"
            f"<img alt='histograms and action traces' src='data:image/png;base64,{img}'>"
            f"<pre>{html.escape(stats_table(result, keys))}</pre></body></html>"
        )
    plt.close(fig)
    return out
