"""Roll out the scripted expert: success rate and mean progress over seeded episodes."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass

import numpy as np


@dataclass
class EpisodeResult:
    seed: int
    success: bool
    max_progress: float
    steps: int


def rollout(env, seed: int, policy: str = "expert") -> EpisodeResult:
    """One episode of a `LabUtopiaEnv` driven by the scripted expert or by zero actions ("zero")."""
    env.reset(seed=seed)
    expert = env.expert() if policy == "expert" else None
    best, steps = 0.0, 0
    while True:
        action = expert.act() if expert else np.zeros(env.action_space.shape, np.float32)
        _, reward, terminated, truncated, info = env.step(action)
        best, steps = max(best, reward), steps + 1
        if terminated or truncated:
            return EpisodeResult(seed, bool(info["is_success"]), float(best), steps)


def run_episode(task: str, split: str, seed: int) -> EpisodeResult:
    """One expert episode without rendering (state observations only)."""
    from lerobot_labvla.envs.labutopia.env import LabUtopiaEnv

    env = LabUtopiaEnv(task, split, obs_type="agent_pos", render_mode=None)
    try:
        return rollout(env, seed)
    finally:
        env.close()


def evaluate_expert(task: str, split: str, episodes: int, seed: int = 0, workers: int = 1) -> dict:
    """`{"task", "split", "episodes", "success_rate", "mean_progress", "per_episode"}` for seeds seed..seed+episodes-1."""
    seeds = list(range(seed, seed + episodes))
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            results = list(pool.map(run_episode, [task] * episodes, [split] * episodes, seeds))
    else:
        results = [run_episode(task, split, s) for s in seeds]
    return {
        "task": task,
        "split": split,
        "episodes": episodes,
        "success_rate": float(np.mean([r.success for r in results])),
        "mean_progress": float(np.mean([r.max_progress for r in results])),
        "per_episode": [asdict(r) for r in results],
    }
