"""labvla-data scan: each corruption is reported with the right check, episode and frames."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from dp_cases import V21_CORRUPTIONS, V30_CORRUPTIONS
from dp_corrupt import truncate

from lerobot_labvla.data_process.cli import main
from lerobot_labvla.data_process.scan import CHECKS, load_report, scan_dataset
from lerobot_labvla.data_process.synthetic import smooth_episode, write_episodes


def _checks(report: dict) -> dict[int, dict[str, dict]]:
    return {e["episode_index"]: {f["check"]: f for f in e["findings"]} for e in report["episodes"]}


def test_clean_datasets_have_no_findings(v30_root, v21_root):
    for root, version in ((v30_root, "v3.0"), (v21_root, "v2.1")):
        report = scan_dataset(root)
        assert report["dataset"]["codebase_version"] == version
        assert report["summary"]["episodes_with_errors"] == 0
        assert report["summary"]["episodes_with_warnings"] == 0
        assert all(e["findings"] == [] for e in report["episodes"])
        assert report["action_bounds"]["feature"] == "action"


@pytest.mark.parametrize("fixture, expected", [("v21_corrupted", V21_CORRUPTIONS), ("v30_corrupted", V30_CORRUPTIONS)])
def test_each_corruption_is_reported(request, fixture, expected):
    report = scan_dataset(request.getfixturevalue(fixture))
    checks = _checks(report)
    assert report["summary"]["faulty_episodes"] == sorted(expected)
    for ep, (check, frames) in expected.items():
        assert check in checks[ep], f"episode {ep}: expected {check}, got {list(checks[ep])}"
        finding = checks[ep][check]
        assert finding["severity"] == CHECKS[check][0] == "error"
        assert finding["frames"] == frames
    # Every other episode is clean: no false positives next to the corrupted ones.
    assert all(not checks[ep] for ep in checks if ep not in expected)


def test_cli_writes_report_and_table(v21_corrupted, tmp_path, capsys):
    out = tmp_path / "report.json"
    assert main(["scan", "--root", str(v21_corrupted), "--out", str(out)]) == 0
    table = capsys.readouterr().out
    for check, _ in V21_CORRUPTIONS.values():
        assert check in table
    assert "faulty episodes: 1, 2, 3, 4, 5, 6" in table
    report = load_report(out)
    json.dumps(report, allow_nan=False)  # strict JSON: no NaN leaks from the data
    assert set(report) >= {"format", "version", "dataset", "config", "checks", "summary", "action_bounds", "episodes"}


def test_truncated_v30_file_flags_its_episodes(v30_root, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(v30_root, root)
    truncate(root / "data/chunk-000/file-000.parquet")
    report = scan_dataset(root)
    assert report["summary"]["faulty_episodes"] == list(range(8))
    assert all("unreadable_file" in c for c in _checks(report).values())


def test_unreadable_dataset_exits_2_with_one_line(v30_root, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["scan", "--root", str(tmp_path / "nope"), "--out", str(tmp_path / "r.json")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "does not exist" in err

    # A v3.0 dataset without meta/episodes: LeRobot would try the Hub; we name the file instead.
    root = tmp_path / "ds"
    shutil.copytree(v30_root, root)
    shutil.rmtree(root / "meta/episodes")
    with pytest.raises(SystemExit) as exc:
        main(["scan", "--root", str(root), "--out", str(tmp_path / "r.json")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "meta/episodes" in err
    assert not (tmp_path / "r.json").exists()


def _warning_dataset(root):
    """Episodes that are each wrong in one 'soft' way (warnings, not errors)."""
    rng = np.random.default_rng(1)
    fps, n = 10, 60
    names = [f"joint_{i}" for i in range(7)] + ["gripper"]
    eps = []
    for i in range(7):
        ep = smooth_episode(rng, n, state_dim=8, action_dim=8)
        ep["action"][:, 7] = (np.arange(n) > n // 2).astype(np.float32)  # one clean grasp
        ep["task"] = "pick up the beaker"
        ep["annotation.subtask"] = np.array(["reach"] * n, dtype=object)
        eps.append(ep)
    eps[1]["action"][10:50] = eps[1]["action"][10]  # stuck for 4 s
    eps[2]["action"][20:28, 7] = [0, 1, 0, 1, 0, 1, 0, 1]  # gripper chatter
    eps[3] = {k: v[:5] if k != "task" else v for k, v in eps[3].items()}  # 0.5 s
    eps[4] = {k: (v.copy() if k != "task" else v) for k, v in eps[0].items()}  # duplicate of 0
    eps[5]["annotation.subtask"][: n // 2] = ""  # half annotated
    eps[6]["task"] = " "  # blank task text
    extra = {"annotation.subtask": {"dtype": "string", "shape": (1,), "names": None}}
    write_episodes(root, eps, fps=fps, state_names=names, action_names=names, extra_features=extra)
    return root


def test_soft_problems_are_warnings(tmp_path):
    report = scan_dataset(_warning_dataset(tmp_path / "ds"))
    checks = _checks(report)
    assert "stuck_action" in checks[1] and checks[1]["stuck_action"]["frames"] == list(range(10, 50))
    assert "gripper_chatter" in checks[2]
    assert "too_short" in checks[3]
    assert checks[4]["duplicate_episode"]["details"]["duplicate_of"] == 0
    assert checks[5]["annotation_coverage"]["details"]["coverage"] == 0.5
    assert "missing_task" in checks[6]
    assert not checks[0]
    assert report["summary"]["faulty_episodes"] == [6]  # only the blank task is an error
    # A gripper that really grasps once is neither chatter nor an action outlier.
    assert "gripper" in report["action_bounds"]["skipped_dims"]


def test_joint_limits_with_droid_schema(tmp_path):
    rng = np.random.default_rng(2)
    home = np.array([0, -0.8, 0, -2.3, 0, 1.6, 0.8, 0.5], dtype=np.float32)  # a Franka-ish pose
    eps = []
    for _ in range(3):
        ep = smooth_episode(rng, 30, 8, 8)
        ep["observation.state"] = home + 0.1 * ep["observation.state"]
        ep["action"] = home + 0.1 * ep["action"]
        ep["task"] = "pick"
        eps.append(ep)
    eps[2]["observation.state"][5:9, 3] = 0.5  # joint_3 must stay below -0.07 rad
    names = [f"q{i}" for i in range(8)]
    root = tmp_path / "ds"
    write_episodes(root, eps, state_names=names, action_names=names)
    assert not _checks(scan_dataset(root))[2]  # the lerobot schema knows no limits
    from lerobot_labvla.data_process.scan import ScanConfig

    checks = _checks(scan_dataset(root, ScanConfig(schema="robointer_droid", min_seconds=0)))
    assert checks[2]["joint_limit"]["frames"] == [5, 6, 7, 8]
    assert checks[2]["joint_limit"]["details"] == {"feature": "observation.state", "dims": ["joint_3"]}
    assert not checks[0] and not checks[1]


@pytest.mark.slow
def test_python_dash_m_and_console_script(v30_root, tmp_path):
    out = tmp_path / "r.json"
    proc = subprocess.run([sys.executable, "-m", "lerobot_labvla.data_process", "scan", "--root", str(v30_root),
                           "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "ok 8" in proc.stdout and out.is_file()
    exe = shutil.which("labvla-data", path=str(Path(sys.executable).parent)) or shutil.which("labvla-data")
    assert exe, "the labvla-data console script is not installed (pip install -e .)"
    proc = subprocess.run([exe, "scan", "--root", str(tmp_path / "nope")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1


def test_video_frame_count_mismatch(v21_root, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(v21_root, root)
    from dp_v21 import FRONT, _write_video

    _write_video(root / f"videos/chunk-000/{FRONT}/episode_{8:06d}.mp4", np.zeros((30, 32, 32, 3), np.uint8), 10)
    for decode in (False, True):
        from lerobot_labvla.data_process.scan import ScanConfig

        report = scan_dataset(root, ScanConfig(decode_video=decode))
        assert report["summary"]["faulty_episodes"] == [8]
        finding = _checks(report)[8]["video_frame_mismatch"]
        assert finding["details"]["video_frames"] == 30 and finding["details"]["rows"] == 40
