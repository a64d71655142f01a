"""Policies that try to pass a LabUtopia task without solving it (the benchmark's adversaries).

`benchmarks/labutopia_attacks.py` reports their success rates next to the experts'; the tests run a few
on fixed seeds. Blind attacks ignore observations; the scripted ones read the true state to do the
wrong physical thing on purpose (poke the rim instead of grasping).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from lerobot_labvla.envs.labutopia.expert import EpisodeResult
from lerobot_labvla.envs.labutopia.env import POS_SCALE, ROT_SCALE, LabUtopiaEnv
from lerobot_labvla.sim.control import quat_error
from lerobot_labvla.sim.skills.motion import TOP_DOWN

BLIND = ("zero", "random", "sticky_random", "press_down")
Policy = Callable[[LabUtopiaEnv, int], np.ndarray]  # (env, step index) -> action


def record_expert(env: LabUtopiaEnv, seed: int) -> tuple[np.ndarray, bool]:
    """The expert's actions over one episode (stops at success or the time limit) and whether it succeeded."""
    env.reset(seed=seed)
    expert, actions = env.expert(), []
    while True:
        a = expert.act()
        actions.append(a)
        _, _, terminated, truncated, info = env.step(a)
        if terminated or truncated:
            return np.stack(actions), bool(info["is_success"])


def replay(actions: np.ndarray) -> Policy:
    """Open-loop replay of recorded actions (then holding still), observations ignored."""
    def act(env, t):
        return actions[t] if t < len(actions) else np.r_[np.zeros(6), actions[-1][-1]].astype(np.float32)
    return act


def blind(name: str, seed: int = 0) -> Policy:
    """zero | random | sticky_random (a random action held for 10 steps) | press_down (gripper closed, straight down)."""
    rng = np.random.default_rng(seed)
    held = {"a": None}

    def act(env, t):
        if name == "zero":
            return np.zeros(7, np.float32)
        if name == "random":
            return rng.uniform(-1, 1, 7).astype(np.float32)
        if name == "sticky_random":
            if t % 10 == 0:
                held["a"] = rng.uniform(-1, 1, 7).astype(np.float32)
            return held["a"]
        if name == "press_down":
            return np.array([0, 0, -1, 0, 0, 0, -1], np.float32)
        raise ValueError(f"unknown blind attack {name!r}; expected one of {BLIND}")
    return act


def _toward(env: LabUtopiaEnv, pos: np.ndarray, gripper: float, limit: float = 0.5) -> np.ndarray:
    """An ee_delta action that moves the TCP target towards `pos`, top-down, with `gripper` in [-1, 1]."""
    a = np.zeros(7)
    a[:3] = (pos - env.ctl.target_pos) / POS_SCALE
    a[3:6] = quat_error(TOP_DOWN, env.ctl.target_quat) / ROT_SCALE
    a[:6] = np.clip(a[:6], -limit, limit)
    a[6] = gripper
    return a.astype(np.float32)


def poke_rim(env: LabUtopiaEnv, t: int) -> np.ndarray:
    """pour_liquid without a grasp: closed fingertips on the source's rim, then the expert's pour path."""
    sim, ctx = env.sim, env.ctx
    # On the wall, not over the mouth: 0.9 radius out from the axis, across the closing direction.
    rim = sim.site_pos(f"{ctx['src']}_rim") + [0.9 * sim.assets[ctx["src"]].params["radius"], 0, 0]
    if t < 40:
        goal = rim + [0, 0, 0.12]
    elif t < 70:
        goal = rim + [0, 0, 0.005]
    else:
        goal = sim.body_pos(ctx["dst"]) + [0, -0.06, 0.25]
    return _toward(env, goal, -1.0)


SCRIPTED = {"poke_rim": ("pour_liquid", poke_rim)}


def run(env: LabUtopiaEnv, seed: int, policy: Policy) -> EpisodeResult:
    """One episode of `policy` on `env` from `seed`."""
    env.reset(seed=seed)
    best, t = 0.0, 0
    while True:
        _, reward, terminated, truncated, info = env.step(policy(env, t))
        best, t = max(best, reward), t + 1
        if terminated or truncated:
            return EpisodeResult(seed, bool(info["is_success"]), float(best), t)
