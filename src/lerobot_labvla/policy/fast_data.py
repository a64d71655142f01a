"""Fitting the FAST tokenizer on a LeRobot dataset's action chunks, once per training run.

Reads only the `episode_index`, `action` (and, for relative actions, `observation.state`) columns
with pyarrow (no video decoding, no image columns), which is what fitting needs and far cheaper than
iterating `LeRobotDataset`. The chunks go through the same steps as training batches (LeRobot's
relative-actions step when `use_relative_actions`, then the normalizer), so FAST is fitted on
what it encodes. Under multi-process training (accelerate/torchrun) rank 0 fits and the other ranks
receive its tokenizer, so every rank trains on the same token ids.

Called from the policy constructor: LeRobot 0.6 hands `dataset_meta` (the data root) only to the
policy (`make_policy`); the processor factory gets the stats alone, and `lerobot-train` has no hook
between building the policy and training. The tokenizer is saved with the policy's weights.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from lerobot_labvla.data_process.merge import ACTION_DIM_PAD
from lerobot_labvla.errors import LabVLAError
from lerobot_labvla.policy.fast_tokenizer import FastTokenizer

logger = logging.getLogger(__name__)


def load_action_chunks(
    root: str | Path, chunk_size: int, *, max_chunks: int = 20_000, seed: int = 0, with_state: bool = False
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """`(N, chunk_size, A)` chunks starting at every frame (past an episode's end the last action
    repeats, as LeRobot's delta-timestamp loader pads), with `with_state` the `(N, S)` state at
    each chunk's first frame, and the `(N, A)` `dim_is_pad.action` mask of a mixed-robot dataset
    (`labvla-data merge --pad`; else None). At most `max_chunks`, sampled evenly at random."""
    files = sorted(Path(root).glob("data/**/*.parquet"))
    if not files:
        raise LabVLAError(f"no parquet files under {Path(root) / 'data'}; is {root} a LeRobot dataset?")
    has_mask = ACTION_DIM_PAD in pq.read_schema(files[0]).names
    columns = ["episode_index", "action"] + (["observation.state"] if with_state else []) + ([ACTION_DIM_PAD] if has_mask else [])
    chunks, states, masks = [], [], []
    for f in files:
        table = pq.read_table(f, columns=columns)
        episodes = table.column("episode_index").to_numpy()
        actions = np.stack(table.column("action").to_numpy(zero_copy_only=False)).astype(np.float32)
        state = np.stack(table.column("observation.state").to_numpy(zero_copy_only=False)).astype(np.float32) if with_state else None
        mask = np.stack(table.column(ACTION_DIM_PAD).to_numpy(zero_copy_only=False)).astype(bool) if has_mask else None
        for ep in np.unique(episodes):
            a = actions[episodes == ep]
            idx = np.minimum(np.arange(len(a))[:, None] + np.arange(chunk_size)[None, :], len(a) - 1)
            chunks.append(a[idx])
            if with_state:
                states.append(state[episodes == ep])
            if has_mask:
                masks.append(mask[episodes == ep])
    out = np.concatenate(chunks)
    out_states = np.concatenate(states) if with_state else None
    out_masks = np.concatenate(masks) if has_mask else None
    if len(out) > max_chunks:
        keep = np.random.default_rng(seed).choice(len(out), max_chunks, replace=False)
        out = out[keep]
        out_states = None if out_states is None else out_states[keep]
        out_masks = None if out_masks is None else out_masks[keep]
    return out, out_states, out_masks


def fit_fast_tokenizer(config, dataset_meta, dataset_stats: dict | None) -> tuple[FastTokenizer | None, dict | None]:
    """Fit FAST on the training set's normalized, padded action chunks (10% held out to report the
    round-trip error). With a torch.distributed group, rank 0 fits and broadcasts the result."""
    import torch.distributed as dist

    if dataset_meta is None:
        return None, None
    shared = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    if shared and dist.get_rank() != 0:
        payload = [None]
        dist.broadcast_object_list(payload, src=0)
        fast_dict, report = payload[0]
        return FastTokenizer.from_dict(fast_dict), report
    fast, report = _fit(config, dataset_meta, dataset_stats)
    if shared:
        dist.broadcast_object_list([(fast.to_dict(), report)], src=0)
        logger.info("FAST tokenizer fitted on rank 0 and sent to %d ranks", dist.get_world_size() - 1)
    return fast, report


def _fit(config, dataset_meta, dataset_stats: dict | None) -> tuple[FastTokenizer, dict]:
    from lerobot.utils.constants import ACTION

    relative = bool(getattr(config, "use_relative_actions", False))
    chunks, states, dim_pad = load_action_chunks(
        dataset_meta.root, config.chunk_size, max_chunks=config.fast_fit_max_chunks, with_state=relative
    )
    if relative:
        chunks = relative_actions(config, chunks, states)
    if dataset_stats is not None and ACTION in dataset_stats:
        chunks = normalize_actions(config, dataset_stats, chunks)
    if dim_pad is not None:  # zeros on each chunk's padded dims, as the policy encodes its targets
        chunks = np.where(dim_pad[:, None, :], 0.0, chunks).astype(np.float32)
    chunks = np.pad(chunks, ((0, 0), (0, 0), (0, config.max_action_dim - chunks.shape[-1])))
    rng = np.random.default_rng(0)
    order = rng.permutation(len(chunks))
    n_hold = max(1, len(chunks) // 10) if len(chunks) > 1 else 0
    held, train = chunks[order[:n_hold]], chunks[order[n_hold:]]
    fast = FastTokenizer.fit(train, vocab_size=config.fast_vocab_size, scale=config.fast_scale)
    report = {"train_chunks": int(len(train)), "heldout_chunks": int(len(held))}
    if len(held):
        mae, errors = fast.round_trip_error(held)
        lengths = [len(s) for s in fast.encode(held)]
        report.update(
            heldout_mae=mae,
            heldout_decode_errors=errors,
            mean_tokens=float(np.mean(lengths)),
            heldout_over_max_tokens=int(sum(n > config.max_fast_tokens for n in lengths)),
        )
    logger.info("FAST tokenizer fitted: %s", report)
    return fast, report


def relative_actions(config, chunks: np.ndarray, states: np.ndarray) -> np.ndarray:
    """`(N, T, A)` chunks minus their first frame's state, with LeRobot's own step configured as the
    preprocessor's (`--policy.use_relative_actions`, `relative_exclude_joints`, the action names)."""
    import torch
    from lerobot.lerobot_types import TransitionKey
    from lerobot.processor import RelativeActionsProcessorStep
    from lerobot.processor.converters import create_transition
    from lerobot.utils.constants import OBS_STATE

    step = RelativeActionsProcessorStep(
        enabled=True, exclude_joints=list(config.relative_exclude_joints), action_names=config.action_feature_names
    )
    transition = create_transition(observation={OBS_STATE: torch.from_numpy(states)}, action=torch.from_numpy(chunks))
    return step(transition)[TransitionKey.ACTION].numpy()


def normalize_actions(config, stats: dict, chunks: np.ndarray) -> np.ndarray:
    """Normalize `(N, T, A)` actions exactly as the preprocessor will (LeRobot's own normalizer)."""
    import torch
    from lerobot.configs import FeatureType
    from lerobot.lerobot_types import TransitionKey
    from lerobot.processor import NormalizerProcessorStep
    from lerobot.processor.converters import create_transition
    from lerobot.utils.constants import ACTION

    from lerobot_labvla.policy.processor_labvla import quantile_dims_as_mean_std

    # The same stats the preprocessor normalizes with (per-dim quantile dims folded into mean/std).
    stats = quantile_dims_as_mean_std(stats, config.resolved_quantile_dims, keys=(ACTION,))
    step = NormalizerProcessorStep(
        features={ACTION: config.output_features[ACTION]},
        norm_map={FeatureType.ACTION: config.normalization_mapping["ACTION"]},
        stats={ACTION: stats[ACTION]},
    )
    out = step(create_transition(action=torch.from_numpy(chunks).float()))
    return out[TransitionKey.ACTION].numpy()
