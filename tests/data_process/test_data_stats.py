"""labvla-data stats: equal to LeRobot's own stats on the same data; DROID schema; plots."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from lerobot_labvla.data_process.cli import main
from lerobot_labvla.data_process.stats import STAT_KEYS, compute_stats


def test_equal_to_lerobot_stats(v30_root):
    """LeRobot wrote meta/episodes stats and meta/stats.json at save_episode; ours must match."""
    from lerobot.datasets.io_utils import load_stats

    result = compute_stats(v30_root)
    episodes = pd.read_parquet(v30_root / "meta/episodes/chunk-000/file-000.parquet")
    numeric = ["observation.state", "action", "timestamp", "frame_index", "episode_index", "index", "task_index"]
    assert set(numeric) <= set(result["features"])
    for ours in result["per_episode"]:
        row = episodes[episodes["episode_index"] == ours["episode_index"]].iloc[0]
        for key in numeric:
            for stat in STAT_KEYS:
                a, b = np.asarray(ours["stats"][key][stat]), np.asarray(row[f"stats/{key}/{stat}"])
                if key in ("observation.state", "action"):
                    np.testing.assert_array_equal(a, b)  # float32 in, float32 stored: bit-equal
                else:  # LeRobot saw float64 timestamps before they were stored as float32
                    np.testing.assert_allclose(a, b, rtol=1e-6)
    lerobot = load_stats(v30_root)
    for key in numeric:
        for stat in STAT_KEYS:
            # LeRobot aggregates episode by episode while recording; we aggregate once: same formula,
            # float rounding apart.
            np.testing.assert_allclose(result["features"][key]["overall"][stat], lerobot[key][stat], rtol=1e-6, atol=1e-9)


def test_v21_stats_and_droid_schema(v21_root):
    result = compute_stats(v21_root, schema="robointer_droid")
    assert result["dataset"]["codebase_version"] == "v2.1"
    assert len(result["per_episode"]) == 10
    # 8-dim state = 7 joints + gripper under the DROID layout; the synthetic sines break joint_3's
    # limit (it must stay in [-3.07, -0.07] rad) and the gripper's [0, 1].
    assert result["features"]["observation.state"]["names"] == [f"joint_{i}" for i in range(7)] + ["gripper"]
    bad = {(v["feature"], v["dim"]) for v in result["range_violations"]}
    assert ("observation.state", "joint_3") in bad and ("observation.state", "gripper") not in bad
    assert ("action", "joint_0") not in bad


@pytest.mark.parametrize("suffix", ["html", "png"])
def test_cli_stats_table_json_and_plot(v21_root, tmp_path, capsys, suffix):
    out, plot = tmp_path / "stats.json", tmp_path / f"stats.{suffix}"
    assert main(["stats", "--dataset", str(v21_root), "--out", str(out), "--plot", str(plot)]) == 0
    table = capsys.readouterr().out
    assert "action" in table and "q99" in table
    assert json.loads(out.read_text())["features"]["action"]["overall"]["count"] == [400]
    data = plot.read_bytes()
    assert data.startswith(b"\x89PNG") if suffix == "png" else b"data:image/png;base64," in data
