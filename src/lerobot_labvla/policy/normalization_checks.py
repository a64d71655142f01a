"""Refuse dataset or checkpoint stats that LeRobot's normalizer would silently skip.

Its own module so that both the policy (`modeling_labvla.py`) and the processor factory
(`processor_labvla.py`) can import it without importing each other.
"""

from __future__ import annotations

import numpy as np
from lerobot.configs import NormalizationMode

from lerobot_labvla.errors import LabVLAError

REQUIRED_STATS = {
    NormalizationMode.MEAN_STD: ("mean", "std"),
    NormalizationMode.MIN_MAX: ("min", "max"),
    NormalizationMode.QUANTILES: ("q01", "q99"),
    NormalizationMode.QUANTILE10: ("q10", "q90"),
}


def check_stats(config, stats: dict | None, *, source: str = "dataset stats") -> None:
    """Raise if `stats` lacks anything the normalizer needs for `config`'s features, or holds NaN/Inf.

    LeRobot's normalizer passes a feature through unnormalized when its stats are missing; a
    policy trained or run that way fails silently, so labvla refuses instead.
    """
    missing, not_finite = [], []
    for key, feature in {**config.input_features, **config.output_features}.items():
        mode = config.normalization_mapping.get(feature.type.value, NormalizationMode.IDENTITY)
        if mode is NormalizationMode.IDENTITY:
            continue
        have = (stats or {}).get(key) or {}
        lacking = [name for name in REQUIRED_STATS[mode] if name not in have]
        if lacking:
            missing.append(f"{key} [{', '.join(lacking)}]")
        elif not all(np.isfinite(np.asarray(have[name], dtype=np.float64)).all() for name in REQUIRED_STATS[mode]):
            not_finite.append(key)
    if not_finite:
        raise LabVLAError(
            f"{source} contain NaN/Inf for {', '.join(not_finite)}: the data has NaN/Inf values; "
            "find and drop those episodes with `labvla-data scan` / `labvla-data clean`"
        )
    if missing:
        raise LabVLAError(
            f"{source} lack what labvla normalizes ({config.normalization_mapping['STATE'].value} state/action): "
            f"{'; '.join(missing)}. Recompute them: `lerobot-edit-dataset --operation.type recompute_stats`"
        )
