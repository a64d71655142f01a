"""Rollouts: one workflow episode in a LabUtopia env, recorded frame by frame, filtered, staged to disk.

`run_episode` is what a worker process (or a Ray task) runs: it writes a kept episode to
`<staging>/attempt_<k>.npz` (temp file, then rename) and returns a small summary, so a killed
worker never leaves half an episode behind.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lerobot_labvla.errors import LabVLAError
from lerobot_labvla.genesis import annotate

MAX_DEPTH_M = 10.0
HOLD_AFTER_DONE = 40  # control steps the expert may idle after its last step before we give up


@dataclass
class EpisodeJob:
    workflow_text: str
    workflow_file: str
    attempt: int
    seed: int
    image_size: int
    staging: str
    record: bool = True  # False: roll out and judge only (no cameras, nothing written)
    depth: bool = False  # also a full-size depth image per fixed camera (float32 metres)
    randomize: str | None = None  # a preset (none|light|full) replacing the workflow's `randomize:`
    robot: str | None = None  # a robot profile replacing the workflow's `robot:` (generate --robot)
    action_noise: float = 0.0  # std of Gaussian noise on the executed arm actions (generate --action-noise)
    cameras: tuple[str, ...] | None = None  # the cameras to record, in CAMERAS order (generate --cameras); None: all


@dataclass
class EpisodeSummary:
    attempt: int
    seed: int
    kept: bool
    reason: str  # "success" or why it was rejected
    detail: str = ""
    frames: int = 0
    path: str = ""
    timings: dict = field(default_factory=dict)  # seconds: physics, render (+ annotations), stage (.npz)


def episode_seed(seed: int, attempt: int) -> int:
    """Independent, reproducible seed of attempt `attempt` of a run started with `seed`."""
    return int(np.random.SeedSequence([seed, attempt]).generate_state(1)[0])


def _cameras():
    from lerobot_labvla.envs.labutopia import CAMERAS
    from lerobot_labvla.envs.labutopia.tasks import CAMERA_NAMES

    return tuple(CAMERAS), CAMERA_NAMES


def select_cameras(names: str | tuple[str, ...] | list[str] | None) -> tuple[str, ...]:
    """`front,wrist` (or a sequence) -> the named cameras in CAMERAS order; None or "all": every camera.

    Rendering is most of a rollout's cost at small image sizes (3 cameras: ~60 % of the workers' time at 64²),
    so a dataset for a policy that reads one camera is cheaper to make with that camera alone."""
    every = _cameras()[0]
    if names is None or names == "all":
        return every
    wanted = [n.strip() for n in names.split(",")] if isinstance(names, str) else [str(n) for n in names]
    wanted = [n for n in wanted if n]
    if unknown := [n for n in wanted if n not in every]:
        raise LabVLAError(f"--cameras: unknown camera(s) {', '.join(unknown)}; expected some of {', '.join(every)}")
    if not wanted:
        raise LabVLAError(f"--cameras: name at least one of {', '.join(every)}")
    return tuple(c for c in every if c in wanted)


def depth_cameras(cameras: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """The fixed (not robot-mounted) cameras among `cameras` (default all), in CAMERAS order: the ones `--depth` records."""
    from lerobot_labvla.envs.labutopia.tasks import FIXED_CAMERAS

    return tuple(c for c in (cameras or _cameras()[0]) if c in FIXED_CAMERAS)


def run_episode(job: EpisodeJob) -> EpisodeSummary:
    """Roll out one attempt; keep it (staged .npz) only if every checker passed and nothing was unsafe.

    An exception inside the attempt (an unstable simulation, a skill that cannot run in this scene)
    rejects that attempt with reason `error:<Type>`; the run goes on.
    """
    try:
        return _run_episode(job)
    except Exception as exc:  # noqa: BLE001 - one bad attempt must not end a 500-episode run
        return EpisodeSummary(job.attempt, job.seed, False, f"error:{type(exc).__name__}", " ".join(str(exc).split())[:300])


def _run_episode(job: EpisodeJob) -> EpisodeSummary:
    os.environ.setdefault("LP_NUM_THREADS", "1")  # one software-rendering thread per worker
    from lerobot_labvla.envs.labutopia.env import LabUtopiaEnv
    from lerobot_labvla.genesis.safety import SafetyMonitor
    from lerobot_labvla.genesis.skills import WorkflowTask
    from lerobot_labvla.genesis.workflow import parse_workflow
    from lerobot_labvla.sim.render import Cameras

    wf = parse_workflow(job.workflow_text, job.workflow_file).workflow
    if job.randomize is not None:
        from lerobot_labvla.genesis.axes import resolve

        wf = wf.model_copy(update={"randomize": resolve(job.randomize)})
    if job.robot is not None:
        wf = wf.model_copy(update={"robot": job.robot})
    task = WorkflowTask.from_workflow(wf)
    cameras = select_cameras(job.cameras)
    # The env's own reset/step/action path, with the workflow as its task.
    env = LabUtopiaEnv(task, "id", obs_type="agent_pos", render_mode=None, image_size=job.image_size,
                       episode_length=task.episode_length)
    t_phys = t_render = 0.0
    cams = None
    try:
        t0 = time.perf_counter()
        obs, _ = env.reset(seed=job.seed)
        sim, ctx = env.sim, env.ctx
        expert = env.expert()
        monitor = SafetyMonitor(sim, ctx["liquids"])
        t_phys += time.perf_counter() - t0
        t0 = time.perf_counter()
        camera_names = env.camera_names  # the wrist camera is the robot profile's
        cams = Cameras(sim.model, camera_names, job.image_size, job.image_size) if job.record else None
        t_render += time.perf_counter() - t0
        objects = annotate.tracked_objects(sim)
        d = annotate.depth_size(job.image_size)
        stride = max(1, job.image_size // d)
        depth_cams = depth_cameras(cameras) if job.depth else ()
        rec: dict[str, list] = {k: [] for k in ["state", "action", *[f"pixels.{c}" for c in cameras],
                                                *[f"depth.{c}" for c in depth_cams],
                                                *[f"annotation.{s}" for s in annotate.FRAME_STREAMS]]}
        tcp_path, fps = [], round(1.0 / sim.control_dt)
        step_start: dict[int, int] = {}
        idle, reason, detail, success = 0, "timeout", f"no success within {env._max_episode_steps} steps", False
        # Noise injection (DART, Laskey et al. 2017): the arm executes the expert's action plus noise while the
        # episode records the expert's clean action, so the data holds states off the expert's path labelled with
        # the action that leads back (the expert plans from the arm's commanded pose, so its next action corrects).
        noise = (_noise_source(np.random.default_rng([job.seed, 1]), job.action_noise, env.action_dim)
                 if job.action_noise > 0 else None)
        for t in range(env._max_episode_steps):
            t0 = time.perf_counter()
            ctx["frame"] = t
            action = expert.act()
            t_phys += time.perf_counter() - t0
            if ctx["failed"] is not None:
                r = ctx["failed"]
                reason, detail = f"step_failed:{r.skill}", f"step {r.index + 1} ({r.skill}): {r.explanation}"
                break
            i = ctx["step"]
            step_start.setdefault(i, t)
            target = ctx["target"]
            step = wf.steps[i]
            if job.record:
                t0 = time.perf_counter()
                _record(rec, sim, cams, cameras, depth_cams, obs, action, t, fps, i, step_start[i], step, target,
                        objects, ctx["liquids"], stride, d, _clipped(env, target))
                t_render += time.perf_counter() - t0
            tcp_path.append(sim.tcp_pos)
            t0 = time.perf_counter()
            obs, _, terminated, truncated, info = env.step(
                action if noise is None else _perturbed(action, noise, env.action_space))
            events = monitor.step(t, _involved(ctx.get("current", step), ctx), gripper_closed=action[-1] < 0)
            t_phys += time.perf_counter() - t0
            if job.record:
                rec["annotation.collision_events"].append("; ".join(events) or "none")
            if terminated and info["is_success"]:
                success = True
                break
            if ctx.get("done"):
                idle += 1
                if idle > HOLD_AFTER_DONE + env.hold_steps:
                    reason, detail = "task_failed", f"all steps passed but the {ctx.get('base') or 'workflow'} success rule did not hold"
                    break
            if truncated:
                break
        monitor.finish(len(tcp_path))
        if success and monitor.violations:
            reason, _, detail = monitor.violations[0]
            reason, success = f"safety:{reason}", False
        if not success or not job.record:
            return EpisodeSummary(job.attempt, job.seed, success, "success" if success else reason,
                                  "" if success else detail, len(tcp_path),
                                  timings={"physics": t_phys, "render": t_render, "stage": 0.0})
        t0 = time.perf_counter()
        meta = {
            "camera_intrinsics": {c: cams.intrinsics(c).round(4).tolist() for c in cameras},
            "object_semantics": annotate.object_semantics(sim),
            "success_explanation": " ".join(f"Step {r.index + 1} ({r.skill}): {r.explanation}." for r in ctx["results"])
            + (f" LabUtopia {ctx['base']} success rule held for {env.hold_steps} steps." if ctx.get("base") else ""),
            "temporal_segments": [{"step": r.index, "skill": r.skill, "start": r.start, "end": r.end,
                                   "instruction": wf.steps[r.index].instruction or _describe(wf.steps[r.index]),
                                   "ok": r.ok} for r in ctx["results"]],
            "quality_scores": annotate.quality_scores(np.asarray(tcp_path), fps, monitor.max_force, ctx["results"]),
            "episode_metadata": {"seed": job.seed, "attempt": job.attempt, "workflow": wf.name, "robot": wf.robot,
                                 "split": "id", "labutopia_task": wf.scene.labutopia, "image_size": job.image_size,
                                 "fps": fps, "cameras": list(cameras), "depth_cameras": list(depth_cams),
                                 "action_noise": job.action_noise,
                                 "task": env.task_description,
                                 # the six axes' draws (genesis/randomize.py `drawn`); null without `randomize:`
                                 "randomization": ctx.get("randomization")},
        }
        path = Path(job.staging) / f"attempt_{job.attempt:06d}.npz"
        arrays = {k: np.stack(v) if not isinstance(v[0], str) else np.array(v) for k, v in rec.items()}
        arrays["episode_meta"] = np.array(json.dumps(meta))
        arrays["task"] = np.array(env.task_description)
        arrays["object_names"] = np.array(json.dumps(objects))
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
        t_write = time.perf_counter() - t0
        return EpisodeSummary(job.attempt, job.seed, True, "success", "", len(rec["state"]), str(path),
                              {"physics": t_phys, "render": t_render, "stage": t_write})
    finally:
        env.close()
        if cams is not None:
            cams.close()


def _record(rec, sim, cams, cameras, depth_cams, obs, action, t, fps, i, start, step, target, objects, liquids,
            stride, d, clipped) -> None:
    """Append frame `t`: images, state, action and the per-frame annotation streams (before the action runs)."""
    for c in cameras:
        rec[f"pixels.{c}"].append(cams.rgb(sim.data, c))
    rec["state"].append(obs["agent_pos"])
    rec["action"].append(action)
    rec["annotation.robot_state"].append(annotate.robot_state(sim))
    rec["annotation.camera_extrinsics"].append(
        np.concatenate([cams.extrinsics(sim.data, c).ravel() for c in cameras]).astype(np.float32))
    rec["annotation.step_timing"].append(np.array([t / fps, (t - start) / fps, i], np.float32))
    rec["annotation.instruction_alignment"].append(f"{i}: {step.instruction or _describe(step)}")
    rec["annotation.object_state"].append(annotate.object_state(sim, objects))
    rec["annotation.scene_relations"].append(annotate.scene_relations(sim, liquids))
    rec["annotation.subgoals"].append(np.concatenate([target.pos, target.quat, [target.gripper]]).astype(np.float32)
                                      if target is not None else np.zeros(8, np.float32))
    rec["annotation.intervention_flags"].append(np.array([int(clipped)], np.int64))
    full = {c: _depth(cams, sim, c) for c in dict.fromkeys([cameras[0], *depth_cams])}
    rec["annotation.depth"].append(full[cameras[0]][::stride, ::stride][:d, :d].ravel())
    for c in depth_cams:
        rec[f"depth.{c}"].append(full[c])


def _noise_source(rng: np.random.Generator, std: float, dim: int):
    """Per-step noise for the arm dims of an ee_delta action; the gripper dim (the last of each arm's block of 7)
    stays exact so that a grasp is never opened by noise."""
    arm = np.ones(dim, dtype=bool)
    arm[6::7] = False
    return lambda: np.where(arm, rng.normal(0.0, std, dim), 0.0)


def _perturbed(action: np.ndarray, noise, space) -> np.ndarray:
    return np.clip(action + noise(), space.low, space.high).astype(np.float32)


def _depth(cams, sim, camera: str) -> np.ndarray:
    """(H, W) float32 metres; 0 where nothing is within MAX_DEPTH_M (the renderer reports its far plane), as depth
    cameras do."""
    depth = cams.depth(sim.data, camera).astype(np.float32)
    depth[depth > MAX_DEPTH_M] = 0.0
    return depth


def _describe(step) -> str:
    args = step.args.model_dump(by_alias=True, exclude_none=True)
    return f"{step.skill} " + ", ".join(f"{k}={v}" for k, v in args.items())


def _involved(step, ctx) -> set[str]:
    """Objects the current step may touch (its arguments, their liquids, the devices they name)."""
    names = set()
    for v in step.args.model_dump(by_alias=True).values():
        if isinstance(v, str):
            names.add(v.split(".")[0])
    names |= {ctx["liquids"][n] for n in list(names) if n in ctx["liquids"]}
    return names


def _clipped(env, target) -> bool:
    """Was the expert's wish beyond the action limits at this step (the env clipped it)?"""
    if target is None:
        return False
    from lerobot_labvla.envs.labutopia.env import POS_SCALE, ROT_SCALE
    from lerobot_labvla.sim.control import quat_error

    ctl = env.ctl
    want = np.concatenate([(target.pos - ctl.target_pos) / POS_SCALE, quat_error(target.quat, ctl.target_quat) / ROT_SCALE])
    return bool(np.any(np.abs(want) > 1.0))
