"""LabUtopia env speed: ms per env step (pixels vs state only), vector-env scaling, and the raw MuJoCo limit.

The scene is `pour_liquid` (FR3, 30 particles, three beakers): the most expensive task. One env step =
IK + 10 physics substeps of 5 ms (20 Hz control) + three 224x224 RGB frames (front, side, wrist). The "raw
limit" runs the same compiled model with bare `mj_step` x 10 + `Renderer.render` x 3 and no Python env around it.

    python benchmarks/sim_speed.py [--steps 150] [--size 224] [--out benchmarks/results/sim_speed.json]

If `gym_pusht` is importable (not a dependency: `pip install --target DIR --no-deps gym-pusht pymunk shapely
pygame cffi pycparser` and put DIR on PYTHONPATH), LeRobot's PushT env (2-D pymunk, one camera) is timed the
same way for a side-by-side reference.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

import numpy as np  # noqa: E402

TASK = "pour_liquid"


def _actions(n: int, dim: int = 7, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).uniform(-1, 1, (n, dim)) * 0.3).astype(np.float32)


def bench_env(steps: int, size: int, obs_type: str) -> tuple[float, float]:
    """(wall ms, CPU ms) per step of one LabUtopiaEnv in this process (CPU time counts all its threads:
    what the step costs when it has the cores to itself, whatever else is running)."""
    from lerobot_labvla.envs.labutopia.env import LabUtopiaEnv

    env = LabUtopiaEnv(TASK, "id", obs_type=obs_type, image_size=size,
                       render_mode="rgb_array" if obs_type != "agent_pos" else None, episode_length=10_000)
    env.reset(seed=0)
    acts = _actions(steps)
    for a in acts[:10]:  # warm-up (first frames compile GL state)
        env.step(a)
    t0, c0 = time.perf_counter(), time.process_time()
    for a in acts:
        env.step(a)
    dt, cpu = (time.perf_counter() - t0) / steps * 1e3, (time.process_time() - c0) / steps * 1e3
    env.close()
    return dt, cpu


def bench_raw(steps: int, size: int) -> float:
    """ms per step of bare mj_step x substeps + one render per camera on the same scene (the physical limit)."""
    import mujoco

    from lerobot_labvla.envs.labutopia.env import LabUtopiaEnv
    from lerobot_labvla.envs.labutopia.tasks import CAMERA_NAMES

    env = LabUtopiaEnv(TASK, "id", obs_type="agent_pos", render_mode=None)
    env.reset(seed=0)
    assert env.sim.assets["liquid"].params["count"] == 30, "seed 0 of pour_liquid is the 30-particle scene"
    m, d, substeps = env.sim.model, env.sim.data, env.sim.substeps
    r = mujoco.Renderer(m, size, size)
    q = env.sim.arm_qpos
    cams = list(CAMERA_NAMES.values())

    def one():
        d.ctrl[env.sim.arm_act] = q
        for _ in range(substeps):
            mujoco.mj_step(m, d)
        for cam in cams:
            r.update_scene(d, camera=cam)
            r.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = False
            r.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = False
            r.render()

    for _ in range(10):
        one()
    t0 = time.perf_counter()
    for _ in range(steps):
        one()
    dt = (time.perf_counter() - t0) / steps * 1e3
    r.close()
    env.close()
    return dt


def bench_vector(steps: int, size: int, n_envs: int) -> float:
    """Total env steps per second of LabUtopia's `create_envs` (async forkserver workers when n_envs > 1)."""
    import lerobot_labvla.plugin  # noqa: F401  (registers the EnvConfig)
    from lerobot.envs.configs import EnvConfig

    cfg = EnvConfig.get_choice_class("labutopia")(task=TASK, image_size=size, episode_length=10_000)
    vec = cfg.create_envs(n_envs=n_envs, use_async_envs=True)["labutopia"][0]
    vec.reset(seed=list(range(n_envs)))
    acts = _actions(steps + 10)
    for a in acts[:10]:
        vec.step(np.repeat(a[None], n_envs, 0))
    t0 = time.perf_counter()
    for a in acts[10:]:
        vec.step(np.repeat(a[None], n_envs, 0))
    sps = steps * n_envs / (time.perf_counter() - t0)
    vec.close()
    return sps


def bench_pusht(steps: int, size: int) -> float | None:
    """ms per step of LeRobot's gym_pusht env with one size x size camera, or None if not installed."""
    try:
        import gym_pusht  # noqa: F401
        import gymnasium as gym
    except ImportError:
        return None
    env = gym.make("gym_pusht/PushT-v0", obs_type="pixels_agent_pos", observation_width=size, observation_height=size)
    env.reset(seed=0)
    env.action_space.seed(0)
    for _ in range(10):
        env.step(env.action_space.sample())
    t0 = time.perf_counter()
    for _ in range(steps):
        env.step(env.action_space.sample())
    dt = (time.perf_counter() - t0) / steps * 1e3
    env.close()
    return dt


def bench_pusht_vector(steps: int, size: int, n_envs: int) -> float | None:
    """Steps/s of gym_pusht in the same vector-env setup LeRobot uses (async forkserver for n_envs > 1).

    Built here rather than with LeRobot's `PushtEnv.create_envs`: its forkserver workers do not import
    `gym_pusht` and fail with NamespaceNotFound; the "module:id" form makes each worker import it.
    """
    try:
        import gym_pusht  # noqa: F401
        import gymnasium as gym
    except ImportError:
        return None
    from functools import partial

    make = partial(gym.make, "gym_pusht:gym_pusht/PushT-v0", obs_type="pixels_agent_pos",
                   observation_width=size, observation_height=size)
    kw = {"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP}
    if n_envs > 1:
        vec = gym.vector.AsyncVectorEnv([make] * n_envs, context="forkserver", **kw)
    else:
        vec = gym.vector.SyncVectorEnv([make], **kw)
    vec.reset(seed=list(range(n_envs)))
    rng = np.random.default_rng(0)
    for _ in range(10):
        vec.step(rng.uniform(0, 512, (n_envs, 2)).astype(np.float32))
    t0 = time.perf_counter()
    for _ in range(steps):
        vec.step(rng.uniform(0, 512, (n_envs, 2)).astype(np.float32))
    sps = steps * n_envs / (time.perf_counter() - t0)
    vec.close()
    return sps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--repeats", type=int, default=3, help="best of N (other processes share the cores)")
    p.add_argument("--out", default="benchmarks/results/sim_speed.json")
    args = p.parse_args()

    load = os.getloadavg()[0]
    runs: dict[str, list[float]] = {k: [] for k in ("pixels", "pixels_cpu", "state", "state_cpu", "raw", "vec1", "vec2",
                                                    "pusht", "pusht_vec1", "pusht_vec2")}
    for _ in range(args.repeats):  # interleaved, so a burst of outside load hits every variant alike
        for key, obs_type in (("pixels", "pixels_agent_pos"), ("state", "agent_pos")):
            wall, cpu = bench_env(args.steps, args.size, obs_type)
            runs[key].append(wall)
            runs[f"{key}_cpu"].append(cpu)
        runs["raw"].append(bench_raw(args.steps, args.size))
        runs["vec1"].append(bench_vector(args.steps, args.size, 1))
        runs["vec2"].append(bench_vector(args.steps, args.size, 2))
        for key, value in (("pusht", bench_pusht(args.steps, args.size)),
                           ("pusht_vec1", bench_pusht_vector(args.steps, args.size, 1)),
                           ("pusht_vec2", bench_pusht_vector(args.steps, args.size, 2))):
            if value is not None:
                runs[key].append(value)
    pixels, state, raw = min(runs["pixels"]), min(runs["state"]), min(runs["raw"])
    from lerobot_labvla.envs.labutopia import CAMERAS

    n_cams = len(CAMERAS)
    vec1, vec2 = max(runs["vec1"]), max(runs["vec2"])
    res = {
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
        "task": TASK, "image_size": args.size, "cameras": n_cams, "particles": 30, "substeps": 10, "control_hz": 20,
        "steps": args.steps, "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "load_avg_1min_at_start": round(load, 2),  # other processes share these cores: read timings with it
        "env_ms_per_step_pixels": round(pixels, 2), "env_ms_per_step_state_only": round(state, 2),
        "env_cpu_ms_per_step_pixels": round(min(runs["pixels_cpu"]), 2),
        "env_cpu_ms_per_step_state_only": round(min(runs["state_cpu"]), 2),
        "raw_mujoco_ms_per_step": round(raw, 2), "env_over_raw": round(pixels / raw, 2),
        "env_steps_per_s_pixels_1proc": round(1e3 / pixels, 1), "env_steps_per_s_state_1proc": round(1e3 / state, 1),
        "vector_steps_per_s_batch1": round(vec1, 1), "vector_steps_per_s_batch2_async": round(vec2, 1),
        "vector_scaling_2_over_1": round(vec2 / vec1, 2),
        "repeats": args.repeats,
        **({"pusht_ms_per_step_pixels": round(min(runs["pusht"]), 2),
            "pusht_vector_steps_per_s_batch1": round(max(runs["pusht_vec1"]), 1),
            "pusht_vector_steps_per_s_batch2_async": round(max(runs["pusht_vec2"]), 1),
            "pusht_vector_scaling_2_over_1": round(max(runs["pusht_vec2"]) / max(runs["pusht_vec1"]), 2)}
           if runs["pusht"] else {"pusht": "gym_pusht not installed"}), "all_runs": {k: [round(v, 2) for v in vs] for k, vs in runs.items()},
    }
    rows = [(f"env step, {n_cams} x {args.size}^2 cameras", f"{pixels:.1f} ms", f"{1e3 / pixels:.0f} steps/s"),
            ("  CPU time per step (all threads)", f"{min(runs['pixels_cpu']):.1f} ms", "cost on free cores"),
            ("env step, state only", f"{state:.1f} ms", f"{1e3 / state:.0f} steps/s"),
            ("  CPU time per step", f"{min(runs['state_cpu']):.1f} ms", ""),
            (f"raw mj_step x10 + {n_cams} renders", f"{raw:.1f} ms", f"env/raw = {pixels / raw:.2f}x"),
            ("lerobot vector env, batch 1", "", f"{vec1:.0f} steps/s"),
            ("lerobot async vector env, batch 2", "", f"{vec2:.0f} steps/s ({vec2 / vec1:.2f}x)")]
    if runs["pusht"]:
        p1, p2 = max(runs["pusht_vec1"]), max(runs["pusht_vec2"])
        rows += [("gym_pusht env step, 1 x %d^2 camera" % args.size, f"{min(runs['pusht']):.1f} ms", ""),
                 ("gym_pusht vector env, batch 1 / 2", "", f"{p1:.0f} / {p2:.0f} steps/s ({p2 / p1:.2f}x)")]
    for r in rows:
        print(f"{r[0]:<36} {r[1]:>10}  {r[2]}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
