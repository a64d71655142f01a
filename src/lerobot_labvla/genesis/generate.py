"""`generate`: attempts in parallel workers (process pool or Ray) -> staged episodes -> published dataset.

State lives in two places, both crash-safe: the published dataset's `generation_report.json`
(every attempt that went into it) and `<out>.staging/` (kept episodes not yet published, one
.npz each, and `attempts.jsonl`, one line per finished attempt). Re-running the same command
continues from there; attempt k always uses `episode_seed(seed, k)`.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import threading
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import asdict
from pathlib import Path

from lerobot_labvla.errors import LabVLAError
from lerobot_labvla.genesis import export
from lerobot_labvla.genesis.runner import EpisodeJob, EpisodeSummary, episode_seed, run_episode, select_cameras
from lerobot_labvla.genesis.workflow import LoadedWorkflow


class _LocalPool:
    def __init__(self, workers: int):
        # forkserver: workers start from a clean interpreter (no inherited GL contexts or torch threads).
        self.pool = ProcessPoolExecutor(workers, mp_context=mp.get_context("forkserver"))
        self.pending = set()

    def submit(self, job: EpisodeJob) -> None:
        self.pending.add(self.pool.submit(run_episode, job))

    def next_done(self) -> list[EpisodeSummary]:
        done, self.pending = wait(self.pending, return_when=FIRST_COMPLETED)
        return [f.result() for f in done]

    def close(self) -> None:
        for f in self.pending:
            f.cancel()
        self.pool.shutdown(wait=True, cancel_futures=True)


class _RayPool:
    def __init__(self, workers: int):
        try:
            import ray
        except ImportError:
            raise LabVLAError("--backend ray needs Ray; fix: pip install 'lerobot_policy_labvla[cluster]'") from None
        self.ray = ray
        if not ray.is_initialized():
            # RAY_ADDRESS set -> join that cluster; otherwise a local instance with `workers` CPUs.
            ray.init(address=os.environ.get("RAY_ADDRESS"), num_cpus=None if os.environ.get("RAY_ADDRESS") else workers,
                     include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": {k: os.environ[k] for k in ("MUJOCO_GL", "PYOPENGL_PLATFORM") if k in os.environ}})
        self.remote = ray.remote(num_cpus=1)(run_episode)
        self.pending = []

    def submit(self, job: EpisodeJob) -> None:
        self.pending.append(self.remote.remote(job))

    def next_done(self) -> list[EpisodeSummary]:
        done, self.pending = self.ray.wait(self.pending, num_returns=1)
        return self.ray.get(done)

    def close(self) -> None:
        for ref in self.pending:
            self.ray.cancel(ref, force=True)
        self.ray.shutdown()


def _read_attempts(staging: Path) -> dict[int, dict]:
    out = {}
    log = staging / "attempts.jsonl"
    if log.is_file():
        for line in log.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a kill
            out[row["attempt"]] = row
    return out


def generate(loaded: LoadedWorkflow, out: Path, episodes: int, workers: int = 1, seed: int = 0, image_size: int = 224,
             backend: str = "local", repo_id: str | None = None, max_attempts: int | None = None,
             flush_every: int = 25, progress: bool = True, randomize: str | None = None,
             depth: bool = False, robot: str | None = None, action_noise: float = 0.0,
             cameras: str | tuple[str, ...] | None = None) -> dict:
    """Roll out until `episodes` are kept (or `max_attempts` tried); returns the generation report.
    `cameras`: the cameras to record (e.g. "front" or ("front", "wrist")); None: all of LabUtopia's."""
    from tqdm import tqdm

    if not 0.0 <= action_noise < float("inf"):
        raise LabVLAError(f"--action-noise {action_noise} must be a finite std >= 0 (0 = off)")
    wf = loaded.workflow
    cameras = select_cameras(cameras)
    out = Path(out)
    repo_id = repo_id or f"local/{wf.name}"
    max_attempts = max_attempts or 3 * episodes + 10
    export.recover(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and export.load_report(out) is None)):
        raise LabVLAError(f"--out {out} exists and is not a RoboGenesis dataset (no {export.REPORT}); "
                          "fix: pick a new directory (generate replaces --out as a whole when it publishes)")
    staging = out.with_name(out.name + ".staging")
    staging.mkdir(parents=True, exist_ok=True)
    text = Path(loaded.file).read_text() if Path(loaded.file).is_file() else None
    if text is None:
        raise LabVLAError(f"workflow file {loaded.file!r} vanished")

    report = export.load_report(out) or {
        "workflow": wf.name, "workflow_file": str(loaded.file), "repo_id": repo_id, "seed": seed,
        "image_size": image_size, "depth": depth, "robot": robot or wf.robot, "action_noise": action_noise,
        "cameras": list(cameras), "attempts": [], "timings_s": {}}
    if report.get("robot", "fr3") != (robot or wf.robot):
        raise LabVLAError(f"{out} holds robot {report.get('robot', 'fr3')!r} episodes, not {robot or wf.robot!r}; "
                          "fix: resume with the same robot or pick a new --out")
    if report["seed"] != seed or report["image_size"] != image_size or report["workflow"] != wf.name \
            or report.get("depth", False) != depth or report.get("action_noise", 0.0) != action_noise \
            or tuple(report.get("cameras", select_cameras(None))) != cameras:
        raise LabVLAError(f"{out} was generated from workflow {report['workflow']!r} with --seed {report['seed']} "
                          f"--image-size {report['image_size']}{' --depth' if report.get('depth') else ''}"
                          f"{' --action-noise %g' % report['action_noise'] if report.get('action_noise') else ''}"
                          f" --cameras {','.join(report.get('cameras', select_cameras(None)))}; "
                          "fix: resume with the same values or pick a new --out")
    published = {a["attempt"]: a for a in report["attempts"]}
    staged = {k: v for k, v in _read_attempts(staging).items() if k not in published}
    for k, row in list(staged.items()):  # kept but its .npz is gone or half-written: retry that attempt
        if row["kept"] and not Path(row["path"]).is_file():
            del staged[k]
    for stale in staging.glob("*.npz"):
        if not any(r.get("path") == str(stale) for r in staged.values()):
            stale.unlink()

    timings = Counter(report.get("timings_s", {}))
    done = {**published, **staged}
    kept = sum(r["kept"] for r in done.values())
    next_attempt = max(done, default=-1) + 1
    unpublished = sorted((r for r in staged.values() if r["kept"]), key=lambda r: r["attempt"])

    publisher = _Publisher(out, repo_id, staging, episodes)

    def flush(wait: bool = False) -> None:
        """Publish the staged episodes in the background (rollouts go on meanwhile); `wait` for it."""
        nonlocal unpublished
        t0 = time.perf_counter()
        timings.update(publisher.collect(wait=True) if wait else publisher.collect())
        timings["publish_wait"] += time.perf_counter() - t0  # wall time the rollouts waited on publishing
        take_dropped()
        if publisher.busy:
            return
        snapshot = {**report, "attempts": sorted((dict(r) for r in done.values()), key=lambda r: r["attempt"])}
        _finish_report(snapshot, episodes, timings)
        publisher.start(unpublished, snapshot)
        unpublished = []
        if wait:
            t0 = time.perf_counter()
            timings.update(publisher.collect(wait=True))
            timings["publish_wait"] += time.perf_counter() - t0
            report.update(publisher.last_report or snapshot)
            take_dropped()

    def take_dropped() -> None:
        """Episodes the export refused (video/rows disagreed) are rejected: roll out replacements."""
        nonlocal kept
        for attempt in publisher.dropped:
            done[attempt].update(kept=False, reason="export:video_frame_mismatch", path="")
            kept -= 1
            bar.update(-1)
        publisher.dropped = []

    bar = tqdm(total=episodes, initial=min(kept, episodes), unit="ep", disable=not progress, dynamic_ncols=True,
               desc=f"genesis {wf.name}")
    _postfix(bar, kept, len(done))
    pool = (_RayPool if backend == "ray" else _LocalPool)(workers) if kept < episodes else None
    in_flight = 0
    t_start = time.perf_counter()
    try:
        while True:
            while pool is not None and (kept < episodes or in_flight):
                while kept + in_flight < episodes + workers - 1 and in_flight < 2 * workers \
                        and next_attempt < max_attempts and kept < episodes:
                    pool.submit(EpisodeJob(text, str(loaded.file), next_attempt, episode_seed(seed, next_attempt),
                                           image_size, str(staging), randomize=randomize, depth=depth, robot=robot,
                                           action_noise=action_noise, cameras=cameras))
                    next_attempt += 1
                    in_flight += 1
                if in_flight == 0:
                    break
                for s in pool.next_done():
                    in_flight -= 1
                    row = asdict(s)
                    if s.kept and kept >= episodes:  # a surplus success of the last batch
                        Path(s.path).unlink(missing_ok=True)
                        row.update(kept=False, reason="surplus", path="")
                    done[s.attempt] = row
                    with open(staging / "attempts.jsonl", "a") as log:  # reopened: flush() replaces the file
                        log.write(json.dumps(row) + "\n")
                    timings.update({k: v for k, v in s.timings.items()})
                    if row["kept"]:
                        kept += 1
                        unpublished.append(row)
                        bar.update(1)
                    _postfix(bar, kept, len(done))
                    if len(unpublished) >= flush_every:
                        flush()
            flush(wait=True)  # the rest; the export may still refuse an episode, then roll out a replacement
            if pool is None or kept >= episodes or next_attempt >= max_attempts:
                break
    finally:
        if pool is not None:
            pool.close()
        bar.close()
        publisher.collect(wait=True, check=False)
    timings["wall"] += time.perf_counter() - t_start
    _finish_report(report, episodes, timings)
    if (out / "meta" / "info.json").is_file():
        export.write_report(out, report)
    if kept >= episodes and not any((staging).glob("*.npz")):
        shutil.rmtree(staging, ignore_errors=True)
    return report


class _Publisher:
    """Runs `export.publish` in a thread, one batch at a time; the main thread keeps collecting rollouts."""

    def __init__(self, out: Path, repo_id: str, staging: Path, episodes: int):
        self.out, self.repo_id, self.staging, self.episodes = out, repo_id, staging, episodes
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.timings: dict = {}
        self.last_report: dict | None = None
        self.dropped: list[int] = []  # attempts the export refused (video/data frame counts disagreed)

    @property
    def busy(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def start(self, batch: list[dict], report: dict) -> None:
        self.thread = threading.Thread(target=self._run, args=(batch, report), name="genesis-publish", daemon=True)
        self.thread.start()

    def _run(self, batch: list[dict], report: dict) -> None:
        try:
            if batch:
                self.timings = export.publish(self.out, self.repo_id, [Path(r["path"]) for r in batch], report,
                                              fps=_fps())
                dropped = set(self.timings.pop("dropped", []))
                for a in report["attempts"]:
                    if a["path"] and a["path"] in dropped:
                        a.update(kept=False, reason="export:video_frame_mismatch", path="")
                        self.dropped.append(a["attempt"])
                if dropped:
                    _finish_report(report, self.episodes, Counter(report["timings_s"]))
                for r in batch:
                    Path(r["path"]).unlink(missing_ok=True)
            if (self.out / "meta" / "info.json").is_file():  # the report lives in the dataset: none yet, keep the log
                export.write_report(self.out, report)
                self.last_report = report
        except BaseException as exc:  # re-raised in the main thread by collect()
            self.error = exc

    def collect(self, wait: bool = False, check: bool = True) -> dict:
        """Timings of a finished publish (and trim the staging log to what is not published yet)."""
        if self.thread is None or (self.busy and not wait):
            return {}
        self.thread.join()
        self.thread = None
        if self.error is not None and check:
            error, self.error = self.error, None
            raise error
        if self.last_report is not None:
            published = {a["attempt"] for a in self.last_report["attempts"]}
            log = self.staging / "attempts.jsonl"
            rows = [r for r in _read_attempts(self.staging).values() if r["attempt"] not in published]
            tmp = self.staging / "attempts.jsonl.tmp"
            tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
            os.replace(tmp, log)
        timings, self.timings = self.timings, {}
        return timings


def _fps() -> int:
    from lerobot_labvla.envs.labutopia import FPS

    return FPS


def _postfix(bar, kept: int, tried: int) -> None:
    bar.set_postfix_str(f"kept {kept}/{tried} tried, success {kept / tried:.0%}" if tried else "starting workers")


def _finish_report(report: dict, episodes: int, timings: Counter) -> None:
    attempts = report["attempts"]
    tried = [a for a in attempts if a["reason"] != "surplus"]
    kept = sum(a["kept"] for a in attempts)
    report.update(
        episodes_requested=episodes, kept=kept, tried=len(tried),
        success_rate=round(kept / len(tried), 4) if tried else 0.0,
        rejected=dict(sorted(Counter(a["reason"] for a in tried if not a["kept"]).items())),
        timings_s={k: round(v, 3) for k, v in timings.items()},
    )
