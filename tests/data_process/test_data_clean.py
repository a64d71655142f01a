"""labvla-data clean: removes exactly the faulty episodes, writes v3.0, never touches the source."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from dp_cases import V21_CORRUPTIONS, V30_CORRUPTIONS
from dp_corrupt import truncate

from lerobot_labvla.data_process import clean as clean_mod
from lerobot_labvla.data_process import synthetic
from lerobot_labvla.data_process.clean import CleanConfig, clean_dataset
from lerobot_labvla.data_process.cli import main
from lerobot_labvla.data_process.reader import iter_episodes, open_dataset
from lerobot_labvla.data_process.scan import ScanConfig, scan_dataset, write_report
from lerobot_labvla.errors import LabVLAError


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def _actions(root: Path) -> dict[int, np.ndarray]:
    view = open_dataset(root)
    return {ep.ref.index: ep.columns["action"] for ep in iter_episodes(view, ["action"])}


def _load(root: Path):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    return LeRobotDataset(f"local/{root.name}", root=root, video_backend="pyav")


def test_clean_v21_drops_exactly_the_faulty_episodes(v21_corrupted, v21_root, tmp_path, capsys):
    before = _digest(v21_corrupted)
    report = tmp_path / "report.json"
    write_report(scan_dataset(v21_corrupted), report)
    dst = tmp_path / "clean"
    assert main(["clean", "--src", str(v21_corrupted), "--dst", str(dst), "--report", str(report)]) == 0
    assert "kept 4/10" in capsys.readouterr().out
    assert _digest(v21_corrupted) == before  # the source is untouched

    log = json.loads((dst / "clean_log.json").read_text())
    assert [d["episode_index"] for d in log["dropped"]] == sorted(V21_CORRUPTIONS)
    for d in log["dropped"]:
        assert V21_CORRUPTIONS[d["episode_index"]][0] in d["checks"]
    assert log["index_map"] == {"0": 0, "1": 7, "2": 8, "3": 9}
    assert not list(tmp_path.glob(".clean.labvla-tmp-*"))  # staging removed

    ds = _load(dst)
    assert ds.meta.info.codebase_version == "v3.0"
    assert ds.meta.total_episodes == 4 and len(ds) == 160
    item = ds[45]  # episode 1 of the clean dataset = source episode 7, frame 5
    assert int(item["episode_index"]) == 1 and int(item["frame_index"]) == 5
    assert item["observation.images.front"].shape == (3, 32, 32)
    src_actions = _actions(v21_root)
    for new, old in log["index_map"].items():
        np.testing.assert_array_equal(_actions(dst)[int(new)], src_actions[old])
    # Stats are recomputed on the kept episodes, quantiles included.
    kept = np.concatenate([src_actions[o] for o in log["index_map"].values()])
    np.testing.assert_allclose(ds.meta.stats["action"]["max"], kept.max(0), rtol=1e-6)
    assert "q01" in ds.meta.stats["action"]
    assert scan_dataset(dst)["summary"]["episodes_with_errors"] == 0


def test_clean_v30_drops_reindexes_and_clips(v30_corrupted, tmp_path):
    report = scan_dataset(v30_corrupted)
    dst = tmp_path / "clean"
    log = clean_dataset(v30_corrupted, dst, report)
    assert [d["episode_index"] for d in log["dropped"]] == sorted(V30_CORRUPTIONS)
    ds = _load(dst)
    assert ds.meta.total_episodes == 4 and list(log["index_map"].values()) == [0, 3, 6, 7]
    assert sorted(int(i) for i in ds.hf_dataset.unique("episode_index")) == [0, 1, 2, 3]
    assert scan_dataset(dst)["summary"]["episodes_with_errors"] == 0

    # --clip-actions keeps the spiked episode 5 and clips its spike to the report's bound.
    dst2 = tmp_path / "clipped"
    log = clean_dataset(v30_corrupted, dst2, report, CleanConfig(clip_actions=True))
    assert 5 in log["index_map"].values() and log["clipped"]
    new5 = next(int(n) for n, o in log["index_map"].items() if o == 5)
    low = report["action_bounds"]["low"][3]
    clipped = _actions(dst2)[new5]
    assert clipped[12, 3] == pytest.approx(low, rel=1e-6)
    assert _load(dst2).meta.stats["action"]["min"][3] >= low - 1e-6
    # A rescan measures against the kept episodes' own quantiles, so the clipped value may sit a
    # little past the new limit, but far below the spike's z.
    rescan = {e["episode_index"]: e for e in scan_dataset(dst2)["episodes"]}
    for f in rescan[new5]["findings"]:
        assert f["check"] == "action_outlier" and max(f["details"]["max_z"]) < 1.5 * report["action_bounds"]["z"]


def test_clean_refuses_and_stays_atomic(v21_root, v30_root, tmp_path, monkeypatch):
    report = scan_dataset(v30_root)
    dst = tmp_path / "clean"
    dst.mkdir()
    with pytest.raises(LabVLAError, match="already exists"):
        clean_dataset(v30_root, dst, report)
    with pytest.raises(LabVLAError, match="does not describe .* the report was made for"):
        clean_dataset(v21_root, tmp_path / "other", report)
    with pytest.raises(LabVLAError, match="report lists 8 episodes"):
        clean_dataset(v21_root, tmp_path / "other", report, CleanConfig(force=True))
    with pytest.raises(LabVLAError, match="outside --src"):
        clean_dataset(v30_root, v30_root / "sub", report)

    def boom(root):
        raise RuntimeError("disk full")

    monkeypatch.setattr(clean_mod, "_recompute_stats", boom)
    with pytest.raises(RuntimeError):
        clean_dataset(v30_root, tmp_path / "fails", report)
    assert not (tmp_path / "fails").exists()
    assert not list(tmp_path.glob(".*labvla-tmp*"))


def test_thresholds_choose_what_is_dropped():
    report = {"episodes": [
        {"episode_index": 0, "findings": [{"check": "stuck_action", "severity": "warning"}]},
        {"episode_index": 1, "findings": [{"check": "action_outlier", "severity": "error"}]},
        {"episode_index": 2, "findings": [{"check": "nan_inf", "severity": "error"}]},
    ]}
    drop = clean_mod.episodes_to_drop
    assert drop(report, CleanConfig()) == {1: ["action_outlier"], 2: ["nan_inf"]}
    assert set(drop(report, CleanConfig(drop_severity="warning"))) == {0, 1, 2}
    assert set(drop(report, CleanConfig(clip_actions=True))) == {2}
    assert set(drop(report, CleanConfig(drop_checks=["stuck_action"], keep_checks=["nan_inf"]))) == {0, 1}
    with pytest.raises(LabVLAError, match="unknown check"):
        CleanConfig(drop_checks=["nope"]).validate()


def test_clean_v30_with_video_recuts_the_video(v21_root, tmp_path):
    """A v3.0 source with a shared mp4: LeRobot's delete_episodes re-encodes the kept frames."""
    v30 = tmp_path / "v30"
    clean_dataset(v21_root, v30, scan_dataset(v21_root))  # v2.1 -> v3.0, 10 episodes, one mp4
    report = scan_dataset(v30)
    report["episodes"][2]["findings"].append({"check": "too_long", "severity": "warning"})
    dst = tmp_path / "dst"
    log = clean_dataset(v30, dst, report, CleanConfig(drop_checks=["too_long"]))
    assert [d["episode_index"] for d in log["dropped"]] == [2]
    ds = _load(dst)
    assert ds.meta.total_episodes == 9
    assert scan_dataset(dst, ScanConfig(decode_video=True))["summary"]["episodes_with_errors"] == 0
    # Episode 2 of the result is source episode 3: same frames (colour of the episode, moving bar).
    src, out = _load(v30), ds
    a = src[3 * 40 + 7]["observation.images.front"]
    b = out[2 * 40 + 7]["observation.images.front"]
    assert float((a - b).abs().mean()) < 0.05


def test_v30_with_a_truncated_file_among_several(tmp_path):
    """Only the episodes of the broken file go; the others are re-cut from the intact files."""
    from dp_corrupt import truncate


    src = tmp_path / "src"
    from lerobot_labvla.data_process import synthetic

    rng = np.random.default_rng(3)
    eps = [{**synthetic.smooth_episode(rng, 600), "task": "pick"} for _ in range(20)]
    synthetic.write_episodes(src, eps, state_names=[f"s{i}" for i in range(8)], action_names=[f"a{i}" for i in range(7)],
                             data_files_size_in_mb=1)
    files = sorted((src / "data").glob("*/*.parquet"))
    assert len(files) >= 2
    view = open_dataset(src)
    in_last = [ep.index for ep in view.episodes if src / ep.data_path == files[-1]]
    truncate(files[-1])
    report = scan_dataset(src)
    assert report["summary"]["faulty_episodes"] == in_last
    log = clean_dataset(src, tmp_path / "dst", report)
    ds = _load(tmp_path / "dst")
    assert ds.meta.total_episodes == 20 - len(in_last) == len(log["index_map"])
    np.testing.assert_array_equal(_actions(tmp_path / "dst")[1], eps[1]["action"])
