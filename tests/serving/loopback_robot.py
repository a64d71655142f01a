"""A simulated robot for the async-inference end-to-end test: no hardware, no physics.

It returns a fixed-size observation (state + two camera images) and appends every action that
`robot_client` sends to a JSON-lines file, so the test can check what reached the "robot". It is
registered (`--robot.type=labvla_loopback`) only in the process that imports this module.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from lerobot.robots import Robot, RobotConfig


@RobotConfig.register_subclass("labvla_loopback")
@dataclass(kw_only=True)
class LoopbackRobotConfig(RobotConfig):
    state_dim: int = 8
    action_dim: int = 7
    image_size: int = 48
    cameras_names: tuple[str, ...] = ("front", "wrist")
    actions_log: str = ""  # JSON-lines file receiving each sent action


class LoopbackRobot(Robot):
    config_class = LoopbackRobotConfig
    name = "labvla_loopback"

    def __init__(self, config: LoopbackRobotConfig):
        super().__init__(config)
        self.config = config
        self.cameras = {}
        self._connected = False
        self._state = np.zeros(config.state_dim, np.float32)
        self._rng = np.random.default_rng(0)

    @cached_property
    def observation_features(self) -> dict:
        feats: dict = {f"joint_{i}.pos": float for i in range(self.config.state_dim)}
        s = self.config.image_size
        feats.update({cam: (s, s, 3) for cam in self.config.cameras_names})
        return feats

    @cached_property
    def action_features(self) -> dict:
        return {f"joint_{i}.pos": float for i in range(self.config.action_dim)}

    @property
    def is_connected(self) -> bool:
        return self._connected

    def connect(self, calibrate: bool = True) -> None:
        self._connected = True

    @property
    def is_calibrated(self) -> bool:
        return True

    def calibrate(self) -> None:
        pass

    def configure(self) -> None:
        pass

    def get_observation(self) -> dict:
        obs: dict = {f"joint_{i}.pos": float(v) for i, v in enumerate(self._state)}
        s = self.config.image_size
        for cam in self.config.cameras_names:
            obs[cam] = self._rng.integers(0, 256, (s, s, 3), dtype=np.uint8)
        return obs

    def send_action(self, action: dict) -> dict:
        values = [float(action[k]) for k in self.action_features]
        self._state[: len(values)] = values[: self.config.state_dim]
        if self.config.actions_log:
            with open(self.config.actions_log, "a") as f:
                f.write(json.dumps(values) + "\n")
        return action

    def disconnect(self) -> None:
        self._connected = False
