"""Session datasets for the policy tests (two embodiments)."""

from __future__ import annotations

import pytest

from synthetic import make_dataset


@pytest.fixture(scope="session")
def ds7(tmp_path_factory):
    """Two cameras, state 8, action 7: a memorizable Franka-like dataset."""
    return make_dataset(tmp_path_factory.mktemp("ds") / "ds7", repo_id="local/ds7", n_episodes=2, frames=20)


@pytest.fixture(scope="session")
def ds14(tmp_path_factory):
    """Another embodiment: state 16, action 14 (bimanual-like), same cameras."""
    return make_dataset(
        tmp_path_factory.mktemp("ds") / "ds14", repo_id="local/ds14", n_episodes=2, frames=20, state_dim=16, action_dim=14, seed=1
    )
