"""Fixtures for tests/data_process: clean v3.0 and v2.1 datasets, and corrupted copies of them."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from dp_corrupt import edit_column, truncate, v21_file, v30_rows
from dp_v21 import FRONT, make_v21_dataset

from synthetic import make_dataset


@pytest.fixture(scope="session")
def v30_root(tmp_path_factory) -> Path:
    """8 episodes x 30 frames, one image camera, written by LeRobot's own writer."""
    root = tmp_path_factory.mktemp("v30") / "ds"
    make_dataset(root, n_episodes=8, frames=30, cameras=("front",), image_size=16, fps=10)
    return root


@pytest.fixture(scope="session")
def v21_root(tmp_path_factory) -> Path:
    """10 episodes x 40 frames with one h264 camera, in the v2.1 layout."""
    return make_v21_dataset(tmp_path_factory.mktemp("v21") / "ds", n_episodes=10, frames=40, fps=10)


def _copy(src: Path, tmp_path_factory, name: str) -> Path:
    dst = tmp_path_factory.mktemp(name) / "ds"
    shutil.copytree(src, dst)
    return dst


@pytest.fixture(scope="session")
def v21_corrupted(v21_root, tmp_path_factory) -> Path:
    root = _copy(v21_root, tmp_path_factory, "v21bad")
    truncate(v21_file(root, 1))

    def nan_rows(a):
        a[5:8, 0] = np.nan

    edit_column(v21_file(root, 2), "action", nan_rows)
    (root / f"videos/chunk-000/{FRONT}/episode_{3:06d}.mp4").unlink()

    def jump(t):
        t[20:] += 1.0

    edit_column(v21_file(root, 4), "timestamp", jump)

    def relabel(e):
        e[:] = 6

    edit_column(v21_file(root, 5), "episode_index", relabel)

    def spike(a):
        a[15, 2] = 50.0

    edit_column(v21_file(root, 6), "action", spike)
    return root


@pytest.fixture(scope="session")
def v30_corrupted(v30_root, tmp_path_factory) -> Path:
    root = _copy(v30_root, tmp_path_factory, "v30bad")

    def rows(ep, column, fn):
        path, sl = v30_rows(root, ep)
        edit_column(path, column, lambda a: fn(a[sl]))

    rows(1, "observation.state", lambda a: a.__setitem__((slice(3, 5), 1), np.inf))
    rows(2, "timestamp", lambda t: t.__setitem__(slice(10, None), t[10:] + 0.5))
    rows(4, "episode_index", lambda e: e.__setitem__(slice(None), 5))
    rows(5, "action", lambda a: a.__setitem__((12, 3), -40.0))
    return root
