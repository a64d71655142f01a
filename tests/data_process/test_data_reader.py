"""reader.py reads dataset metadata without LeRobot's loaders: same result as theirs, and no
`lerobot.datasets` import on the scan path (what keeps `labvla-data scan` under 1 GiB)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from lerobot_labvla.data_process.reader import open_dataset
from lerobot_labvla.errors import LabVLAError


def test_scan_path_does_not_import_lerobot_datasets():
    code = (
        "import sys, lerobot_labvla.data_process.scan, lerobot_labvla.data_process.cli\n"
        "bad = sorted(m for m in sys.modules if m.startswith(('lerobot.datasets', 'lerobot.scripts')))\n"
        "assert not bad, bad"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


def _lerobot_v30(root: Path):
    from lerobot.datasets.dataset_metadata import LeRobotDatasetMetadata

    meta = LeRobotDatasetMetadata(repo_id="local/ds", root=root)
    tasks = {int(row.task_index): str(task) for task, row in meta.tasks.iterrows()}
    eps = meta.episodes.to_dict()
    return meta, tasks, eps


def _assert_v30_same(root: Path):
    view = open_dataset(root)
    meta, tasks, eps = _lerobot_v30(root)
    assert view.tasks == tasks
    assert [e.index for e in view.episodes] == eps["episode_index"]
    assert [e.length for e in view.episodes] == eps["length"]
    assert [e.tasks for e in view.episodes] == eps["tasks"]
    assert [e.row_start for e in view.episodes] == eps["dataset_from_index"]
    assert [str(e.data_path) for e in view.episodes] == [
        meta.data_path.format(chunk_index=c, file_index=f)
        for c, f in zip(eps["data/chunk_index"], eps["data/file_index"], strict=True)
    ]
    for key in meta.video_keys:
        assert [str(e.videos[key].path) for e in view.episodes] == [
            meta.video_path.format(video_key=key, chunk_index=c, file_index=f)
            for c, f in zip(eps[f"videos/{key}/chunk_index"], eps[f"videos/{key}/file_index"], strict=True)
        ]


def test_v30_metadata_matches_lerobot(v30_root):
    _assert_v30_same(v30_root)


def test_v30_episodes_split_over_files_keep_lerobot_order(v30_root, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(v30_root, root)
    (path,) = sorted((root / "meta/episodes").glob("*/*.parquet"))
    table = pq.read_table(path)
    path.unlink()
    # Later episodes in an earlier-sorting file: both readers concatenate files in path order.
    pq.write_table(table.slice(4), root / "meta/episodes/chunk-000/file-000.parquet")
    pq.write_table(table.slice(0, 4), root / "meta/episodes/chunk-000/file-001.parquet")
    _assert_v30_same(root)
    assert [e.index for e in open_dataset(root).episodes] == [4, 5, 6, 7, 0, 1, 2, 3]


def test_v21_metadata_matches_lerobot(v21_root):
    from lerobot.scripts.convert_dataset_v21_to_v30 import legacy_load_episodes, legacy_load_tasks

    view = open_dataset(v21_root)
    legacy = legacy_load_episodes(v21_root)
    tasks, _ = legacy_load_tasks(v21_root)
    assert [e.index for e in view.episodes] == list(legacy)
    assert [e.length for e in view.episodes] == [item["length"] for item in legacy.values()]
    assert [e.tasks for e in view.episodes] == [item["tasks"] for item in legacy.values()]
    assert view.tasks == tasks


@pytest.mark.parametrize("bad_line", ["{not json\n", "\n"])
def test_v21_broken_jsonl_line_fails_like_lerobot(v21_root, tmp_path, bad_line):
    from lerobot.scripts.convert_dataset_v21_to_v30 import legacy_load_episodes

    root = tmp_path / "ds"
    shutil.copytree(v21_root, root)
    with open(root / "meta/episodes.jsonl", "a") as f:
        f.write(bad_line)
    with pytest.raises(Exception):
        legacy_load_episodes(root)
    with pytest.raises(LabVLAError, match="v2.1 metadata"):
        open_dataset(root)
