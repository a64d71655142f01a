"""`--env.type=labutopia`: LeRobot's EnvConfig for LabUtopia (parsed by lerobot-eval / lerobot-train).

Light module: MuJoCo loads only in `create_envs`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import partial

import gymnasium as gym
from lerobot.configs import FeatureType, PolicyFeature
from lerobot.envs.configs import EnvConfig
from lerobot.utils.constants import ACTION, OBS_IMAGES, OBS_STATE

from lerobot_labvla.envs.labutopia import ACTION_DIMS, CAMERAS, FPS, GYM_IDS, OBS_TYPES, SPLIT_NAMES, STATE_DIM
from lerobot_labvla.errors import LabVLAError


@EnvConfig.register_subclass("labutopia")
@dataclass
class LabUtopiaEnvConfig(EnvConfig):
    """LabUtopia: `--env.task` one task or a comma-separated list, `--env.split=id|ood`."""

    task: str | None = "pick_up"
    split: str = "id"
    fps: int = FPS
    episode_length: int | None = None  # None: the task's own limit
    obs_type: str = "pixels_agent_pos"
    image_size: int = 224
    action_type: str = "ee_delta"
    render_mode: str = "rgb_array"
    features: dict[str, PolicyFeature] = field(default_factory=dict)
    features_map: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        for t in self.tasks:
            if t not in GYM_IDS:
                raise LabVLAError(f"unknown --env.task {t!r}; expected one of {list(GYM_IDS)} (or a comma-separated list)")
        if self.split not in SPLIT_NAMES:
            raise LabVLAError(f"unknown --env.split {self.split!r}; expected one of {list(SPLIT_NAMES)}")
        if self.obs_type not in OBS_TYPES:
            raise LabVLAError(f"unknown --env.obs_type {self.obs_type!r}; expected one of {list(OBS_TYPES)}")
        if self.action_type not in ACTION_DIMS:
            raise LabVLAError(f"unknown --env.action_type {self.action_type!r}; expected one of {list(ACTION_DIMS)}")
        if self.fps != FPS:
            raise LabVLAError(f"--env.fps={self.fps} is not supported: LabUtopia steps its controller at {FPS} Hz")
        if not 16 <= self.image_size <= 1024:
            raise LabVLAError(f"--env.image_size={self.image_size} out of range; expected 16..1024")
        self.features = {ACTION: PolicyFeature(type=FeatureType.ACTION, shape=(ACTION_DIMS[self.action_type],)),
                         "agent_pos": PolicyFeature(type=FeatureType.STATE, shape=(STATE_DIM,))}
        self.features_map = {ACTION: ACTION, "agent_pos": OBS_STATE}
        if self.obs_type == "pixels_agent_pos":
            for cam in CAMERAS:
                self.features[f"pixels/{cam}"] = PolicyFeature(type=FeatureType.VISUAL,
                                                               shape=(self.image_size, self.image_size, 3))
                self.features_map[f"pixels/{cam}"] = f"{OBS_IMAGES}.{cam}"

    @property
    def tasks(self) -> list[str]:
        return [t.strip() for t in (self.task or "").split(",") if t.strip()] or ["pick_up"]

    @property
    def gym_kwargs(self) -> dict:
        return {"split": self.split, "obs_type": self.obs_type, "image_size": self.image_size,
                "episode_length": self.episode_length, "action_type": self.action_type,
                "render_mode": self.render_mode}

    def create_envs(self, n_envs: int, use_async_envs: bool = False) -> dict[str, dict[int, gym.vector.VectorEnv]]:
        """{"labutopia": {task_index: VectorEnv of n_envs copies}} (async = forkserver workers)."""
        from lerobot_labvla.envs.labutopia.env import LabUtopiaEnv  # MuJoCo loads here, not at import

        cls = gym.vector.AsyncVectorEnv if (use_async_envs and n_envs > 1) else gym.vector.SyncVectorEnv
        kwargs = {"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}
        if cls is gym.vector.AsyncVectorEnv:
            kwargs["context"] = "forkserver"
            # One env per worker process: keep Mesa's software rasterizer on one thread each, or every
            # worker spreads over all cores and two workers fight instead of running side by side.
            os.environ.setdefault("LP_NUM_THREADS", "1")
        return {"labutopia": {i: cls([partial(LabUtopiaEnv, task=t, **self.gym_kwargs) for _ in range(n_envs)], **kwargs)
                              for i, t in enumerate(self.tasks)}}
