"""Action chunks straight from a LeRobot dataset's parquet files, for fitting the FAST tokenizer.

Reads only the `episode_index` and `action` columns with pyarrow (no video decoding, no image
columns), which is what fitting needs and far cheaper than iterating `LeRobotDataset`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from lerobot_labvla.errors import LabVLAError


def load_action_chunks(root: str | Path, chunk_size: int, *, max_chunks: int = 20_000, seed: int = 0) -> np.ndarray:
    """`(N, chunk_size, A)` chunks starting at every frame; past an episode's end the last action repeats
    (as LeRobot's delta-timestamp loader pads). At most `max_chunks`, sampled evenly at random."""
    files = sorted(Path(root).glob("data/**/*.parquet"))
    if not files:
        raise LabVLAError(f"no parquet files under {Path(root) / 'data'}; is {root} a LeRobot dataset?")
    chunks = []
    for f in files:
        table = pq.read_table(f, columns=["episode_index", "action"])
        episodes = table.column("episode_index").to_numpy()
        actions = np.stack(table.column("action").to_numpy(zero_copy_only=False)).astype(np.float32)
        for ep in np.unique(episodes):
            a = actions[episodes == ep]
            idx = np.minimum(np.arange(len(a))[:, None] + np.arange(chunk_size)[None, :], len(a) - 1)
            chunks.append(a[idx])
    out = np.concatenate(chunks)
    if len(out) > max_chunks:
        out = out[np.random.default_rng(seed).choice(len(out), max_chunks, replace=False)]
    return out
