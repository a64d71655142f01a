"""`LabUtopiaEnv`: one LabUtopia task as a gymnasium env (what `lerobot-eval` steps).

Observation: `pixels/{front,side,wrist}` uint8 (H, W, 3) and `agent_pos` (8,) = 7 arm joint angles (rad)
+ gripper opening (m). Action `ee_delta` (7,) in [-1, 1] = TCP translation (x 2.5 cm), rotation
vector (x 0.1 rad) and gripper (-1 closed .. 1 open); `joint` (8,) = 7 absolute joint targets (rad)
and the same gripper command. Reward = the task's staged progress in [0, 1]; success must hold for `hold_steps`.
Those dims are the FR3's; a genesis workflow task on another single-arm profile (`robot: ur5e`) gets
`agent_pos` = its dof joint angles + gripper width, `joint` actions of dof + 1, the same `ee_delta`.
"""

from __future__ import annotations

from collections.abc import Iterator

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from lerobot_labvla.envs.labutopia import ACTION_DIMS, CAMERAS, FPS, OBS_TYPES
from lerobot_labvla.envs.labutopia.splits import get_split
from lerobot_labvla.envs.labutopia.tasks import CAMERA_NAMES, Task, get_task
from lerobot_labvla.errors import LabVLAError
from lerobot_labvla.sim.control import ArmController, axis_angle_quat, quat_error, quat_mul
from lerobot_labvla.sim.render import Cameras
from lerobot_labvla.sim.robots import get_profile
from lerobot_labvla.sim.skills import Motion, Target

POS_SCALE = 0.025  # m per unit action
ROT_SCALE = 0.1  # rad per unit action
HOLD_SECONDS = 1.0  # LabUtopia's rule: the goal holds for 60 steps at 60 Hz = 1 s
# The arm starts with its TCP anywhere in this box around the home pose and turned up to START_YAW
# about the vertical: relative (ee_delta) actions recorded in one episode do not fit another.
START_BOX = np.array([0.08, 0.10, 0.05])
START_YAW = 0.5


class LabUtopiaEnv(gym.Env):
    """A LabUtopia task in MuJoCo; build a new scene from the seed at every `reset`."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": FPS}

    def __init__(self, task: str | Task = "pick_up", split: str = "id", obs_type: str = "pixels_agent_pos",
                 image_size: int = 224, episode_length: int | None = None, action_type: str = "ee_delta",
                 render_mode: str = "rgb_array"):
        self.spec_task = task if isinstance(task, Task) else get_task(task)  # a Task object: a custom task
        self.split = get_split(split)
        if obs_type not in OBS_TYPES:
            raise LabVLAError(f"unknown obs_type {obs_type!r}; expected one of {list(OBS_TYPES)}")
        if action_type not in ACTION_DIMS:
            raise LabVLAError(f"unknown action_type {action_type!r}; expected one of {list(ACTION_DIMS)}")
        if not 16 <= int(image_size) <= 1024:
            raise LabVLAError(f"image_size {image_size} out of range; expected 16..1024 pixels")
        if episode_length is not None and episode_length < 1:
            raise LabVLAError(f"episode_length {episode_length} must be >= 1 (or None for the task default)")
        # A workflow task may name another single-arm robot profile (genesis); LabUtopia's own tasks run the FR3.
        self.robot = get_profile(getattr(self.spec_task, "robot", "fr3"))
        if self.robot.bimanual and action_type != "ee_delta":
            raise LabVLAError(f"robot {self.robot.name!r} has {len(self.robot.arms)} arms: use action_type='ee_delta' "
                              "(one [dpos, drot, gripper] block per arm)")
        self.home = np.asarray(self.robot.arms[0].home, dtype=np.float64)
        self.camera_names = {**CAMERA_NAMES, "wrist": self.robot.prefix + self.robot.arms[0].wrist_camera}
        self.task = self.spec_task.name
        self.task_description = self.spec_task.instruction
        self.obs_type, self.action_type, self.render_mode = obs_type, action_type, render_mode
        self.image_size = int(image_size)
        self._max_episode_steps = int(episode_length or self.spec_task.episode_length)
        self.hold_steps = round(HOLD_SECONDS * FPS)

        state = spaces.Box(-np.inf, np.inf, (self.robot.state_dim,), np.float32)
        obs = {"agent_pos": state}
        if obs_type == "pixels_agent_pos":
            img = spaces.Box(0, 255, (self.image_size, self.image_size, 3), np.uint8)
            obs["pixels"] = spaces.Dict({k: img for k in CAMERAS})
        self.observation_space = spaces.Dict(obs)
        self.action_dim = self.robot.action_dim if action_type == "ee_delta" else self.robot.state_dim
        if action_type == "ee_delta":
            self.action_space = spaces.Box(-1.0, 1.0, (self.action_dim,), np.float32)
        else:
            n = self.action_dim
            sim_lo, sim_hi = -np.pi * np.ones(n, np.float32), np.pi * np.ones(n, np.float32)
            sim_lo[-1], sim_hi[-1] = -1.0, 1.0
            self.action_space = spaces.Box(sim_lo, sim_hi, (n,), np.float32)

        self.sim = self.ctl = self.cameras = None
        self.ctx: dict = {}
        self._steps = self._held = 0

    # --- gymnasium API -------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        builder, self.ctx = self.spec_task.build(self.np_random, self.split)
        self.task_description = self.ctx.get("instruction", self.spec_task.instruction)
        self.sim = builder.build()
        self.sim.reset(self.home)
        if not self.robot.bimanual:  # bimanual: both arms start at home
            self.sim.reset(self._start_qpos())
        self.ctl = ArmController(self.sim)
        # One view + controller per arm (the first arm's are `sim` and `ctl` themselves).
        self.views = {a.name: self.sim.for_arm(a.name) for a in self.robot.arms}
        self.ctls = {a.name: self.ctl if v is self.sim else ArmController(v) for (a, v) in zip(self.robot.arms, self.views.values(), strict=True)}
        if self.cameras is not None:
            self.cameras.close()
        self.cameras = None
        if self.obs_type == "pixels_agent_pos" or self.render_mode == "rgb_array":
            self.cameras = Cameras(self.sim.model, self.camera_names, self.image_size, self.image_size)
        for _ in range(5):  # let objects settle on the bench
            self.sim.step(self.ctl.q_cmd)
        for ctl in self.ctls.values():
            ctl.reset()
        self._steps = self._held = 0
        return self._obs(), {"is_success": False, "progress": 0.0}

    def step(self, action):
        if self.sim is None:
            raise LabVLAError("call reset() before step()")
        a = self._check_action(action)
        if self.robot.bimanual:
            for k, (arm, view) in enumerate(self.views.items()):
                block = a[7 * k: 7 * k + 7]
                view.set_gripper((block[-1] + 1.0) / 2.0)
                view.command(self.ctls[arm].apply_delta(block[:3] * POS_SCALE, block[3:6] * ROT_SCALE))
            self.sim.advance()
        elif self.action_type == "ee_delta":
            q = self.ctl.apply_delta(a[:3] * POS_SCALE, a[3:6] * ROT_SCALE)
        else:
            q = self.ctl.set_joint_target(a[:-1])
        if not self.robot.bimanual:
            self.sim.set_gripper((a[-1] + 1.0) / 2.0)
            self.sim.step(q)
        self._steps += 1
        self.spec_task.update(self.sim, self.ctx)
        goal = self.spec_task.success(self.sim, self.ctx)
        self._held = self._held + 1 if goal else 0
        success = self._held >= self.hold_steps
        progress = 1.0 if success else min(self.spec_task.progress(self.sim, self.ctx), 0.9 if goal else 1.0)
        truncated = self._steps >= self._max_episode_steps and not success
        info = {"is_success": bool(success), "progress": float(progress)}
        return self._obs(), float(progress), bool(success), bool(truncated), info

    def render(self):
        if self.cameras is None:
            return None
        return self.cameras.rgb(self.sim.data, "front")

    def close(self):
        if self.cameras is not None:
            self.cameras.close()
            self.cameras = None

    # --- helpers -------------------------------------------------------------------------
    def _start_qpos(self) -> np.ndarray:
        """A seeded start configuration: the home TCP moved inside START_BOX and turned by up to START_YAW."""
        rng, sim = self.np_random, self.sim
        pos = sim.tcp_pos + rng.uniform(-START_BOX, START_BOX)
        quat = quat_mul(axis_angle_quat(np.array([0.0, 0.0, rng.uniform(-START_YAW, START_YAW)])), sim.tcp_quat)
        return ArmController(sim, iterations=60).ik(pos, quat, self.home)

    def _check_action(self, action) -> np.ndarray:
        a = np.asarray(action, dtype=np.float64)
        if a.shape != (self.action_dim,):
            raise LabVLAError(
                f"action has shape {a.shape}; expected ({self.action_dim},): "
                + ("[dx, dy, dz, rx, ry, rz, gripper] in [-1, 1]" if self.action_type == "ee_delta"
                   else f"[q1..q{self.action_dim - 1} (rad), gripper in [-1, 1]]"))
        if not np.all(np.isfinite(a)):
            raise LabVLAError(f"action contains NaN or inf: {a.tolist()}; the env state is unchanged, "
                              "send a finite action or call reset()")
        if self.action_type == "ee_delta":
            return np.clip(a, -1.0, 1.0)
        a[-1] = np.clip(a[-1], -1.0, 1.0)
        return a

    def _obs(self) -> dict:
        state = np.concatenate([np.append(v.arm_qpos, v.gripper_width) for v in self.views.values()]).astype(np.float32)
        obs = {"agent_pos": state}
        if self.obs_type == "pixels_agent_pos":
            obs["pixels"] = {k: self.cameras.rgb(self.sim.data, k) for k in CAMERAS}
        return obs

    # --- scripted expert -----------------------------------------------------------------
    def expert(self) -> ScriptedExpert:
        """The task's scripted expert for the current episode (call after `reset`)."""
        return ScriptedExpert(self)


class ScriptedExpert:
    """Runs the task's skill sequence and converts each target into this env's action space."""

    def __init__(self, env: LabUtopiaEnv):
        self.env = env
        self.motion = Motion(env.sim)
        self._targets: Iterator[Target] = env.spec_task.expert(self.motion, env.ctx)
        self._last: Target | None = None

    def act(self) -> np.ndarray:
        """The next action (7,) float32; holds the last pose once the skills are done."""
        target = next(self._targets, None)
        if target is None:
            target = self._last or self.motion.target()
        self._last = target
        if isinstance(target, dict):  # bimanual: one ee_delta block per arm, in the profile's arm order
            blocks = [self._ee_delta(self.env.ctls[arm], target[arm]) for arm in self.env.views]
            return np.concatenate(blocks).astype(np.float32)
        ctl = self.env.ctl
        if self.env.action_type == "ee_delta":
            return self._ee_delta(ctl, target).astype(np.float32)
        a = np.zeros(self.env.action_dim)
        a[:-1] = ctl.ik(target.pos, target.quat, ctl.q_cmd)
        a[-1] = target.gripper * 2.0 - 1.0
        return a.astype(np.float32)

    @staticmethod
    def _ee_delta(ctl: ArmController, target: Target) -> np.ndarray:
        """[dpos / POS_SCALE, drot / ROT_SCALE (clipped to [-1, 1]), gripper] that moves `ctl`'s target to `target`."""
        a = np.zeros(7)
        a[:3] = (target.pos - ctl.target_pos) / POS_SCALE
        a[3:6] = quat_error(target.quat, ctl.target_quat) / ROT_SCALE
        a[:6] = np.clip(a[:6], -1.0, 1.0)
        a[-1] = target.gripper * 2.0 - 1.0
        return a
